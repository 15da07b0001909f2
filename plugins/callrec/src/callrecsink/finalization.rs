// SPDX-License-Identifier: MPL-2.0
//! How a recording ends: the one place that turns an end into an outcome.
//!
//! ```text
//!               EOS on every track ─┐
//!   max-duration reached ───────────┤
//!   writer failure / a track jumped ┼──► Recording decides ──► Finishing ──► complete() ──► Report ──► report::post
//!   no audio / too short ───────────┤    (under its lock)       (no lock)    (waits for     (bus message and
//!   PAUSED->READY without EOS ──────┘                                         the disk)      `finished` signal)
//!        └─ on_stop: on a thread of its own, waited for at most finalize-timeout;
//!           past it the recording is abandoned: it never publishes, its .part stays
//! ```
//!
//! | end | step | outcome |
//! |---|---|---|
//! | EOS on every track, `max-duration`, a stop without EOS | `Publish`: fsync, rename every file (all or none), fsync the directories | `callrecsink-finalized` (`eos`, `max-duration`, `stopped`) |
//! | the writer failed, a disk hang, a track jumped past `max-gap`, a panic | `Keep`: the `.part` files stay, playable | `callrecsink-failed` and an ERROR |
//! | no audio, or no frame written | `Discard`: the `.part` files are removed | `callrecsink-failed` (`no-audio`) and an ERROR |
//! | shorter than `min-duration` | `Discard` | `callrecsink-failed` (`too-short`) and a WARNING |
//!
//! Timeouts: every wait for the disk inside the writer (buffer space, the
//! final fsync, removing a `.part`) is bounded by `finalize-timeout`, so
//! `complete` returns within twice that; a stop waits for it at most
//! `finalize-timeout` and then abandons the recording (`abandoned`), which
//! a late `complete` reads: an abandoned recording never publishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use callaudio::sync::{lock, panic_text};

use super::mixer::TrackStats;
use super::recording::{Outcome, Report, SharedRecording, TrackId};
use super::report;
use super::writing::FileWriter;

/// A recording whose outcome is decided but for the disk: the writer's
/// finish, keep or discard, which waits for it (up to twice
/// `finalize-timeout`). Completed with no lock held, so a stop, a pad
/// request or another track never waits behind the disk.
#[must_use = "a recording's end is only known once completed"]
pub struct Finishing {
    pub(super) step: Step,
    pub(super) tracks: Vec<(TrackId, TrackStats)>,
    pub(super) rate: u32,
    pub(super) started_at: Option<std::time::SystemTime>,
    pub(super) abandoned: Arc<AtomicBool>,
}

pub(super) enum Step {
    /// Sync and publish: `Finalized`, unless finalization was abandoned.
    Publish {
        files: FileWriter,
        frames: u64,
        reason: &'static str,
    },
    /// Leave what was written playable under the partial name.
    Keep(FileWriter, String),
    /// Remove every `.part`: nothing worth keeping.
    Discard(FileWriter, Outcome),
}

impl Finishing {
    /// Waits for the disk's part and says how the recording ended.
    pub fn complete(self) -> Report {
        let outcome = match self.step {
            Step::Publish {
                files,
                frames,
                reason,
            } => {
                if self.abandoned.load(Ordering::SeqCst) {
                    Outcome::Failed("finalization was abandoned after its timeout".into())
                } else {
                    match files.finish() {
                        Ok(files) => Outcome::Finalized {
                            files,
                            frames,
                            reason,
                        },
                        Err(err) => Outcome::Failed(err.to_string()),
                    }
                }
            }
            Step::Keep(files, reason) => {
                files.keep();
                Outcome::Failed(reason)
            }
            Step::Discard(files, outcome) => {
                files.discard();
                outcome
            }
        };
        Report {
            outcome,
            tracks: self.tracks,
            rate: self.rate,
            started_at: self.started_at,
        }
    }
}

/// Finalizes a recording stopped without EOS, waiting at most
/// `finalize-timeout` for the disk. Returns false if it had to give up
/// (the recording is then still held by the stuck worker).
pub fn on_stop(recording: &SharedRecording, timeout: Duration, element: &gst::Element) -> bool {
    let Some((abandoned, timeout)) = lock(recording)
        .as_ref()
        .filter(|r| !r.is_done())
        .map(|r| (r.abandoned_flag(), r.finish_allowance(timeout)))
    else {
        return true;
    };
    let recording = recording.clone();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("callrec-finalize".into())
        .spawn(move || {
            let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let finishing = lock(&recording)
                    .as_mut()
                    .and_then(|r| r.finalize("stopped"));
                finishing.map(Finishing::complete)
            }));
            let _ = tx.send(report.map_err(|p| panic_text(&*p)));
        });
    if spawned.is_err() {
        report::post_failure(element, "could not start the finalization thread".into());
        return true;
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(Some(report))) => report::post(element, report),
        Ok(Ok(None)) => {}
        Ok(Err(panic)) => report::post_failure(
            element,
            format!("internal error in callrecsink while finalizing ({panic}); this is a bug"),
        ),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            abandoned.store(true, Ordering::SeqCst);
            report::post_failure(
                element,
                format!("finalization did not complete within finalize-timeout ({timeout:?})"),
            );
            return false;
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            report::post_failure(element, "the finalization thread died".into());
        }
    }
    true
}
