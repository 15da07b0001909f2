// SPDX-License-Identifier: MPL-2.0
//! Where the output stands, in samples, and where an input buffer falls
//! relative to it. Pure arithmetic: no pads, no locks.

use callaudio::Layout;
use gst::ClockTime;

/// The output position within one run of caps: sample 0 of the run is at
/// `origin`, so every timestamp is `origin + samples_to_time(n)` and no
/// rounding error accumulates over a long call.
#[derive(Debug, Clone)]
pub struct Timeline {
    layout: Layout,
    origin: ClockTime,
    origin_offset: u64,
    written: u64,
}

/// Where an input buffer starts relative to the end of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Starts exactly (within tolerance) where the output ends.
    Contiguous,
    /// Starts this many samples after the end: a hole to fill.
    Gap(u64),
    /// Starts this many samples before the end: that much is already sent.
    Overlap(u64),
}

impl Timeline {
    pub fn new(layout: Layout, origin: ClockTime, origin_offset: u64) -> Self {
        Timeline {
            layout,
            origin,
            origin_offset,
            written: 0,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Timestamp of the next sample to go out. Saturates: a hostile PTS near
    /// the end of the clock's range must not panic the streaming thread.
    pub fn end(&self) -> ClockTime {
        self.origin
            .saturating_add(self.layout.samples_to_time(self.written))
    }

    /// The offset of the next sample to go out.
    pub fn end_offset(&self) -> u64 {
        self.origin_offset.saturating_add(self.written)
    }

    /// Claims the next `n` samples without stamping anything: whoever holds a
    /// copy of the timeline from before stamps them (silence is stamped as
    /// it is pushed, outside the state lock).
    pub fn skip(&mut self, n: u64) {
        self.written = self.written.saturating_add(n);
    }

    /// The same stream, continued at `origin`: after a new segment (the next
    /// sample is at `origin` in its terms) or a resync. Offsets keep counting.
    pub fn continue_at(&self, origin: ClockTime) -> Timeline {
        Timeline::new(self.layout.clone(), origin, self.end_offset())
    }

    /// Where a buffer starting at `pts` falls; no PTS means "right after".
    pub fn place(&self, pts: Option<ClockTime>, tolerance: u64) -> Placement {
        let Some(pts) = pts else {
            return Placement::Contiguous;
        };
        let start = if pts >= self.origin {
            self.layout.time_to_samples(pts - self.origin) as i128
        } else {
            -(self.layout.time_to_samples(self.origin - pts) as i128)
        };
        let diff = start - self.written as i128;
        if diff.unsigned_abs() <= tolerance as u128 {
            Placement::Contiguous
        } else if diff > 0 {
            Placement::Gap(diff as u64)
        } else {
            Placement::Overlap((-diff) as u64)
        }
    }

    /// Samples needed to bring the end up to `t` (0 if already there).
    pub fn samples_until(&self, t: ClockTime) -> u64 {
        if t <= self.origin {
            return 0;
        }
        self.layout
            .time_to_samples(t - self.origin)
            .saturating_sub(self.written)
    }

    /// Claims the next `n` samples for `buffer` and stamps it with their
    /// timestamp, duration and offsets.
    pub fn stamp(&mut self, buffer: &mut gst::BufferRef, n: u64) {
        let start = self.end();
        let offset = self.end_offset();
        self.skip(n);
        let end = self.end();
        if buffer.pts() != Some(start) {
            buffer.set_pts(start);
        }
        if buffer.duration() != Some(end - start) {
            buffer.set_duration(end - start);
        }
        buffer.set_offset(offset);
        buffer.set_offset_end(offset.saturating_add(n));
    }

    /// Continues the timeline under new caps: the next sample of the new
    /// format starts exactly where the last one of the old format ended.
    pub fn rebase(&mut self, layout: Layout) {
        let origin = self.end();
        let elapsed = origin - self.origin;
        let origin_offset = layout.time_to_samples(elapsed) + self.layout_offset_base(&layout);
        *self = Timeline::new(layout, origin, origin_offset);
    }

    /// Offsets count samples at the current rate; after a rate change the
    /// earlier part of the stream is re-expressed in the new rate.
    fn layout_offset_base(&self, layout: &Layout) -> u64 {
        let before = self.origin_offset;
        if layout.rate == self.layout.rate {
            before
        } else {
            callaudio::time_to_samples(
                callaudio::samples_to_time(before, self.layout.rate),
                layout.rate,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(rate: i32) -> Layout {
        gst::init().unwrap();
        let caps = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::S16le)
            .rate(rate)
            .channels(1)
            .build();
        Layout::from_caps(&caps).unwrap()
    }

    #[test]
    fn places_buffers_against_the_end() {
        let mut t = Timeline::new(layout(8000), ClockTime::from_seconds(1), 0);
        let mut b = gst::Buffer::new();
        t.stamp(b.get_mut().unwrap(), 800);
        assert_eq!(t.end(), ClockTime::from_mseconds(1100));
        assert_eq!(
            t.place(Some(ClockTime::from_mseconds(1100)), 0),
            Placement::Contiguous
        );
        assert_eq!(t.place(None, 0), Placement::Contiguous);
        assert_eq!(
            t.place(Some(ClockTime::from_mseconds(1150)), 0),
            Placement::Gap(400)
        );
        assert_eq!(
            t.place(Some(ClockTime::from_mseconds(1050)), 0),
            Placement::Overlap(400)
        );
        assert_eq!(
            t.place(Some(ClockTime::from_mseconds(900)), 0),
            Placement::Overlap(1600)
        );
        assert_eq!(
            t.place(Some(ClockTime::from_nseconds(1_100_125_000)), 1),
            Placement::Contiguous
        );
        assert_eq!(t.samples_until(ClockTime::from_mseconds(1200)), 800);
        assert_eq!(t.samples_until(ClockTime::from_mseconds(1000)), 0);
    }

    #[test]
    fn stamps_are_contiguous_without_drift() {
        let mut t = Timeline::new(layout(44100), ClockTime::ZERO, 0);
        let mut expected_pts = ClockTime::ZERO;
        for k in 0..10_000u64 {
            let mut b = gst::Buffer::new();
            t.stamp(b.get_mut().unwrap(), 441);
            assert_eq!(b.pts(), Some(expected_pts));
            assert_eq!(b.offset(), k * 441);
            expected_pts += b.duration().unwrap();
        }
        assert_eq!(expected_pts, ClockTime::from_seconds(100));
    }

    #[test]
    fn rate_change_continues_the_timeline() {
        let mut t = Timeline::new(layout(8000), ClockTime::ZERO, 0);
        let mut b = gst::Buffer::new();
        t.stamp(b.get_mut().unwrap(), 8001);
        let end = t.end();
        t.rebase(layout(16000));
        assert_eq!(t.end(), end);
        let mut b = gst::Buffer::new();
        t.stamp(b.get_mut().unwrap(), 160);
        assert_eq!(b.pts(), Some(end));
        assert_eq!(b.offset(), 16002);
        assert_eq!(b.duration(), Some(ClockTime::from_mseconds(10)));
    }
}
