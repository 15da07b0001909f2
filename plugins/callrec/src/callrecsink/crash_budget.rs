// SPDX-License-Identifier: MPL-2.0
//! How `header-interval`, the most a SIGKILL may lose, is shared out
//! between the places a recording's audio waits on its way to the disk.

use std::time::Duration;

use super::writing::pool::TICK;

/// What a SIGKILL may lose is `header-interval` at most, shared between the
/// places audio waits on its way to the disk:
/// - staged on the streaming side: at most a quarter of it (`stage_limit`);
/// - handed over, until a worker writes it and the WAV header counts it
///   (`write_due`), plus up to a `TICK` until the ticker
///   looks, plus `SCHEDULING` for a busy machine to run the worker: for WAV
///   the rest, for an encoded file a quarter;
/// - in an encoder's private pipeline (FLAC, Opus, MP3): the rest
///   (`encoder_hold`), as the longest frame or page it may hold.
///
/// The tests kill recordings with both cores saturated and check the sum.
pub const SCHEDULING: Duration = Duration::from_millis(50);

/// The longest audio waits in the stage before it is handed over.
pub fn stage_limit(header_interval: Duration) -> Duration {
    header_interval / 4
}

/// How long audio handed over may wait for a worker to write it. The
/// shorter, the more often each recording is written: a WAV takes all it
/// can (at the default 1 s, every 600 ms).
pub fn write_due(header_interval: Duration, encoded: bool) -> Duration {
    if encoded {
        header_interval / 4
    } else {
        header_interval.saturating_sub(stage_limit(header_interval) + TICK + SCHEDULING)
    }
}

/// The longest an encoder may hold audio (a FLAC frame, an Ogg page), at
/// least one 20 ms frame.
pub fn encoder_hold(header_interval: Duration) -> Duration {
    (header_interval / 2)
        .saturating_sub(TICK + SCHEDULING)
        .max(Duration::from_millis(20))
}
