//! Puts the tracks of a call on one timeline and interleaves them.
//!
//! Every track arrives as mono S16 at the recording's rate. Sample positions
//! are running times relative to the recording's start (the first buffer of
//! any track), converted with the shared rounding rule, so a track that starts
//! late gets leading silence and all tracks share frame indexes exactly.

use std::collections::VecDeque;

use gst::ClockTime;

/// A track that has not started yet holds the others back this long at most;
/// after that it is written as silence until its audio arrives.
const MAX_LAG: ClockTime = ClockTime::from_seconds(2);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrackStats {
    /// Real audio samples received, dropped ones included.
    pub received: u64,
    /// Samples of silence: gaps, stalls filled upstream, leading and trailing pad.
    pub silence: u64,
    /// Samples received that overlapped what the track already had.
    pub dropped: u64,
}

#[derive(Default)]
struct Track {
    /// Frames `[end - queue.len(), end)` not written yet.
    queue: VecDeque<i16>,
    /// Frame index right after this track's last known sample.
    end: u64,
    started: bool,
    eos: bool,
    stats: TrackStats,
}

pub struct Mixer {
    rate: u32,
    tracks: Vec<Track>,
    start: Option<ClockTime>,
    /// Frames already interleaved and handed out.
    written: u64,
}

impl Mixer {
    pub fn new(rate: u32, tracks: usize) -> Self {
        Mixer { rate, tracks: (0..tracks).map(|_| Track::default()).collect(), start: None, written: 0 }
    }

    pub fn channels(&self) -> usize {
        self.tracks.len()
    }

    pub fn stats(&self, track: usize) -> TrackStats {
        self.tracks[track].stats
    }

    /// Whether any track ever received a real (non-silent) sample.
    pub fn has_audio(&self) -> bool {
        self.tracks.iter().any(|t| t.stats.received > 0)
    }

    /// Adds `samples` of `track` starting at running time `running_time`.
    /// `silence` marks buffers that stand in for missing audio (GAP).
    pub fn push(&mut self, track: usize, running_time: ClockTime, samples: &[i16], silence: bool) {
        let start = *self.start.get_or_insert(running_time);
        let pos = if running_time >= start {
            callaudio::time_to_samples(running_time - start, self.rate) as i128
        } else {
            -(callaudio::time_to_samples(start - running_time, self.rate) as i128)
        };
        let written = self.written;
        let t = &mut self.tracks[track];
        t.started = true;
        if !silence {
            t.stats.received += samples.len() as u64;
        }
        let end = t.end.max(written);
        if t.end < written {
            // It was written as silence while it had not started.
            t.stats.silence += written - t.end;
            t.end = written;
        }
        let mut samples = samples;
        if pos > end as i128 {
            let missing = (pos - end as i128) as u64;
            t.queue.extend(std::iter::repeat_n(0, missing as usize));
            t.stats.silence += missing;
            t.end += missing;
        } else if pos < end as i128 {
            let stale = ((end as i128 - pos) as usize).min(samples.len());
            t.stats.dropped += stale as u64;
            samples = &samples[stale..];
        }
        t.queue.extend(samples);
        t.end += samples.len() as u64;
        if silence {
            t.stats.silence += samples.len() as u64;
        }
    }

    pub fn set_eos(&mut self, track: usize) {
        self.tracks[track].eos = true;
    }

    pub fn all_eos(&self) -> bool {
        self.tracks.iter().all(|t| t.eos)
    }

    /// Interleaves every frame all tracks agree on into `out` (S16LE).
    pub fn drain_ready(&mut self, out: &mut Vec<u8>) {
        let lead = self.tracks.iter().map(|t| t.end).max().unwrap_or(0);
        let max_lag = callaudio::time_to_samples(MAX_LAG, self.rate);
        let limit = self
            .tracks
            .iter()
            .filter(|t| !t.eos && (t.started || lead.saturating_sub(self.written) <= max_lag))
            .map(|t| t.end.max(self.written))
            .min()
            .unwrap_or(lead);
        let n = limit.saturating_sub(self.written);
        self.interleave(n, out);
    }

    /// Pads every track to the longest one and interleaves everything.
    pub fn drain_all(&mut self, out: &mut Vec<u8>) {
        let lead = self.tracks.iter().map(|t| t.end).max().unwrap_or(0);
        for t in &mut self.tracks {
            let end = t.end.max(self.written);
            t.stats.silence += lead - end + (end - t.end);
            t.end = lead;
        }
        let n = lead.saturating_sub(self.written);
        self.interleave(n, out);
    }

    fn interleave(&mut self, n: u64, out: &mut Vec<u8>) {
        if n == 0 {
            return;
        }
        let channels = self.tracks.len();
        out.reserve(n as usize * channels * 2);
        if channels == 1 {
            let q = &mut self.tracks[0].queue;
            let take = (n as usize).min(q.len());
            for s in q.drain(..take) {
                out.extend_from_slice(&s.to_le_bytes());
            }
            out.resize(out.len() + (n as usize - take) * 2, 0);
        } else {
            for _ in 0..n {
                for t in &mut self.tracks {
                    out.extend_from_slice(&t.queue.pop_front().unwrap_or(0).to_le_bytes());
                }
            }
        }
        self.written += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> ClockTime {
        ClockTime::from_mseconds(v)
    }

    fn frames(bytes: &[u8], channels: usize) -> Vec<Vec<i16>> {
        bytes
            .chunks_exact(2 * channels)
            .map(|f| f.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]])).collect())
            .collect()
    }

    #[test]
    fn late_track_gets_leading_silence_and_ends_aligned() {
        let mut m = Mixer::new(8000, 2);
        let mut out = Vec::new();
        m.push(0, ms(1000), &[1; 80], false);
        m.drain_ready(&mut out);
        // Track 1 has not started and is within the lag: nothing yet.
        assert!(out.is_empty());
        m.push(1, ms(1005), &[2; 40], false);
        m.drain_ready(&mut out);
        let f = frames(&out, 2);
        assert_eq!(f.len(), 80);
        assert_eq!(f[0], vec![1, 0]);
        assert_eq!(f[39], vec![1, 0]);
        assert_eq!(f[40], vec![1, 2]);
        m.push(1, ms(1010), &[2; 80], false);
        m.set_eos(0);
        m.set_eos(1);
        m.drain_all(&mut out);
        let f = frames(&out, 2);
        assert_eq!(f.len(), 160);
        assert_eq!(f[159], vec![0, 2]);
        assert_eq!(m.stats(0), TrackStats { received: 80, silence: 80, dropped: 0 });
        assert_eq!(m.stats(1), TrackStats { received: 120, silence: 40, dropped: 0 });
    }

    #[test]
    fn overlap_is_dropped_and_gaps_filled() {
        let mut m = Mixer::new(8000, 1);
        let mut out = Vec::new();
        m.push(0, ms(0), &(0..80).collect::<Vec<i16>>(), false);
        m.push(0, ms(5), &(100..180).collect::<Vec<i16>>(), false);
        m.push(0, ms(25), &[7; 8], false);
        m.drain_ready(&mut out);
        let f: Vec<i16> = frames(&out, 1).into_iter().map(|f| f[0]).collect();
        assert_eq!(f.len(), 208);
        assert_eq!(&f[..80], &(0..80).collect::<Vec<i16>>()[..]);
        assert_eq!(&f[80..120], &(140..180).collect::<Vec<i16>>()[..]);
        assert!(f[120..200].iter().all(|&s| s == 0));
        assert_eq!(&f[200..], &[7; 8]);
        assert_eq!(m.stats(0), TrackStats { received: 168, silence: 80, dropped: 40 });
    }

    #[test]
    fn a_track_that_never_starts_is_silence_after_the_lag() {
        let mut m = Mixer::new(8000, 2);
        let mut out = Vec::new();
        m.push(0, ms(0), &[3; 8000 * 3], false);
        m.drain_ready(&mut out);
        assert_eq!(frames(&out, 2).len(), 8000 * 3);
        assert!(m.has_audio());
        m.drain_all(&mut out);
        assert_eq!(m.stats(1).silence, 8000 * 3);
    }

    #[test]
    fn gap_buffers_count_as_silence_not_audio() {
        let mut m = Mixer::new(8000, 1);
        m.push(0, ms(0), &[0; 160], true);
        assert!(!m.has_audio());
        assert_eq!(m.stats(0).silence, 160);
    }
}
