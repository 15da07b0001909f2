// SPDX-License-Identifier: MPL-2.0
//! The bot's audio waiting for the source's streaming thread.
//!
//! Bounded twice: by duration (`max-queue`) and by bytes (`max-queue-bytes`),
//! because a bot declares its own rate: 1 MiB messages claiming a huge rate
//! are a few milliseconds each, and a duration bound alone let one grow a
//! process by 1.4 GB in 10 s. Every message counts a fixed overhead besides
//! its bytes, so a flood of empty frames is bounded too. Past either bound the
//! oldest audio is dropped (the newest is what the caller should hear next)
//! and counted, for the source to report.

use std::collections::VecDeque;

use crate::wire::serializer::WireAudio;

/// What one queued message costs beyond its audio bytes.
const CHUNK_OVERHEAD: usize = 64;

pub struct Chunk {
    pub audio: WireAudio,
    /// When the message arrived. A monotonic instant, turned into running
    /// time by the source's own thread: the reader takes no element lock
    /// and no GLib weak reference (one process-wide lock) per message.
    pub arrival: std::time::Instant,
}

impl Chunk {
    pub fn duration(&self) -> gst::ClockTime {
        self.audio.duration()
    }

    fn cost(&self) -> usize {
        self.audio.data.len() + CHUNK_OVERHEAD
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub duration: gst::ClockTime,
    pub bytes: usize,
}

/// What was dropped since the source last asked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub duration: gst::ClockTime,
    pub messages: u64,
}

impl Dropped {
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

pub struct Inbox {
    audio: VecDeque<Chunk>,
    queued: gst::ClockTime,
    queued_bytes: usize,
    limits: Limits,
    dropped: Dropped,
}

impl Inbox {
    pub fn new(limits: Limits) -> Self {
        Inbox {
            audio: VecDeque::new(),
            queued: gst::ClockTime::ZERO,
            queued_bytes: 0,
            limits,
            dropped: Dropped::default(),
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Queues `chunk`, dropping the oldest while over a bound (the newest
    /// always stays, so one message larger than the bound still plays).
    pub fn push(&mut self, chunk: Chunk) {
        self.queued = self.queued.saturating_add(chunk.duration());
        self.queued_bytes += chunk.cost();
        self.audio.push_back(chunk);
        while (self.queued > self.limits.duration || self.queued_bytes > self.limits.bytes)
            && self.audio.len() > 1
        {
            let oldest = self.pop().expect("more than one queued");
            self.dropped.duration = self.dropped.duration.saturating_add(oldest.duration());
            self.dropped.messages += 1;
        }
    }

    pub fn pop(&mut self) -> Option<Chunk> {
        let chunk = self.audio.pop_front()?;
        self.queued = self.queued.saturating_sub(chunk.duration());
        self.queued_bytes -= chunk.cost();
        Some(chunk)
    }

    /// Drops everything queued (the bot was interrupted); how much that was.
    pub fn clear(&mut self) -> gst::ClockTime {
        let dropped = self.queued;
        self.audio.clear();
        self.queued = gst::ClockTime::ZERO;
        self.queued_bytes = 0;
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.audio.is_empty()
    }

    pub fn take_dropped(&mut self) -> Dropped {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: usize, rate: u32) -> Chunk {
        Chunk {
            audio: WireAudio {
                data: vec![0; bytes].into(),
                rate,
                channels: 1,
                law: None,
            },
            arrival: std::time::Instant::now(),
        }
    }

    fn inbox(ms: u64, bytes: usize) -> Inbox {
        Inbox::new(Limits {
            duration: gst::ClockTime::from_mseconds(ms),
            bytes,
        })
    }

    #[test]
    fn the_oldest_goes_first_past_the_duration() {
        let mut inbox = inbox(100, usize::MAX);
        for _ in 0..10 {
            inbox.push(chunk(320, 8000)); // 20 ms each
        }
        let dropped = inbox.take_dropped();
        assert_eq!(dropped.messages, 5);
        assert_eq!(dropped.duration, gst::ClockTime::from_mseconds(100));
        assert!(inbox.take_dropped().is_empty());
    }

    #[test]
    fn big_messages_at_a_bogus_rate_are_bounded_by_bytes() {
        // 1 MiB messages claiming 192 kHz stereo: 2.7 s each by duration.
        let mut inbox = inbox(5000, 2 << 20);
        for _ in 0..100 {
            inbox.push(chunk(1 << 20, 192_000));
        }
        assert!(inbox.queued_bytes <= (2 << 20) + 2 * CHUNK_OVERHEAD);
        assert_eq!(inbox.take_dropped().messages, 99);
    }

    #[test]
    fn empty_frames_count() {
        let mut inbox = inbox(5000, 64 * 1000);
        for _ in 0..100_000 {
            inbox.push(chunk(0, 8000));
        }
        assert!(inbox.audio.len() <= 1000);
        assert_eq!(inbox.take_dropped().messages, 99_000);
    }

    #[test]
    fn one_message_over_the_bound_still_plays() {
        let mut inbox = inbox(10, 100);
        inbox.push(chunk(4000, 8000));
        assert!(inbox.pop().is_some());
        assert!(inbox.take_dropped().is_empty());
    }
}
