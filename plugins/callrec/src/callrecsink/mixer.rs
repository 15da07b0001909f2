// SPDX-License-Identifier: MPL-2.0
//! Puts the tracks of a call on one timeline and interleaves them, or
//! mixes them into one channel (`mode=mixed`).
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
/// The longest hole in one track that is filled: the track's `stallfiller`
/// fills every hole up to its `max-gap` (60 s by default) itself and
/// resynchronises past it, so a longer hole here is a track whose timestamps
/// jumped. Filling it would queue samples without bound; the recording fails.
pub const MAX_HOLE: ClockTime = ClockTime::from_seconds(60);

/// A track's audio landed further ahead of the recording than `MAX_HOLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jump {
    pub track: usize,
    pub by: ClockTime,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrackStats {
    /// Real audio samples received, dropped ones included.
    pub received: u64,
    /// Samples of silence: gaps, stalls filled upstream, leading and trailing pad.
    pub silence: u64,
    /// Samples received that overlapped what the track already had.
    pub dropped: u64,
    /// Samples recorded as silence because the track was muted.
    pub muted: u64,
}

/// From `at` on, a track's samples are multiplied by `factor` (0: muted).
#[derive(Debug, Clone, Copy)]
struct LevelChange {
    at: ClockTime,
    factor: f64,
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
    /// Gain and mute changes, in the order made (running times ascending).
    levels: Vec<LevelChange>,
}

/// Which statistic a placed piece of samples adds to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Count {
    Audio,
    Silence,
    Nothing,
}

/// What a pause does to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PauseMode {
    /// The timeline goes on; the paused span is written as silence.
    #[default]
    Silence,
    /// The paused span is cut out of the file.
    Skip,
}

/// A pause, in running time; `end` is `None` while it lasts.
#[derive(Debug, Clone, Copy)]
struct Pause {
    start: ClockTime,
    end: Option<ClockTime>,
}

/// What a frame of the output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// One channel per track.
    #[default]
    Interleaved,
    /// One channel: the sum of the tracks, saturated to the S16 range (a
    /// sum that would wrap around clips at full scale instead).
    Mixed,
}

pub struct Mixer {
    rate: u32,
    output: Output,
    tracks: Vec<Track>,
    start: Option<ClockTime>,
    /// Frames already interleaved and handed out.
    written: u64,
    pause_mode: PauseMode,
    pauses: Vec<Pause>,
}

impl Mixer {
    pub fn new(rate: u32, tracks: usize) -> Self {
        Mixer {
            rate,
            output: Output::Interleaved,
            tracks: (0..tracks).map(|_| Track::default()).collect(),
            start: None,
            written: 0,
            pause_mode: PauseMode::default(),
            pauses: Vec::new(),
        }
    }

    /// The recording's start, when a track of another lane set it first.
    pub fn set_start(&mut self, running_time: ClockTime) {
        self.start.get_or_insert(running_time);
    }

    /// Whether the start could move back to `running_time` (see
    /// `move_start_back`).
    pub fn can_move_start_back(&self, running_time: ClockTime) -> bool {
        self.start.is_some_and(|start| {
            running_time < start
                && start - running_time <= MAX_LAG
                && self.written == 0
                && self.pauses.is_empty()
        })
    }

    /// Moves the start back to `running_time` by whole frames, while
    /// nothing is written: a track whose first buffer arrives after
    /// another's but starts before it (two sources started a few ms apart
    /// on a busy machine) keeps its head, and every track already started
    /// gets the span as leading silence. No further back than `MAX_LAG`,
    /// which bounds what is queued for it.
    pub fn move_start_back(&mut self, running_time: ClockTime) {
        if !self.can_move_start_back(running_time) {
            return;
        }
        let start = self.start.unwrap();
        let frames = callaudio::time_to_samples(start - running_time, self.rate);
        if frames == 0 {
            return;
        }
        self.start = Some(start.saturating_sub(callaudio::samples_to_time(frames, self.rate)));
        for t in self.tracks.iter_mut().filter(|t| t.started) {
            for _ in 0..frames {
                t.queue.push_front(0);
            }
            t.end += frames;
            t.stats.silence += frames;
        }
    }

    /// The frame right after the last known sample of any track.
    pub fn lead(&self) -> u64 {
        self.tracks
            .iter()
            .map(|t| t.end)
            .max()
            .unwrap_or(0)
            .max(self.written)
    }

    /// Pads every track with silence up to frame `frames` (the end of a
    /// longer lane).
    pub fn extend_to(&mut self, frames: u64) {
        for t in &mut self.tracks {
            let end = t.end.max(self.written);
            if frames > end {
                t.stats.silence += frames - end + (end - t.end);
                t.queue
                    .extend(std::iter::repeat_n(0, (frames - t.end) as usize));
                t.end = frames;
            }
        }
    }

    pub fn set_output(&mut self, output: Output) {
        self.output = output;
    }

    /// Channels of a frame of the output.
    pub fn output_channels(&self) -> usize {
        match self.output {
            Output::Interleaved => self.tracks.len(),
            Output::Mixed => 1,
        }
    }

    pub fn set_pause_mode(&mut self, mode: PauseMode) {
        self.pause_mode = mode;
    }

    /// Pauses every track at `running_time`; a pause already in effect stays.
    pub fn pause(&mut self, running_time: ClockTime) {
        if self.pauses.last().is_none_or(|p| p.end.is_some()) {
            self.pauses.push(Pause {
                start: running_time,
                end: None,
            });
        }
    }

    /// From `running_time` on, `track`'s samples are multiplied by
    /// `factor` (0 mutes it). Earlier changes made later in running time
    /// are replaced: the newest decision wins from its sample on.
    pub fn set_level(&mut self, track: usize, running_time: ClockTime, factor: f64) {
        let levels = &mut self.tracks[track].levels;
        levels.retain(|l| l.at < running_time);
        levels.push(LevelChange {
            at: running_time,
            factor,
        });
    }

    /// Applies `track`'s gain and mute to `samples` starting at frame `pos`
    /// (of the full timeline, as pauses cut it), saturating: each change
    /// covers the frames up to the next one.
    fn apply_levels(&mut self, track: usize, pos: i128, start: ClockTime, samples: &mut [i16]) {
        let levels = &self.tracks[track].levels;
        let end = pos + samples.len() as i128;
        let mut muted = 0u64;
        for (k, level) in levels.iter().enumerate() {
            let from = self.frame_of(level.at, start).max(pos);
            let until = levels
                .get(k + 1)
                .map_or(end, |next| self.frame_of(next.at, start).min(end));
            if from >= until {
                continue;
            }
            let piece = &mut samples[(from - pos) as usize..(until - pos) as usize];
            if level.factor == 0.0 {
                muted += piece.len() as u64;
                piece.fill(0);
            } else if level.factor != 1.0 {
                for s in piece {
                    *s = (f64::from(*s) * level.factor)
                        .round()
                        .clamp(i16::MIN.into(), i16::MAX.into()) as i16;
                }
            }
        }
        self.tracks[track].stats.muted += muted;
    }

    /// Resumes every track at `running_time`.
    pub fn resume(&mut self, running_time: ClockTime) {
        if let Some(p) = self.pauses.last_mut().filter(|p| p.end.is_none()) {
            p.end = Some(running_time.max(p.start));
        }
    }

    /// A running time as a frame index on the full (uncut) timeline.
    fn frame_of(&self, running_time: ClockTime, start: ClockTime) -> i128 {
        if running_time >= start {
            callaudio::time_to_samples(running_time - start, self.rate) as i128
        } else {
            -(callaudio::time_to_samples(start - running_time, self.rate) as i128)
        }
    }

    /// The paused spans as frame ranges of the full timeline.
    fn paused_frames(&self, start: ClockTime) -> Vec<(i128, i128)> {
        self.pauses
            .iter()
            .map(|p| {
                (
                    self.frame_of(p.start, start),
                    p.end.map_or(i128::MAX, |e| self.frame_of(e, start)),
                )
            })
            .collect()
    }

    pub fn stats(&self, track: usize) -> TrackStats {
        self.tracks[track].stats
    }

    /// Whether any track ever received a real (non-silent) sample.
    pub fn has_audio(&self) -> bool {
        self.tracks.iter().any(|t| t.stats.received > 0)
    }

    /// The fast path of a one-track recording: when `n` samples at
    /// `running_time` continue the track exactly, with nothing queued and no
    /// pause, they are counted as written and true is returned: the caller
    /// writes them to the file as they are. Otherwise nothing changes.
    pub fn pass_through(&mut self, running_time: ClockTime, n: u64, silence: bool) -> bool {
        if self.tracks.len() != 1 || !self.pauses.is_empty() || !self.tracks[0].levels.is_empty() {
            return false;
        }
        let start = *self.start.get_or_insert(running_time);
        let pos = self.frame_of(running_time, start);
        let t = &mut self.tracks[0];
        if !t.queue.is_empty() || t.end != self.written || pos != t.end as i128 {
            return false;
        }
        t.started = true;
        t.end += n;
        self.written += n;
        if silence {
            t.stats.silence += n;
        } else {
            t.stats.received += n;
        }
        true
    }

    /// Adds `samples` of `track` starting at running time `running_time`.
    /// `silence` marks buffers that stand in for missing audio (GAP).
    ///
    /// Pauses cut the input at the exact frame where they start and end: in
    /// `Silence` mode the paused part is zeroed, in `Skip` mode it is removed
    /// and what follows moves up.
    pub fn push(
        &mut self,
        track: usize,
        running_time: ClockTime,
        samples: &[i16],
        silence: bool,
    ) -> Result<(), Jump> {
        let start = *self.start.get_or_insert(running_time);
        let pos = self.frame_of(running_time, start);
        let scaled;
        let samples = if self.tracks[track].levels.is_empty() {
            samples
        } else {
            let mut copy = samples.to_vec();
            self.apply_levels(track, pos, start, &mut copy);
            scaled = copy;
            &scaled[..]
        };
        let count = if silence {
            Count::Silence
        } else {
            Count::Audio
        };
        if self.pauses.is_empty() {
            return self.place(track, pos, samples, count);
        }
        self.check_hole(track, pos)?;
        if !silence {
            self.tracks[track].stats.received += samples.len() as u64;
        }
        // Received is counted once, above; the pieces count only silence.
        let piece_count = if silence {
            Count::Silence
        } else {
            Count::Nothing
        };
        let pauses = self.paused_frames(start);
        let end = pos + samples.len() as i128;
        let mut at = pos;
        while at < end {
            let inside = pauses.iter().find(|(a, b)| *a <= at && at < *b);
            let next = match inside {
                Some((_, b)) => (*b).min(end),
                None => pauses
                    .iter()
                    .map(|(a, _)| *a)
                    .filter(|a| *a > at)
                    .min()
                    .unwrap_or(end)
                    .min(end),
            };
            let piece = &samples[(at - pos) as usize..(next - pos) as usize];
            let skipped: i128 = match self.pause_mode {
                PauseMode::Skip => pauses
                    .iter()
                    .map(|(a, b)| (*b).min(at) - (*a).min(at))
                    .sum(),
                PauseMode::Silence => 0,
            };
            match (inside.is_some(), self.pause_mode) {
                (false, _) => self.place(track, at - skipped, piece, piece_count)?,
                (true, PauseMode::Silence) => {
                    self.place(track, at, &vec![0i16; piece.len()], Count::Silence)?
                }
                (true, PauseMode::Skip) => {}
            }
            at = next;
        }
        Ok(())
    }

    /// Refuses a placement at `pos` further than `MAX_HOLE` past the end of
    /// `track` (or of what is written).
    fn check_hole(&self, track: usize, pos: i128) -> Result<(), Jump> {
        let end = self.tracks[track].end.max(self.written) as i128;
        let max_hole = callaudio::time_to_samples(MAX_HOLE, self.rate) as i128;
        if pos - end > max_hole {
            return Err(Jump {
                track,
                by: callaudio::samples_to_time((pos - end) as u64, self.rate),
            });
        }
        Ok(())
    }

    /// Appends `samples` of `track` at frame `pos`: fills a hole before them,
    /// drops what overlaps frames the track already has.
    fn place(
        &mut self,
        track: usize,
        pos: i128,
        samples: &[i16],
        count: Count,
    ) -> Result<(), Jump> {
        self.check_hole(track, pos)?;
        let written = self.written;
        let t = &mut self.tracks[track];
        t.started = true;
        if count == Count::Audio {
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
        if count == Count::Silence {
            t.stats.silence += samples.len() as u64;
        }
        Ok(())
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

    /// Writes `n` frames: each track's samples go to every `channels`-th
    /// slot of the output (or are summed into one), a track out of samples
    /// gives silence.
    fn interleave(&mut self, n: u64, out: &mut Vec<u8>) {
        if n == 0 {
            return;
        }
        let n = n as usize;
        if self.output == Output::Mixed {
            self.mix(n, out);
            return;
        }
        let channels = self.tracks.len();
        let base = out.len();
        out.resize(base + n * channels * 2, 0);
        let frames = &mut out[base..];
        for (c, t) in self.tracks.iter_mut().enumerate() {
            let take = n.min(t.queue.len());
            for (slot, s) in frames
                .chunks_exact_mut(2 * channels)
                .zip(t.queue.drain(..take))
            {
                slot[2 * c..2 * c + 2].copy_from_slice(&s.to_le_bytes());
            }
        }
        self.written += n as u64;
    }

    fn mix(&mut self, n: usize, out: &mut Vec<u8>) {
        let mut sum = vec![0i32; n];
        for t in &mut self.tracks {
            let take = n.min(t.queue.len());
            for (acc, s) in sum.iter_mut().zip(t.queue.drain(..take)) {
                *acc += i32::from(s);
            }
        }
        out.extend(
            sum.into_iter()
                .flat_map(|s| (s.clamp(i16::MIN.into(), i16::MAX.into()) as i16).to_le_bytes()),
        );
        self.written += n as u64;
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
            .map(|f| {
                f.chunks_exact(2)
                    .map(|s| i16::from_le_bytes([s[0], s[1]]))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn gain_and_mute_start_at_the_exact_sample_of_their_running_time() {
        let mut m = Mixer::new(8000, 2);
        let mut out = Vec::new();
        // 6 dB on track 0 from 1 ms (frame 8); track 1 muted from 2 ms to 3 ms.
        m.set_level(0, ms(1), 10f64.powf(6.0 / 20.0));
        m.set_level(1, ms(2), 0.0);
        m.set_level(1, ms(3), 1.0);
        m.push(0, ms(0), &[1000; 40], false).unwrap();
        m.push(1, ms(0), &[20000; 40], false).unwrap();
        m.drain_ready(&mut out);
        let f = frames(&out, 2);
        assert_eq!(f[7], vec![1000, 20000]);
        assert_eq!(f[8], vec![1995, 20000]);
        assert_eq!(f[15], vec![1995, 20000]);
        assert_eq!(f[16], vec![1995, 0]);
        assert_eq!(f[23], vec![1995, 0]);
        assert_eq!(f[24], vec![1995, 20000]);
        assert_eq!(m.stats(1).muted, 8);
        // Gain saturates instead of wrapping.
        m.set_level(1, ms(5), 10f64.powf(24.0 / 20.0));
        m.push(1, ms(5), &[20000, -20000], false).unwrap();
        m.push(0, ms(5), &[0, 0], false).unwrap();
        out.clear();
        m.drain_ready(&mut out);
        assert_eq!(frames(&out, 2), vec![vec![0, i16::MAX], vec![0, i16::MIN]]);
    }

    #[test]
    fn mixed_output_sums_the_tracks_and_clips_at_full_scale() {
        let mut m = Mixer::new(8000, 2);
        m.set_output(Output::Mixed);
        assert_eq!(m.output_channels(), 1);
        let mut out = Vec::new();
        m.push(0, ms(0), &[1000, -1000, 30000, -30000], false)
            .unwrap();
        m.push(1, ms(0), &[234, 1000, 30000, -30000], false)
            .unwrap();
        m.drain_ready(&mut out);
        assert_eq!(
            frames(&out, 1),
            vec![vec![1234], vec![0], vec![32767], vec![-32768]]
        );
    }

    #[test]
    fn late_track_gets_leading_silence_and_ends_aligned() {
        let mut m = Mixer::new(8000, 2);
        let mut out = Vec::new();
        m.push(0, ms(1000), &[1; 80], false).unwrap();
        m.drain_ready(&mut out);
        // Track 1 has not started and is within the lag: nothing yet.
        assert!(out.is_empty());
        m.push(1, ms(1005), &[2; 40], false).unwrap();
        m.drain_ready(&mut out);
        let f = frames(&out, 2);
        assert_eq!(f.len(), 80);
        assert_eq!(f[0], vec![1, 0]);
        assert_eq!(f[39], vec![1, 0]);
        assert_eq!(f[40], vec![1, 2]);
        m.push(1, ms(1010), &[2; 80], false).unwrap();
        m.set_eos(0);
        m.set_eos(1);
        m.drain_all(&mut out);
        let f = frames(&out, 2);
        assert_eq!(f.len(), 160);
        assert_eq!(f[159], vec![0, 2]);
        assert_eq!(
            m.stats(0),
            TrackStats {
                received: 80,
                silence: 80,
                dropped: 0,
                muted: 0
            }
        );
        assert_eq!(
            m.stats(1),
            TrackStats {
                received: 120,
                silence: 40,
                dropped: 0,
                muted: 0
            }
        );
    }

    #[test]
    fn a_track_that_starts_earlier_but_arrives_later_keeps_its_head() {
        let mut m = Mixer::new(8000, 2);
        let mut out = Vec::new();
        // Track 1's first buffer arrives first, starting at 1005 ms; track
        // 0's starts 5 ms earlier and arrives after it, before anything is
        // written.
        m.set_start(ms(1005));
        m.push(1, ms(1005), &[2; 80], false).unwrap();
        assert!(m.can_move_start_back(ms(1000)));
        m.move_start_back(ms(1000));
        m.push(0, ms(1000), &[1; 80], false).unwrap();
        m.set_eos(0);
        m.set_eos(1);
        m.drain_all(&mut out);
        let f = frames(&out, 2);
        assert_eq!(f.len(), 120);
        assert_eq!(f[0], vec![1, 0]);
        assert_eq!(f[40], vec![1, 2]);
        assert_eq!(f[119], vec![0, 2]);
        assert_eq!(m.stats(0).dropped, 0, "track 0 kept its head");
        assert_eq!(m.stats(0).received + m.stats(0).silence, 120);
        assert_eq!(m.stats(1).received + m.stats(1).silence, 120);
        // Once written, or further back than MAX_LAG, the start stays.
        assert!(!m.can_move_start_back(ms(900)));
        let mut fresh = Mixer::new(8000, 1);
        fresh.set_start(ms(5000));
        assert!(!fresh.can_move_start_back(ms(2999)));
        assert!(fresh.can_move_start_back(ms(3000)));
    }

    #[test]
    fn overlap_is_dropped_and_gaps_filled() {
        let mut m = Mixer::new(8000, 1);
        let mut out = Vec::new();
        m.push(0, ms(0), &(0..80).collect::<Vec<i16>>(), false)
            .unwrap();
        m.push(0, ms(5), &(100..180).collect::<Vec<i16>>(), false)
            .unwrap();
        m.push(0, ms(25), &[7; 8], false).unwrap();
        m.drain_ready(&mut out);
        let f: Vec<i16> = frames(&out, 1).into_iter().map(|f| f[0]).collect();
        assert_eq!(f.len(), 208);
        assert_eq!(&f[..80], &(0..80).collect::<Vec<i16>>()[..]);
        assert_eq!(&f[80..120], &(140..180).collect::<Vec<i16>>()[..]);
        assert!(f[120..200].iter().all(|&s| s == 0));
        assert_eq!(&f[200..], &[7; 8]);
        assert_eq!(
            m.stats(0),
            TrackStats {
                received: 168,
                silence: 80,
                dropped: 40,
                muted: 0
            }
        );
    }

    #[test]
    fn a_track_that_never_starts_is_silence_after_the_lag() {
        let mut m = Mixer::new(8000, 2);
        let mut out = Vec::new();
        m.push(0, ms(0), &[3; 8000 * 3], false).unwrap();
        m.drain_ready(&mut out);
        assert_eq!(frames(&out, 2).len(), 8000 * 3);
        assert!(m.has_audio());
        m.drain_all(&mut out);
        assert_eq!(m.stats(1).silence, 8000 * 3);
    }

    /// Pushes `frames` frames per track in 20 ms buffers (track c holds
    /// `k * (c + 1)` at frame k) with a pause from 0.5 s to 1.25 s.
    fn paused_recording(mode: PauseMode, channels: usize, frames: usize) -> Vec<Vec<i16>> {
        let mut m = Mixer::new(8000, channels);
        m.set_pause_mode(mode);
        m.pause(ms(500) + ClockTime::from_nseconds(62_500)); // inside a buffer, on sample 4001
        m.resume(ms(1250));
        let mut out = Vec::new();
        for b in 0..frames / 160 {
            for c in 0..channels {
                let samples: Vec<i16> = (b * 160..(b + 1) * 160)
                    .map(|k| (k * (c + 1)) as i16)
                    .collect();
                m.push(c, ms(20 * b as u64), &samples, false).unwrap();
            }
            m.drain_ready(&mut out);
        }
        m.drain_all(&mut out);
        let f = frames_of(&out, channels);
        (0..channels)
            .map(|c| f.iter().map(|fr| fr[c]).collect())
            .collect()
    }

    fn frames_of(bytes: &[u8], channels: usize) -> Vec<Vec<i16>> {
        frames(bytes, channels)
    }

    #[test]
    fn skip_pause_is_a_lossless_cut_at_the_exact_sample() {
        for channels in [1, 2] {
            let tracks = paused_recording(PauseMode::Skip, channels, 16000);
            for (c, got) in tracks.iter().enumerate() {
                let input: Vec<i16> = (0..16000).map(|k| (k * (c + 1)) as i16).collect();
                // Everything before the pause, then everything after it.
                let expected: Vec<i16> = input[..4001]
                    .iter()
                    .chain(&input[10000..])
                    .copied()
                    .collect();
                assert_eq!(got, &expected, "channel {c} of {channels}");
            }
        }
    }

    #[test]
    fn silence_pause_keeps_the_timeline() {
        for channels in [1, 2] {
            let tracks = paused_recording(PauseMode::Silence, channels, 16000);
            for (c, got) in tracks.iter().enumerate() {
                assert_eq!(got.len(), 16000);
                let input: Vec<i16> = (0..16000).map(|k| (k * (c + 1)) as i16).collect();
                assert_eq!(&got[..4001], &input[..4001]);
                assert!(got[4001..10000].iter().all(|&s| s == 0));
                assert_eq!(&got[10000..], &input[10000..]);
            }
        }
    }

    #[test]
    fn one_track_passes_contiguous_audio_through_and_falls_back_otherwise() {
        let mut m = Mixer::new(8000, 1);
        let mut out = Vec::new();
        assert!(m.pass_through(ms(0), 160, false));
        assert!(m.pass_through(ms(20), 160, false));
        // A hole: the general path fills it.
        assert!(!m.pass_through(ms(60), 160, false));
        m.push(0, ms(60), &[5; 160], false).unwrap();
        m.drain_ready(&mut out);
        // The 320 frames that passed through went to the file directly; the
        // mixer gives the 20 ms hole as silence, then the samples.
        let f = frames(&out, 1);
        assert_eq!(f.len(), 320);
        assert!(f[..160].iter().all(|s| s[0] == 0));
        assert!(f[160..].iter().all(|s| s[0] == 5));
        // Contiguous again, nothing queued: back on the fast path.
        assert!(m.pass_through(ms(80), 160, false));
        assert_eq!(
            m.stats(0),
            TrackStats {
                received: 640,
                silence: 160,
                dropped: 0,
                muted: 0
            }
        );
        assert!(!Mixer::new(8000, 2).pass_through(ms(0), 160, false));
    }

    #[test]
    fn a_jump_past_the_longest_hole_is_refused_not_queued() {
        let mut m = Mixer::new(8000, 2);
        m.push(0, ms(0), &[1; 160], false).unwrap();
        m.push(1, ms(0), &[2; 160], false).unwrap();
        let jump = m.push(
            1,
            ms(20) + ClockTime::from_seconds(10 * 3600),
            &[2; 160],
            false,
        );
        assert_eq!(
            jump,
            Err(Jump {
                track: 1,
                by: ClockTime::from_seconds(10 * 3600)
            })
        );
        assert!(m.tracks[1].queue.len() <= 320, "the hole was queued");
        // Within the bound a hole is filled as before.
        m.push(1, ms(20) + ClockTime::from_seconds(30), &[2; 160], false)
            .unwrap();
    }

    #[test]
    fn gap_buffers_count_as_silence_not_audio() {
        let mut m = Mixer::new(8000, 1);
        m.push(0, ms(0), &[0; 160], true).unwrap();
        assert!(!m.has_audio());
        assert_eq!(m.stats(0).silence, 160);
    }
}
