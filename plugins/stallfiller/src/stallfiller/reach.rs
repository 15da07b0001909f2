// SPDX-License-Identifier: MPL-2.0
//! Where a live track's data would have reached by a given running time,
//! had it not stalled: the tail a stalled track is padded to at EOS, so it
//! ends where a parallel track of the same kind of source ends.
//!
//! A live source hands out each buffer at a fixed offset from its start:
//! one that stamps and pushes at the start (`audiotestsrc`, a source that
//! stamps arrival time) at about 0; one that captures first (a jitter
//! buffer, a sound card) at about its duration plus its latency. The
//! LATENCY query does not say which, so the offset is measured, as the
//! running time at arrival less the buffer's start. A late arrival (a busy
//! machine) only raises a measurement, so the offset is the smallest over
//! the last one to two windows of measurements, which also follows a
//! source whose clock drifts. One buffer in `TIME_EVERY` is timed (a
//! clock read per buffer was a tenth of a recorder's CPU at a thousand
//! calls); every buffer moves the end.
//!
//! Then the buffers that would have come after the last real one, of its
//! duration, each due at its start plus the offset, reach
//! `end + (k + 1) * duration` by running time `now`, where `k` is the
//! number of whole durations from `end + offset` to `now`.

use gst::ClockTime;

/// Measurements per window: 4 s of 20 ms buffers.
const WINDOW: u32 = 50;
/// One buffer in this many has its arrival timed.
const TIME_EVERY: u32 = 4;

#[derive(Debug, Default, Clone, Copy)]
pub struct Reach {
    /// The smallest offset (ns) of the current and of the previous window.
    current: Option<i64>,
    previous: Option<i64>,
    seen: u32,
    /// Buffers since the last timed one.
    untimed: u32,
    /// The running time the last real buffer took the output to, and that
    /// buffer's duration.
    end: ClockTime,
    duration: ClockTime,
}

impl Reach {
    /// Whether the next real buffer's arrival should be timed: the first,
    /// then one in `TIME_EVERY`.
    pub fn times_next(&self) -> bool {
        !self.fed() || self.untimed + 1 >= TIME_EVERY
    }

    /// A real buffer starting at running time `start`, of `duration`, that
    /// took the output to `end`, arrived at running time `arrival` if it
    /// was timed.
    pub fn note(
        &mut self,
        start: ClockTime,
        duration: ClockTime,
        end: ClockTime,
        arrival: Option<ClockTime>,
    ) {
        self.end = end;
        self.duration = duration;
        let Some(arrival) = arrival else {
            self.untimed += 1;
            return;
        };
        self.untimed = 0;
        let offset = clamp(arrival.nseconds() as i128 - start.nseconds() as i128);
        self.current = Some(self.current.map_or(offset, |c| c.min(offset)));
        self.seen += 1;
        if self.seen == WINDOW {
            self.previous = self.current.take();
            self.seen = 0;
        }
    }

    /// The duration of the last real buffer.
    pub fn duration(&self) -> ClockTime {
        self.duration
    }

    /// Whether any real buffer was measured.
    pub fn fed(&self) -> bool {
        self.current.is_some() || self.previous.is_some()
    }

    fn offset(&self) -> Option<i64> {
        match (self.current, self.previous) {
            (Some(c), Some(p)) => Some(c.min(p)),
            (c, p) => c.or(p),
        }
    }

    /// Where the data would have reached by running time `now`; `None`
    /// before any real buffer.
    pub fn at(&self, now: ClockTime) -> Option<ClockTime> {
        let offset = self.offset()? as i128;
        let (end, duration) = (
            self.end.nseconds() as i128,
            self.duration.nseconds() as i128,
        );
        let since = now.nseconds() as i128 - offset - end;
        if since < 0 || duration == 0 {
            return Some(self.end);
        }
        let reach = end + (since / duration + 1) * duration;
        Some(ClockTime::from_nseconds(
            reach.min(ClockTime::MAX.nseconds() as i128) as u64,
        ))
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> ClockTime {
        ClockTime::from_mseconds(v)
    }

    #[test]
    fn a_source_that_pushes_at_the_start_reaches_the_next_boundary() {
        let mut r = Reach::default();
        assert_eq!(r.at(ms(5)), None);
        // 20 ms buffers handed out at their start, one 3 ms late.
        r.note(ms(0), ms(20), ms(20), Some(ms(0)));
        r.note(ms(20), ms(20), ms(40), Some(ms(23)));
        assert_eq!(r.at(ms(39)), Some(ms(40)));
        assert_eq!(r.at(ms(40)), Some(ms(60)));
        assert_eq!(r.at(ms(59)), Some(ms(60)));
        assert_eq!(r.at(ms(1000)), Some(ms(1020)));
    }

    #[test]
    fn a_capture_source_reaches_the_boundary_behind_the_clock() {
        let mut r = Reach::default();
        // Handed out 30 ms after their start (20 ms of capture, 10 of latency).
        r.note(ms(0), ms(20), ms(20), Some(ms(30)));
        r.note(ms(20), ms(20), ms(40), Some(ms(50)));
        assert_eq!(r.at(ms(69)), Some(ms(40)));
        assert_eq!(r.at(ms(70)), Some(ms(60)));
        assert_eq!(r.at(ms(1000)), Some(ms(980)));
    }

    #[test]
    fn the_offset_is_the_smallest_of_the_recent_windows() {
        let mut r = Reach::default();
        r.note(ms(0), ms(20), ms(20), Some(ms(0)));
        for k in 1..2 * WINDOW as u64 {
            r.note(ms(20 * k), ms(20), ms(20 * k + 20), Some(ms(20 * k + 5)));
        }
        // Two windows on, the early best is forgotten: 5 ms now.
        let end = ms(40 * WINDOW as u64);
        assert_eq!(r.at(end + ms(4)), Some(end));
        assert_eq!(r.at(end + ms(5)), Some(end + ms(20)));
    }

    #[test]
    fn one_buffer_in_four_is_timed_and_every_one_moves_the_end() {
        let mut r = Reach::default();
        let mut timed = 0;
        for k in 0..40u64 {
            let arrival = r.times_next().then(|| ms(20 * k));
            timed += arrival.is_some() as u32;
            r.note(ms(20 * k), ms(20), ms(20 * k + 20), arrival);
        }
        assert_eq!(timed, 10);
        assert_eq!(r.at(ms(800)), Some(ms(820)));
    }

    #[test]
    fn arithmetic_saturates() {
        let mut r = Reach::default();
        r.note(
            ClockTime::MAX,
            ms(20),
            ClockTime::MAX,
            Some(ClockTime::ZERO),
        );
        assert_eq!(r.at(ClockTime::MAX), Some(ClockTime::MAX));
        let mut r = Reach::default();
        r.note(
            ClockTime::ZERO,
            ClockTime::ZERO,
            ClockTime::ZERO,
            Some(ClockTime::MAX),
        );
        assert_eq!(r.at(ClockTime::MAX), Some(ClockTime::ZERO));
    }
}
