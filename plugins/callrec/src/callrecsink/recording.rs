// SPDX-License-Identifier: MPL-2.0
//! One recording, from READY->PAUSED to its outcome: which track is which
//! channel, the mixer, the writer, pauses, and the decision at the end. No
//! GObject here: the element hands it buffers and events; an end is a
//! `Finishing` (`finalization.rs`), which the element completes with no
//! lock held (it waits for the disk) and whose `Report` it posts.
//!
//! Tracks are addressed by their pad number (`sink_N` is track N), never by
//! a position in a list: pads may be requested and released in any order
//! before the start, and the channel of each is fixed when the recording
//! starts, in ascending pad number.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::finalization::{Finishing, Step};
use super::mixer::{Jump, Mixer, Output, PauseMode, TrackStats};
use super::writing::FileWriter;

/// The rate figures are given in while no input has fixed the real one.
pub const FALLBACK_RATE: u32 = 8000;
/// A test-only track number whose buffers panic, to prove a panic of ours
/// becomes a failed recording and never crosses into GStreamer.
#[cfg(test)]
pub const PANIC_TRACK: u32 = 4242;

/// A track as the outcome names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackId {
    pub number: u32,
    pub pad: String,
}

/// How a recording ended, with the figures for the bus.
pub struct Report {
    pub outcome: Outcome,
    /// Per channel, in channel order.
    pub tracks: Vec<(TrackId, TrackStats)>,
    pub rate: u32,
    /// Wall-clock time the first sample was recorded, if one was.
    pub started_at: Option<std::time::SystemTime>,
}

pub enum Outcome {
    /// `reason`: `eos`, `stopped` or `max-duration`.
    Finalized {
        files: Vec<PathBuf>,
        frames: u64,
        reason: &'static str,
    },
    NoAudio,
    TooShort {
        frames: u64,
    },
    Failed(String),
}

/// Why a track's buffer was not recorded.
pub enum Refusal {
    Flow(gst::FlowError),
    NoTimestamps,
    /// The recording ended here; completing it says why.
    Ended(Box<Finishing>),
}

/// What a recording is set up with.
pub struct Setup {
    /// Interleaved (a channel per track) or mixed (one channel).
    pub output: Output,
    /// One file per track (`mode=separate`): each track has its own lane
    /// (mixer and file) and may have its own rate.
    pub separate: bool,
    pub min_duration: gst::ClockTime,
    pub pause_mode: PauseMode,
    /// Zero: no limit.
    pub max_duration: gst::ClockTime,
}

pub struct Recording {
    /// Unique in the process: what a track remembers its channel by.
    id: u64,
    /// The files, until the outcome is decided (then nothing is written).
    files: Option<FileWriter>,
    phase: Phase,
    /// Channel order: ascending pad number.
    tracks: Vec<TrackId>,
    setup: Setup,
    /// Reused per buffer: the track's samples, and the interleaved output.
    samples: Vec<i16>,
    scratch: Vec<u8>,
    /// When the first sample was recorded (wall clock).
    started_at: Option<std::time::SystemTime>,
    /// Set when finalization was abandoned: a late finish must not publish.
    abandoned: Arc<AtomicBool>,
}

/// A track's channel in the recording it was last asked for
/// (`Recording::channel_memo`): the recording's id above 16 bits.
#[derive(Default)]
pub struct ChannelMemo(AtomicU64);

/// Where a recording is between its start and its outcome.
enum Phase {
    /// No buffer has fixed the rates yet. Pauses (true) and resumes made
    /// meanwhile, and gain and mute changes (channel, at, factor), wait for
    /// the mixers.
    Waiting {
        pauses: Vec<(bool, gst::ClockTime)>,
        levels: Vec<(usize, gst::ClockTime, f64)>,
    },
    /// The rates are fixed: one lane per file, one mixer for all tracks or
    /// (separate) one per track at its own rate. They share the start (the
    /// first buffer of any track) and, at the end, the length.
    Mixing(Vec<Lane>),
}

/// One file's share of the recording.
struct Lane {
    mixer: Mixer,
    rate: u32,
    /// `max-duration` in this lane's frames.
    max_frames: Option<u64>,
    /// The lane holds `max-duration` in full.
    full: bool,
}

/// The recording the element and every track's sink share; `None` between
/// recordings.
pub type SharedRecording = Arc<Mutex<Option<Recording>>>;

impl Recording {
    /// `tracks` in any order; channels follow their pad numbers.
    pub fn new(files: FileWriter, mut tracks: Vec<TrackId>, setup: Setup) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        tracks.sort_by_key(|t| t.number);
        Recording {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            files: Some(files),
            phase: Phase::Waiting {
                pauses: Vec::new(),
                levels: Vec::new(),
            },
            tracks,
            setup,
            samples: Vec::new(),
            scratch: Vec::new(),
            started_at: None,
            abandoned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The channel of track `number`, if it is part of this recording.
    pub fn channel_of(&self, number: u32) -> Option<usize> {
        self.tracks.binary_search_by_key(&number, |t| t.number).ok()
    }

    /// `channel_of`, remembered in `memo` (one per track) for as long as
    /// this recording lasts: the per-buffer path then reads no track list.
    pub fn channel_memo(&self, number: u32, memo: &ChannelMemo) -> Option<usize> {
        let known = memo.0.load(Ordering::Relaxed);
        if known >> 16 == self.id {
            return Some((known & 0xffff) as usize);
        }
        let channel = self.channel_of(number)?;
        if let Ok(c) = u16::try_from(channel) {
            memo.0
                .store(self.id << 16 | u64::from(c), Ordering::Relaxed);
        }
        Some(channel)
    }

    pub fn channels(&self) -> usize {
        self.tracks.len()
    }

    fn lanes(&self) -> &[Lane] {
        match &self.phase {
            Phase::Mixing(lanes) => lanes,
            Phase::Waiting { .. } => &[],
        }
    }

    /// The rate of the first file (every file's, but in `separate` mode).
    pub fn rate(&self) -> u32 {
        self.lanes().first().map_or(FALLBACK_RATE, |l| l.rate)
    }

    /// The rates are fixed by the first real input buffer of any track.
    pub fn rates_fixed(&self) -> bool {
        matches!(self.phase, Phase::Mixing(_))
    }

    /// The outcome is decided; nothing is written any more.
    pub fn is_done(&self) -> bool {
        self.files.is_none()
    }

    /// What finishing the files may take beyond `finalize-timeout`: the
    /// rewrite of an encrypted recording (`FileWriter::finish_bound`).
    pub fn finish_allowance(&self, timeout: std::time::Duration) -> std::time::Duration {
        self.files
            .as_ref()
            .map_or(timeout, |f| f.finish_bound().max(timeout))
    }

    pub fn abandoned_flag(&self) -> Arc<AtomicBool> {
        self.abandoned.clone()
    }

    /// The rate `channel`'s audio must have, once the rates are fixed.
    pub fn rate_of(&self, channel: usize) -> Option<u32> {
        self.lanes().get(self.lane_of(channel).0).map(|l| l.rate)
    }

    /// Every lane holds `max-duration`: what comes after is dropped and the
    /// pipeline goes on.
    fn at_limit(&self) -> bool {
        let lanes = self.lanes();
        !lanes.is_empty() && lanes.iter().all(|l| l.full)
    }

    /// (lane, track within the lane's mixer) of `channel`.
    fn lane_of(&self, channel: usize) -> (usize, usize) {
        if self.setup.separate {
            (channel, 0)
        } else {
            (0, channel)
        }
    }

    /// Fixes the rate of every track (in channel order) and starts mixing.
    /// Once. Outside `separate` mode every track has the same rate.
    pub fn fix_rates(&mut self, track_rates: &[u32]) {
        let Phase::Waiting { pauses, levels } = &mut self.phase else {
            return;
        };
        let (pauses, levels) = (std::mem::take(pauses), std::mem::take(levels));
        let rates: Vec<u32> = if self.setup.separate {
            track_rates.to_vec()
        } else {
            vec![track_rates[0]]
        };
        let mut lanes: Vec<Lane> = rates
            .iter()
            .map(|&rate| Lane {
                mixer: self.new_mixer(rate),
                rate,
                max_frames: (!self.setup.max_duration.is_zero())
                    .then(|| callaudio::time_to_samples(self.setup.max_duration, rate)),
                full: false,
            })
            .collect();
        for (pause, at) in pauses {
            for lane in &mut lanes {
                if pause {
                    lane.mixer.pause(at)
                } else {
                    lane.mixer.resume(at)
                }
            }
        }
        for (channel, at, factor) in levels {
            let (lane, track) = self.lane_of(channel);
            lanes[lane].mixer.set_level(track, at, factor);
        }
        if let Some(files) = self.files.as_mut() {
            files.set_rates(rates);
        }
        self.phase = Phase::Mixing(lanes);
    }

    fn new_mixer(&self, rate: u32) -> Mixer {
        let tracks = if self.setup.separate {
            1
        } else {
            self.tracks.len()
        };
        let mut mixer = Mixer::new(rate, tracks);
        mixer.set_output(self.setup.output);
        mixer.set_pause_mode(self.setup.pause_mode);
        mixer
    }

    /// Pauses (`pause` true) or resumes every track at `at`; false once the
    /// recording is over.
    pub fn set_paused(&mut self, pause: bool, at: gst::ClockTime) -> bool {
        if self.is_done() {
            return false;
        }
        match &mut self.phase {
            Phase::Waiting { pauses, .. } => pauses.push((pause, at)),
            Phase::Mixing(lanes) => {
                for lane in lanes {
                    if pause {
                        lane.mixer.pause(at)
                    } else {
                        lane.mixer.resume(at)
                    }
                }
            }
        }
        true
    }

    /// Track `number`'s samples are multiplied by `factor` (0: muted) from
    /// running time `at` on; false once the recording is over.
    pub fn set_level(&mut self, number: u32, at: gst::ClockTime, factor: f64) -> bool {
        let Some(channel) = self.channel_of(number).filter(|_| !self.is_done()) else {
            return false;
        };
        let (lane, track) = self.lane_of(channel);
        match &mut self.phase {
            Phase::Waiting { levels, .. } => levels.push((channel, at, factor)),
            Phase::Mixing(lanes) => lanes[lane].mixer.set_level(track, at, factor),
        }
        true
    }

    /// `record`, for a buffer of S16LE mono samples at `rate`: once the
    /// rates are fixed, audio at any other rate than its lane's would be
    /// misplaced, so it fails the recording (keeping what was written)
    /// instead. (Before, there is only stallfiller's silence, which does not
    /// start a recording.)
    pub fn record_at_rate(
        &mut self,
        channel: usize,
        rate: Option<u32>,
        running_time: Option<gst::ClockTime>,
        buffer: &gst::BufferRef,
    ) -> Result<Option<Finishing>, Refusal> {
        match (self.rate_of(channel), rate) {
            (None, _) => {}
            (Some(want), Some(got)) if want == got => {}
            (Some(want), got) if !self.is_done() => {
                let got = got.map_or("an unknown rate".into(), |r| format!("{r} Hz"));
                let reason = format!(
                    "track {} reached the recorder at {got}, but its file is at {want} Hz; this is a bug",
                    self.tracks[channel].pad,
                );
                return Err(Refusal::Ended(Box::new(
                    self.fail(reason).expect("not done yet"),
                )));
            }
            _ => {}
        }
        self.record(channel, running_time, buffer)
    }

    /// Places one buffer of `channel`; on a write failure or a track that
    /// jumped, the recording ends here, keeping what is on disk under the
    /// partial name. The report when it brought the recording to its end
    /// (`max-duration`).
    pub fn record(
        &mut self,
        channel: usize,
        running_time: Option<gst::ClockTime>,
        buffer: &gst::BufferRef,
    ) -> Result<Option<Finishing>, Refusal> {
        #[cfg(test)]
        if self.tracks[channel].number == PANIC_TRACK {
            panic!("test: track {PANIC_TRACK} panics");
        }
        if self.at_limit() {
            // Recorded in full: the call may go on, the file does not.
            return Ok(None);
        }
        let running_time = running_time.ok_or(Refusal::NoTimestamps)?;
        if self.is_done() {
            return Err(Refusal::Flow(gst::FlowError::Eos));
        }
        let map = buffer
            .map_readable()
            .map_err(|_| Refusal::Flow(gst::FlowError::Error))?;
        let silence = buffer.flags().contains(gst::BufferFlags::GAP);
        if let Phase::Mixing(lanes) = &mut self.phase
            && lanes
                .iter()
                .all(|l| l.mixer.can_move_start_back(running_time))
        {
            // Every lane's start moves together: the files share it.
            for lane in lanes {
                lane.mixer.move_start_back(running_time);
            }
        }
        if let Phase::Mixing(lanes) = &mut self.phase
            && self.started_at.is_none()
        {
            // The recording starts with its first buffer, on every lane: a
            // track that starts late gets leading silence in its own file too.
            for lane in lanes {
                lane.mixer.set_start(running_time);
            }
            let now = std::time::SystemTime::now();
            self.started_at = Some(now);
            if let Some(files) = self.files.as_mut() {
                files.set_origination(now);
            }
        }
        if let Err(reason) = self.push(channel, running_time, &map, silence) {
            return Err(Refusal::Ended(Box::new(
                self.fail(reason).expect("not done yet"),
            )));
        }
        if self.at_limit() {
            return Ok(self.finalize("max-duration"));
        }
        Ok(None)
    }

    /// Feeds S16LE samples of one channel and writes whatever its lane has
    /// ready (in a shared file: what all channels agree on).
    fn push(
        &mut self,
        channel: usize,
        running_time: gst::ClockTime,
        s16le: &[u8],
        silence: bool,
    ) -> Result<(), String> {
        let (lane, track) = self.lane_of(channel);
        let Phase::Mixing(lanes) = &mut self.phase else {
            return Ok(());
        };
        let files = self
            .files
            .as_mut()
            .expect("files live as long as the recording is not done");
        let Lane {
            mixer,
            max_frames: max,
            full,
            ..
        } = &mut lanes[lane];
        let max = *max;
        // One track continuing exactly: its bytes are already the file's.
        *full = if mixer.pass_through(running_time, s16le.len() as u64 / 2, silence) {
            write_capped(files, lane, s16le, 2, max).map_err(|e| e.to_string())?
        } else {
            self.samples.clear();
            self.samples.extend(
                s16le
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]])),
            );
            mixer
                .push(track, running_time, &self.samples, silence)
                .map_err(|jump| describe_jump(&self.tracks, self.setup.separate, channel, jump))?;
            self.scratch.clear();
            mixer.drain_ready(&mut self.scratch);
            let frame = 2 * mixer.output_channels();
            write_capped(files, lane, &self.scratch, frame, max).map_err(|e| e.to_string())?
        };
        Ok(())
    }

    /// Track `number` ended; the recording's end once every track has.
    pub fn track_eos(&mut self, number: u32) -> Option<Finishing> {
        let channel = self.channel_of(number)?;
        // A track may end before any track sent a buffer.
        let rates = vec![FALLBACK_RATE; self.tracks.len()];
        self.fix_rates(&rates);
        let (lane, track) = self.lane_of(channel);
        let Phase::Mixing(lanes) = &mut self.phase else {
            unreachable!("the rates were fixed just above");
        };
        lanes[lane].mixer.set_eos(track);
        if !lanes.iter().all(|l| l.mixer.all_eos()) {
            return None;
        }
        self.finalize("eos")
    }

    /// Ends the recording as failed, keeping what is on disk under the
    /// partial name (the writer makes it playable). Once.
    pub fn fail(&mut self, reason: String) -> Option<Finishing> {
        let files = self.files.take()?;
        Some(self.finishing(Step::Keep(files, reason)))
    }

    /// Gives up before any audio: every `.part` is removed.
    pub fn discard(&mut self) {
        if let Some(files) = self.files.take() {
            files.discard();
        }
    }

    /// Decides the outcome: publish, or discard and say why. Once.
    pub fn finalize(&mut self, reason: &'static str) -> Option<Finishing> {
        let files = self.files.take()?;
        let step = self.last_frames(files, reason);
        Some(self.finishing(step))
    }

    /// The end `step` leads to, with the figures of every channel.
    fn finishing(&self, step: Step) -> Finishing {
        let tracks = self
            .tracks
            .iter()
            .enumerate()
            .map(|(c, id)| {
                let (lane, track) = self.lane_of(c);
                let stats = self
                    .lanes()
                    .get(lane)
                    .map(|l| l.mixer.stats(track))
                    .unwrap_or_default();
                (id.clone(), stats)
            })
            .collect();
        Finishing {
            step,
            tracks,
            rate: self.rate(),
            started_at: self.started_at,
            abandoned: self.abandoned.clone(),
        }
    }

    /// Writes what every lane still holds, all ending at the longest lane's
    /// end, and decides what the disk is left to do.
    fn last_frames(&mut self, mut files: FileWriter, reason: &'static str) -> Step {
        let Phase::Mixing(lanes) = &mut self.phase else {
            // Stopped before any buffer.
            return Step::Discard(files, Outcome::NoAudio);
        };
        if !lanes.iter().any(|l| l.mixer.has_audio()) {
            return Step::Discard(files, Outcome::NoAudio);
        }
        let end = lanes
            .iter()
            .map(|l| callaudio::samples_to_time(l.mixer.lead(), l.rate))
            .max()
            .unwrap_or_default();
        for (index, lane) in lanes.iter_mut().enumerate() {
            lane.mixer
                .extend_to(callaudio::time_to_samples(end, lane.rate));
            self.scratch.clear();
            lane.mixer.drain_all(&mut self.scratch);
            let frame = 2 * lane.mixer.output_channels();
            if let Err(err) = write_capped(&mut files, index, &self.scratch, frame, lane.max_frames)
            {
                return Step::Keep(files, err.to_string());
            }
        }
        let frames = files.frames(0);
        // Audio may have come and no frame been written (max-duration
        // shorter than a sample): fail closed, whatever limit cut it.
        if (0..lanes.len()).all(|lane| files.frames(lane) == 0) {
            return Step::Discard(files, Outcome::NoAudio);
        }
        if callaudio::samples_to_time(frames, lanes[0].rate) < self.setup.min_duration {
            return Step::Discard(files, Outcome::TooShort { frames });
        }
        Step::Publish {
            files,
            frames,
            reason,
        }
    }
}

/// Writes `bytes` (frames of `frame` bytes), no further than `max` frames
/// in all; true once the recording holds `max` frames.
fn write_capped(
    files: &mut FileWriter,
    lane: usize,
    bytes: &[u8],
    frame: usize,
    max: Option<u64>,
) -> Result<bool, super::files::FileError> {
    let Some(max) = max else {
        files.write(lane, bytes)?;
        return Ok(false);
    };
    let room = max.saturating_sub(files.frames(lane));
    let take = ((bytes.len() / frame) as u64).min(room) as usize * frame;
    files.write(lane, &bytes[..take])?;
    Ok(files.frames(lane) >= max)
}

/// `channel`: the track that was pushed, which is the one that jumped when
/// its lane holds only it (`separate`).
fn describe_jump(tracks: &[TrackId], separate: bool, channel: usize, jump: Jump) -> String {
    let track = if separate { channel } else { jump.track };
    format!(
        "the audio of {} jumped {} ahead of the recording, more than the longest hole filled ({}); \
         its timestamps are not those of this call",
        tracks[track].pad,
        jump.by,
        super::mixer::MAX_HOLE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callrecsink::files::RecordingFiles;

    fn recording(name: &str, numbers: &[u32]) -> (Recording, PathBuf) {
        recording_of(name, numbers, false)
    }

    /// `separate`: one file per track, `call-<n>.wav`.
    fn recording_of(name: &str, numbers: &[u32], separate: bool) -> (Recording, PathBuf) {
        gst::init().unwrap();
        let dir = std::env::temp_dir().join(format!("callrec-rec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let location = dir.join(if separate { "call-%u.wav" } else { "call.wav" });
        let locations = super::super::files::locations(&location, separate, numbers);
        let spec = super::super::files::FileSpec {
            metadata: Default::default(),
            container: super::super::files::Container::Wav,
            mode: 0o600,
            header_interval: gst::ClockTime::SECOND,
            recipients: None,
        };
        let channels = if separate { 1 } else { numbers.len() };
        let files =
            RecordingFiles::create(&locations, &spec, channels as u16, FALLBACK_RATE, false)
                .unwrap();
        let writer = FileWriter::spawn(
            files,
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let tracks = numbers
            .iter()
            .map(|&n| TrackId {
                number: n,
                pad: format!("sink_{n}"),
            })
            .collect();
        let setup = Setup {
            output: Output::Interleaved,
            separate,
            min_duration: gst::ClockTime::ZERO,
            pause_mode: PauseMode::Silence,
            max_duration: gst::ClockTime::ZERO,
        };
        (Recording::new(writer, tracks, setup), location)
    }

    fn buffer(value: i16, samples: usize) -> gst::Buffer {
        let data: Vec<u8> = std::iter::repeat_n(value.to_le_bytes(), samples)
            .flatten()
            .collect();
        gst::Buffer::from_mut_slice(data)
    }

    /// Separate files at their own rates share the start and the end: a
    /// track that starts late gets leading silence at its own rate, one
    /// that ends early is padded, each file's length is the recording's.
    #[test]
    fn separate_lanes_share_start_and_end_at_their_own_rates() {
        let (mut rec, pattern) = recording_of("lanes", &[0, 1], true);
        rec.fix_rates(&[8000, 16000]);
        let ms = gst::ClockTime::from_mseconds;
        // Track 0: 8 kHz from 0 to 100 ms; track 1: 16 kHz from 50 to 75 ms.
        assert!(rec.record(0, Some(ms(0)), &buffer(3, 800)).is_ok());
        assert!(rec.record(1, Some(ms(50)), &buffer(-5, 400)).is_ok());
        assert!(rec.track_eos(0).is_none());
        let report = rec.track_eos(1).expect("both tracks ended").complete();
        assert!(matches!(
            report.outcome,
            Outcome::Finalized { frames: 800, .. }
        ));
        let read = |n: u32| {
            let path = super::super::files::track_location(&pattern, n);
            let mut reader = hound::WavReader::open(path).unwrap();
            let rate = reader.spec().sample_rate;
            let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
            (rate, samples)
        };
        let (rate0, s0) = read(0);
        assert_eq!((rate0, s0.len()), (8000, 800));
        assert!(s0.iter().all(|&s| s == 3));
        let (rate1, s1) = read(1);
        assert_eq!((rate1, s1.len()), (16000, 1600), "100 ms at 16 kHz");
        assert!(
            s1[..800].iter().all(|&s| s == 0),
            "50 ms of leading silence"
        );
        assert!(s1[800..1200].iter().all(|&s| s == -5));
        assert!(s1[1200..].iter().all(|&s| s == 0), "padded to the end");
    }

    #[test]
    fn channels_follow_pad_numbers_whatever_the_request_order() {
        let (mut rec, location) = recording("order", &[5, 0, 2]);
        assert_eq!(rec.channel_of(0), Some(0));
        assert_eq!(rec.channel_of(2), Some(1));
        assert_eq!(rec.channel_of(5), Some(2));
        assert_eq!(rec.channel_of(1), None);
        rec.fix_rates(&[8000; 4]);
        for (n, v) in [(5u32, 3i16), (0, 1), (2, 2)] {
            let c = rec.channel_of(n).unwrap();
            rec.record(c, Some(gst::ClockTime::ZERO), &buffer(v, 80))
                .unwrap_or_else(|_| panic!("refused"));
        }
        for n in [5, 0] {
            assert!(rec.track_eos(n).is_none());
        }
        let report = rec.track_eos(2).unwrap().complete();
        assert!(matches!(report.outcome, Outcome::Finalized { .. }));
        let pads: Vec<&str> = report.tracks.iter().map(|(t, _)| t.pad.as_str()).collect();
        assert_eq!(pads, ["sink_0", "sink_2", "sink_5"]);
        let mut reader = hound::WavReader::open(&location).unwrap();
        let first: Vec<i16> = reader
            .samples::<i16>()
            .take(3)
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(first, [1, 2, 3]);
    }

    #[test]
    fn a_jumping_track_fails_the_recording_and_keeps_what_was_written() {
        let (mut rec, location) = recording("jump", &[0, 1]);
        rec.fix_rates(&[8000; 4]);
        rec.record(0, Some(gst::ClockTime::ZERO), &buffer(1, 160))
            .ok();
        rec.record(1, Some(gst::ClockTime::ZERO), &buffer(2, 160))
            .ok();
        let ten_hours = gst::ClockTime::from_seconds(36_000);
        let Err(Refusal::Ended(finishing)) = rec.record(1, Some(ten_hours), &buffer(2, 160)) else {
            panic!("a 10 h jump was accepted");
        };
        let report = finishing.complete();
        let Outcome::Failed(reason) = report.outcome else {
            panic!("not a failure");
        };
        assert!(
            reason.contains("sink_1") && reason.contains("jumped"),
            "{reason}"
        );
        assert!(rec.is_done());
        assert!(!location.exists());
        // What was recorded stays under the partial name, and plays.
        let part = crate::callrecsink::files::safe_fs::part_path(&location);
        let reader = hound::WavReader::open(&part).unwrap();
        assert_eq!(reader.duration(), 160);
    }
}
