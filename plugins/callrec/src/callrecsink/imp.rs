//! `callrecsink`: a sink bin with one request pad per track.
//!
//! Each track runs `stallfiller ! [mulawdec|alawdec] ! audioconvert !
//! audioresample ! capsfilter(S16LE mono, recording rate) ! appsink`; the
//! appsinks' streaming threads feed one `Recording` (mixer + WAV file(s)).
//!
//! Finalization has one entry point, `Recording::finalize`, reached from the
//! last track's EOS, from PAUSED->READY without EOS (bounded by
//! `finalize-timeout`), and never twice. Its outcome is always a bus message:
//! `callrecsink-finalized`, or `callrecsink-failed` with an ERROR/WARNING.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::files::{FileError, RecordingFiles};
use super::mixer::{Mixer, PauseMode, TrackStats};
use super::writer::FileWriter;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "callrecsink",
        gst::DebugColorFlags::empty(),
        Some("Call recording sink"),
    )
});

const DEFAULT_START_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);
const DEFAULT_FINALIZE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(2);
const DEFAULT_HEADER_INTERVAL: gst::ClockTime = gst::ClockTime::SECOND;
const DEFAULT_MIN_DURATION: gst::ClockTime = gst::ClockTime::ZERO;
const DEFAULT_FILE_MODE: u32 = 0o640;
/// How long the first audio waits for the other tracks' caps before the
/// recording rate is fixed without them.
const CAPS_WAIT: Duration = Duration::from_millis(500);
/// The rate figures are given in while no input has fixed the real one.
const FALLBACK_RATE: u32 = 8000;

/// `mode` as GStreamer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCallRecMode")]
pub enum CallRecMode {
    #[default]
    #[enum_value(
        name = "Interleaved: one file, one channel per track in pad order",
        nick = "interleaved"
    )]
    Interleaved,
    #[enum_value(
        name = "Separate: one mono file per track; location holds %u for the track number",
        nick = "separate"
    )]
    Separate,
}

/// `pause-mode` as GStreamer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCallRecPauseMode")]
pub enum CallRecPauseMode {
    #[default]
    #[enum_value(
        name = "Silence: the timeline goes on, paused time is written as silence",
        nick = "silence"
    )]
    Silence,
    #[enum_value(name = "Skip: paused time is cut out of the file", nick = "skip")]
    Skip,
}

impl From<CallRecPauseMode> for PauseMode {
    fn from(mode: CallRecPauseMode) -> Self {
        match mode {
            CallRecPauseMode::Silence => PauseMode::Silence,
            CallRecPauseMode::Skip => PauseMode::Skip,
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    location: Option<PathBuf>,
    rate: u32,
    start_timeout: gst::ClockTime,
    finalize_timeout: gst::ClockTime,
    header_interval: gst::ClockTime,
    min_duration: gst::ClockTime,
    file_mode: u32,
    pause_mode: CallRecPauseMode,
    mode: CallRecMode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            rate: 0,
            start_timeout: DEFAULT_START_TIMEOUT,
            finalize_timeout: DEFAULT_FINALIZE_TIMEOUT,
            header_interval: DEFAULT_HEADER_INTERVAL,
            min_duration: DEFAULT_MIN_DURATION,
            file_mode: DEFAULT_FILE_MODE,
            pause_mode: CallRecPauseMode::Silence,
            mode: CallRecMode::Interleaved,
        }
    }
}

/// The elements of one track inside the bin.
struct Track {
    ghost: gst::GhostPad,
    elements: Vec<gst::Element>,
    filler: gst::Element,
    convert: gst::Element,
    capsfilter: gst::Element,
    /// The track's input rate, once its caps are known.
    input_rate: Option<u32>,
    decoder: Option<gst::Element>,
}

/// How a recording ended, with the figures for the bus.
struct Report {
    outcome: Outcome,
    tracks: Vec<TrackStats>,
    rate: u32,
}

/// Why a track's buffer was not recorded.
enum Refusal {
    Flow(gst::FlowError),
    NoTimestamps,
    WriteFailed(Report),
}

enum Outcome {
    Finalized { files: Vec<PathBuf>, frames: u64 },
    NoAudio,
    TooShort { frames: u64 },
    Failed(String),
}

/// One recording, from READY->PAUSED to its finalization.
struct Recording {
    files: Option<FileWriter>,
    mixer: Option<Mixer>,
    rate: Option<u32>,
    channels: usize,
    header_interval: Duration,
    last_header: Instant,
    min_duration: gst::ClockTime,
    /// Reused per buffer: the track's samples, and the interleaved output.
    samples: Vec<i16>,
    scratch: Vec<u8>,
    /// Pauses (true) and resumes (false) asked for before the mixer exists.
    pending_pauses: Vec<(bool, gst::ClockTime)>,
    pause_mode: PauseMode,
    /// Set once the outcome is decided; nothing is written after it.
    done: bool,
    /// Set when finalization was abandoned: a late finish must not publish.
    abandoned: Arc<AtomicBool>,
    /// What each track's converter input looks like, for the direct path.
    taps: Vec<Tap>,
}

/// A track's audio as it reaches `audioconvert`: when it is already the
/// file's format (S16LE mono at the recording rate), buffers skip
/// audioconvert ! audioresample ! capsfilter ! appsink and are recorded
/// straight from the pad, which is most of a track's per-buffer cost.
#[derive(Default)]
struct Tap {
    /// The rate, when the caps are S16LE mono interleaved.
    s16_mono_rate: Option<u32>,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
}

impl Recording {
    fn rate(&self) -> u32 {
        self.rate.unwrap_or(FALLBACK_RATE)
    }

    /// Real audio reached a track: the rate is fixed by the first input buffer.
    fn audio_arrived(&self) -> bool {
        self.rate.is_some()
    }

    /// Feeds S16LE samples of one track and writes whatever all tracks agree on.
    fn push(
        &mut self,
        track: usize,
        running_time: gst::ClockTime,
        s16le: &[u8],
        silence: bool,
    ) -> Result<(), FileError> {
        if self.done {
            return Ok(());
        }
        let Some(mixer) = self.mixer.as_mut() else {
            return Ok(());
        };
        let files = self
            .files
            .as_mut()
            .expect("files live as long as the recording is not done");
        // One track continuing exactly: its bytes are already the file's.
        if mixer.pass_through(running_time, s16le.len() as u64 / 2, silence) {
            files.write(s16le)?;
        } else {
            self.samples.clear();
            self.samples.extend(
                s16le
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]])),
            );
            mixer.push(track, running_time, &self.samples, silence);
            self.scratch.clear();
            mixer.drain_ready(&mut self.scratch);
            files.write(&self.scratch)?;
        }
        if self.last_header.elapsed() >= self.header_interval {
            files.update_header()?;
            self.last_header = Instant::now();
        }
        Ok(())
    }

    /// Places one buffer of a track; on a write failure the recording ends
    /// here, keeping what is on disk under the partial name.
    fn record(
        &mut self,
        index: usize,
        running_time: Option<gst::ClockTime>,
        buffer: &gst::BufferRef,
    ) -> Result<gst::FlowSuccess, Refusal> {
        let running_time = running_time.ok_or(Refusal::NoTimestamps)?;
        let map = buffer
            .map_readable()
            .map_err(|_| Refusal::Flow(gst::FlowError::Error))?;
        let silence = buffer.flags().contains(gst::BufferFlags::GAP);
        if self.done {
            return Err(Refusal::Flow(gst::FlowError::Eos));
        }
        if let Err(err) = self.push(index, running_time, &map, silence) {
            // The writer has already made what it wrote playable; dropping
            // it keeps the `.part`.
            self.files = None;
            self.done = true;
            return Err(Refusal::WriteFailed(
                self.report(Outcome::Failed(err.to_string())),
            ));
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn report(&self, outcome: Outcome) -> Report {
        let tracks = self
            .mixer
            .as_ref()
            .map(|m| (0..m.channels()).map(|i| m.stats(i)).collect())
            .unwrap_or_default();
        Report {
            outcome,
            tracks,
            rate: self.rate(),
        }
    }

    /// Decides the outcome: publish, or discard and say why. Runs once.
    fn finalize(&mut self) -> Option<Report> {
        if self.done {
            return None;
        }
        self.done = true;
        let outcome = self.finish_file();
        Some(self.report(outcome))
    }

    fn finish_file(&mut self) -> Outcome {
        let Some(mut files) = self.files.take() else {
            return Outcome::Failed("the recording file was never opened".into());
        };
        let has_audio = self.mixer.as_ref().is_some_and(|m| m.has_audio());
        if !has_audio {
            files.discard();
            return Outcome::NoAudio;
        }
        let mixer = self.mixer.as_mut().unwrap();
        self.scratch.clear();
        mixer.drain_all(&mut self.scratch);
        if let Err(err) = files.write(&self.scratch) {
            return Outcome::Failed(err.to_string());
        }
        let frames = files.frames();
        if callaudio::samples_to_time(frames, self.rate()) < self.min_duration {
            files.discard();
            return Outcome::TooShort { frames };
        }
        if self.abandoned.load(Ordering::SeqCst) {
            return Outcome::Failed("finalization was abandoned after its timeout".into());
        }
        match files.finish() {
            Ok(files) => Outcome::Finalized { files, frames },
            Err(err) => Outcome::Failed(err.to_string()),
        }
    }
}

#[derive(Default)]
struct State {
    tracks: Vec<Track>,
    start_timer: Option<gst::SingleShotClockId>,
}

pub struct CallRecSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Signalled with `state` when a track learns its input caps.
    caps_known: Condvar,
    recording: Arc<Mutex<Option<Recording>>>,
}

impl CallRecSink {
    fn settings(&self) -> Settings {
        self.settings.lock().unwrap().clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn recording(&self) -> MutexGuard<'_, Option<Recording>> {
        self.recording.lock().unwrap()
    }

    fn make(factory: &str) -> Result<gst::Element, glib::BoolError> {
        gst::ElementFactory::make(factory).build()
    }

    fn add_track(&self, name: Option<&str>) -> Option<gst::Pad> {
        let mut state = self.state();
        let index = state.tracks.len();
        let name = name
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sink_{index}"));
        let build = || -> Result<Track, glib::BoolError> {
            let filler = Self::make("stallfiller")?;
            let convert = Self::make("audioconvert")?;
            let resample = Self::make("audioresample")?;
            let capsfilter = Self::make("capsfilter")?;
            capsfilter.set_property("caps", track_caps(None));
            let sink = gst_app::AppSink::builder()
                .sync(false)
                .async_(false)
                .max_buffers(0)
                .build();
            let elements: Vec<gst::Element> = vec![
                filler.clone(),
                convert.clone(),
                resample,
                capsfilter.clone(),
                sink.clone().upcast(),
            ];
            let obj = self.obj();
            obj.add_many(&elements)?;
            gst::Element::link_many(&elements)?;
            self.install_callbacks(&sink, index);
            self.tap_track(&convert.static_pad("sink").unwrap(), index);
            let target = filler.static_pad("sink").unwrap();
            let ghost = gst::GhostPad::builder_with_target(&target)?
                .name(name.as_str())
                .query_function(track_pad_query)
                .build();
            self.watch_input(&target, index);
            for e in &elements {
                e.sync_state_with_parent()?;
            }
            Ok(Track {
                ghost,
                elements,
                filler,
                convert,
                capsfilter,
                input_rate: None,
                decoder: None,
            })
        };
        match build() {
            Ok(track) => {
                let ghost = track.ghost.clone();
                state.tracks.push(track);
                drop(state);
                ghost.set_active(true).ok()?;
                self.obj().add_pad(&ghost).ok()?;
                Some(ghost.upcast())
            }
            Err(err) => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::MissingPlugin,
                    ("Could not build track {}", index),
                    ["{err}: callrecsink needs stallfiller, audioconvert and audioresample"]
                );
                None
            }
        }
    }

    /// Learns each track's input rate and format from its caps, inserts a
    /// G.711 decoder where needed, and fixes the recording rate at the first
    /// buffer of any track.
    fn watch_input(&self, pad: &gst::Pad, index: usize) {
        let weak = self.obj().downgrade();
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view())
                && let Some(obj) = weak.upgrade()
            {
                obj.imp().on_track_caps(index, c.caps());
            }
            gst::PadProbeReturn::Ok
        });
        let weak = self.obj().downgrade();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().fix_rate();
            }
            gst::PadProbeReturn::Remove
        });
    }

    fn on_track_caps(&self, index: usize, caps: &gst::CapsRef) {
        let Ok(layout) = callaudio::Layout::from_caps(caps) else {
            return;
        };
        let mut state = self.state();
        let Some(track) = state.tracks.get_mut(index) else {
            return;
        };
        track.input_rate = Some(layout.rate);
        self.caps_known.notify_all();
        let decoder = match layout.encoding {
            callaudio::Encoding::Mulaw => Some("mulawdec"),
            callaudio::Encoding::Alaw => Some("alawdec"),
            callaudio::Encoding::Raw(_) => None,
        };
        if let Some(factory) = decoder
            && track.decoder.is_none()
        {
            // Before the CAPS event leaves stallfiller: splice the decoder in.
            match Self::make(factory) {
                Ok(dec) => {
                    let _ = self.obj().add(&dec);
                    track.filler.unlink(&track.convert);
                    let _ = gst::Element::link_many([&track.filler, &dec, &track.convert]);
                    let _ = dec.sync_state_with_parent();
                    track.decoder = Some(dec);
                }
                Err(err) => gst::element_imp_error!(
                    self,
                    gst::CoreError::MissingPlugin,
                    ("No {} decoder for track {}", factory, index),
                    ["{err}; install gstreamer1.0-plugins-good"]
                ),
            }
        }
    }

    /// The recording rate: the `rate` property, or the highest input rate.
    /// Fixed at the first buffer of any track, which waits (at most
    /// `CAPS_WAIT`) for every track to announce its caps.
    fn fix_rate(&self) {
        let mut recording = self.recording();
        let Some(rec) = recording.as_mut() else {
            return;
        };
        if rec.rate.is_some() {
            return;
        }
        let (mut state, _) = self
            .caps_known
            .wait_timeout_while(self.state(), CAPS_WAIT, |s| {
                s.tracks.iter().any(|t| t.input_rate.is_none())
            })
            .unwrap();
        let state = &mut *state;
        let configured = self.settings().rate;
        let rate = if configured > 0 {
            configured
        } else {
            state
                .tracks
                .iter()
                .filter_map(|t| t.input_rate)
                .max()
                .unwrap_or(FALLBACK_RATE)
        };
        gst::info!(
            CAT,
            imp = self,
            "recording {} track(s) at {rate} Hz",
            rec.channels
        );
        rec.rate = Some(rate);
        let mut mixer = Mixer::new(rate, rec.channels);
        mixer.set_pause_mode(rec.pause_mode);
        for (pause, at) in rec.pending_pauses.drain(..) {
            if pause {
                mixer.pause(at)
            } else {
                mixer.resume(at)
            }
        }
        rec.mixer = Some(mixer);
        if let Some(files) = rec.files.as_mut() {
            files.set_rate(rate);
        }
        for track in &state.tracks {
            track
                .capsfilter
                .set_property("caps", track_caps(Some(rate)));
        }
    }

    fn install_callbacks(&self, sink: &gst_app::AppSink, index: usize) {
        let weak = self.obj().downgrade();
        let weak_eos = weak.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let obj = weak.upgrade().ok_or(gst::FlowError::Flushing)?;
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                    obj.imp().on_sample(index, &sample)
                })
                .eos(move |_| {
                    if let Some(obj) = weak_eos.upgrade() {
                        obj.imp().on_eos(index);
                    }
                })
                .build(),
        );
    }

    fn on_sample(
        &self,
        index: usize,
        sample: &gst::Sample,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        self.record(self.recording(), index, segment.as_ref(), buffer)
    }

    /// Watches what reaches the track's `audioconvert` and records buffers
    /// that need no conversion right there (see `Tap`).
    fn tap_track(&self, pad: &gst::Pad, index: usize) {
        let weak = self.obj().downgrade();
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            let Some(obj) = weak.upgrade() else {
                return gst::PadProbeReturn::Ok;
            };
            let imp = obj.imp();
            match info.event().map(|e| e.view()) {
                Some(gst::EventView::Caps(c)) => {
                    let rate = gst_audio::AudioInfo::from_caps(c.caps())
                        .ok()
                        .filter(|i| {
                            i.format() == gst_audio::AudioFormat::S16le
                                && i.channels() == 1
                                && i.layout() == gst_audio::AudioLayout::Interleaved
                        })
                        .map(|i| i.rate());
                    if let Some(tap) = imp.recording().as_mut().and_then(|r| r.taps.get_mut(index))
                    {
                        tap.s16_mono_rate = rate;
                    }
                }
                Some(gst::EventView::Segment(e)) => {
                    let segment = e.segment().downcast_ref::<gst::ClockTime>().cloned();
                    if let Some(tap) = imp.recording().as_mut().and_then(|r| r.taps.get_mut(index))
                    {
                        tap.segment = segment;
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        });
        // The per-buffer path holds the recording itself and upgrades the
        // element only to post a failure: GLib weak references share one
        // process-wide lock, which thousands of tracks would contend on.
        let recording = self.recording.clone();
        let weak = self.obj().downgrade();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_ref() else {
                return gst::PadProbeReturn::Ok;
            };
            let mut guard = recording.lock().unwrap();
            let Some(rec) = guard.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(tap) = rec.taps.get(index) else {
                return gst::PadProbeReturn::Ok;
            };
            if tap.s16_mono_rate.is_none() || tap.s16_mono_rate != rec.rate {
                return gst::PadProbeReturn::Ok;
            }
            let running_time = running_time(tap.segment.as_ref(), buffer);
            let result = rec.record(index, running_time, buffer);
            drop(guard);
            info.flow_res = result.map_err(|refusal| match weak.upgrade() {
                Some(obj) => obj.imp().refused(index, refusal),
                None => gst::FlowError::Flushing,
            });
            gst::PadProbeReturn::Handled
        });
    }

    /// Records one buffer of S16LE mono at the recording rate for `index`,
    /// posting whatever went wrong once the recording is unlocked.
    fn record(
        &self,
        mut recording: MutexGuard<'_, Option<Recording>>,
        index: usize,
        segment: Option<&gst::FormattedSegment<gst::ClockTime>>,
        buffer: &gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let result = match recording.as_mut() {
            Some(rec) => rec.record(index, running_time(segment, buffer), buffer),
            None => Err(Refusal::Flow(gst::FlowError::Flushing)),
        };
        drop(recording);
        result.map_err(|refusal| self.refused(index, refusal))
    }

    /// Posts why a buffer was refused; returns what upstream gets.
    fn refused(&self, index: usize, refusal: Refusal) -> gst::FlowError {
        match refusal {
            Refusal::Flow(err) => err,
            Refusal::NoTimestamps => {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("Track {} has audio without timestamps", index)
                );
                gst::FlowError::Error
            }
            Refusal::WriteFailed(report) => {
                self.post(report);
                gst::FlowError::Error
            }
        }
    }

    fn on_eos(&self, index: usize) {
        let report = {
            let mut recording = self.recording();
            let Some(rec) = recording.as_mut() else {
                return;
            };
            let (rate, channels) = (rec.rate(), rec.channels);
            // A track may end before any track sent a buffer.
            let mixer = rec.mixer.get_or_insert_with(|| Mixer::new(rate, channels));
            mixer.set_eos(index);
            if !mixer.all_eos() {
                return;
            }
            rec.finalize()
        };
        if let Some(report) = report {
            self.post(report);
        }
    }

    /// Posts the outcome of a recording: the only place that does. Takes no
    /// lock, so it may run while a stuck finalization holds the recording.
    fn post(&self, report: Report) {
        let obj = self.obj();
        let stats: Vec<gst::Structure> = report
            .tracks
            .iter()
            .map(|s| {
                gst::Structure::builder("track")
                    .field("received-samples", s.received)
                    .field("silence-samples", s.silence)
                    .field("dropped-samples", s.dropped)
                    .build()
            })
            .collect();
        match report.outcome {
            Outcome::Finalized { files, frames } => {
                let duration = callaudio::samples_to_time(frames, report.rate);
                gst::info!(
                    CAT,
                    imp = self,
                    "recording finalized: {duration} in {} track(s)",
                    stats.len()
                );
                let s = gst::Structure::builder("callrecsink-finalized")
                    .field("location", files[0].to_string_lossy().as_ref())
                    .field(
                        "files",
                        gst::Array::new(files.iter().map(|f| f.to_string_lossy().into_owned())),
                    )
                    .field("duration", duration)
                    .field("frames", frames)
                    .field("rate", report.rate)
                    .field("tracks", gst::Array::new(stats))
                    .build();
                let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
            }
            Outcome::NoAudio => {
                self.post_failed("no-audio", stats);
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("The recording got no audio; no file was saved"),
                    ["every track was silent or empty, so the partial file was removed"]
                );
            }
            Outcome::TooShort { frames } => {
                self.post_failed("too-short", stats);
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("The recording was shorter than min-duration; no file was saved"),
                    ["{frames} frames recorded"]
                );
            }
            Outcome::Failed(reason) => {
                self.post_failed(&reason, stats);
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("Could not finish the recording: {}", reason),
                    ["what was written stays in the .part file"]
                );
            }
        }
    }

    fn post_failed(&self, reason: &str, tracks: Vec<gst::Structure>) {
        let obj = self.obj();
        let s = gst::Structure::builder("callrecsink-failed")
            .field("reason", reason)
            .field("tracks", gst::Array::new(tracks))
            .build();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// READY->PAUSED: the file is opened now, so an unwritable location fails
    /// the state change and leaves no file.
    fn open(&self) -> Result<(), gst::StateChangeError> {
        let settings = self.settings();
        let Some(location) = settings.location.clone() else {
            gst::element_imp_error!(
                self,
                gst::ResourceError::NotFound,
                ("No location set for the recording")
            );
            return Err(gst::StateChangeError);
        };
        let channels = self.state().tracks.len();
        if channels == 0 {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("callrecsink has no tracks"),
                ["request at least one sink_%u pad before starting"]
            );
            return Err(gst::StateChangeError);
        }
        let separate = settings.mode == CallRecMode::Separate;
        if separate && !location.to_string_lossy().contains("%u") {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Settings,
                ("mode=separate needs %u in location for the track number"),
                ["location is {}", location.display()]
            );
            return Err(gst::StateChangeError);
        }
        let disk_timeout = Duration::from_nanos(settings.finalize_timeout.nseconds());
        let files = RecordingFiles::create(
            &location,
            separate,
            channels,
            settings.file_mode,
            FALLBACK_RATE,
        )
        .and_then(|files| FileWriter::spawn(files, 2 * channels as u64, disk_timeout))
        .map_err(|err| {
            gst::element_imp_error!(
                self,
                gst::ResourceError::OpenWrite,
                (
                    "Could not open {} for writing: {}",
                    err.path.display(),
                    err.err
                ),
                ["{err:?}"]
            );
            gst::StateChangeError
        })?;
        *self.recording() = Some(Recording {
            files: Some(files),
            mixer: None,
            rate: None,
            channels,
            header_interval: Duration::from_nanos(settings.header_interval.nseconds()),
            last_header: Instant::now(),
            min_duration: settings.min_duration,
            scratch: Vec::new(),
            samples: Vec::new(),
            pending_pauses: Vec::new(),
            pause_mode: settings.pause_mode.into(),
            done: false,
            abandoned: Arc::new(AtomicBool::new(false)),
            taps: (0..channels).map(|_| Tap::default()).collect(),
        });
        Ok(())
    }

    /// Pauses (`pause` true) or resumes every track at `running_time`
    /// (`None`: now). The action signals end here.
    fn set_paused(&self, pause: bool, running_time: Option<gst::ClockTime>) -> bool {
        let Some(at) = running_time.or_else(|| self.obj().current_running_time()) else {
            gst::warning!(
                CAT,
                imp = self,
                "pause/resume needs a running time: not PLAYING yet"
            );
            return false;
        };
        let mut recording = self.recording();
        let Some(rec) = recording.as_mut().filter(|r| !r.done) else {
            return false;
        };
        gst::info!(
            CAT,
            imp = self,
            "{} at running time {at}",
            if pause { "pause" } else { "resume" }
        );
        match rec.mixer.as_mut() {
            Some(m) if pause => m.pause(at),
            Some(m) => m.resume(at),
            None => rec.pending_pauses.push((pause, at)),
        }
        true
    }

    fn arm_start_timeout(&self) {
        let timeout = self.settings().start_timeout;
        if timeout.is_zero() {
            return;
        }
        let clock = gst::SystemClock::obtain();
        let id = clock.new_single_shot_id(clock.time() + timeout);
        let weak = self.obj().downgrade();
        let armed = id.wait_async(move |_, _, _| {
            let Some(obj) = weak.upgrade() else { return };
            let imp = obj.imp();
            let silent = imp
                .recording()
                .as_ref()
                .is_some_and(|r| !r.audio_arrived() && !r.done);
            if silent {
                imp.post_failed("no-audio", Vec::new());
                gst::element_error!(
                    obj,
                    gst::ResourceError::Read,
                    ("No audio arrived within start-timeout ({})", timeout),
                    ["no buffer reached any track after PLAYING; nothing is saved"]
                );
            }
        });
        if armed.is_ok() {
            self.state().start_timer = Some(id);
        }
    }

    /// Finalizes a recording stopped without EOS, waiting at most
    /// `finalize-timeout` for the disk. Returns false if it had to give up
    /// (the recording is then still held by the stuck worker).
    fn finalize_on_stop(&self) -> bool {
        let Some(abandoned) = self
            .recording()
            .as_ref()
            .filter(|r| !r.done)
            .map(|r| r.abandoned.clone())
        else {
            return true;
        };
        let timeout = Duration::from_nanos(self.settings().finalize_timeout.nseconds());
        let recording = self.recording.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("callrec-finalize".into())
            .spawn(move || {
                let report = recording
                    .lock()
                    .unwrap()
                    .as_mut()
                    .and_then(|r| r.finalize());
                let _ = tx.send(report);
            });
        let failed = |reason: String| Report {
            outcome: Outcome::Failed(reason),
            tracks: Vec::new(),
            rate: FALLBACK_RATE,
        };
        if spawned.is_err() {
            self.post(failed("could not start the finalization thread".into()));
            return true;
        }
        match rx.recv_timeout(timeout) {
            Ok(Some(report)) => self.post(report),
            Ok(None) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                abandoned.store(true, Ordering::SeqCst);
                self.post(failed(format!(
                    "finalization did not complete within finalize-timeout ({timeout:?})"
                )));
                return false;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                self.post(failed("the finalization thread died".into()));
            }
        }
        true
    }
}

/// A track accepts any audio the chain can decode, whatever the chain is
/// linked to right now: the G.711 decoder is only spliced in once the caps
/// arrive, so asking the chain itself would refuse mu-law and A-law.
fn track_pad_query(
    pad: &gst::GhostPad,
    parent: Option<&gst::Object>,
    query: &mut gst::QueryRef,
) -> bool {
    match query.view_mut() {
        gst::QueryViewMut::Caps(q) => {
            let templ = pad.pad_template_caps();
            let caps = match q.filter() {
                Some(filter) => filter.intersect_with_mode(&templ, gst::CapsIntersectMode::First),
                None => templ,
            };
            q.set_result(&caps);
            true
        }
        gst::QueryViewMut::AcceptCaps(q) => {
            let ok = callaudio::Layout::from_caps(q.caps()).is_ok();
            q.set_result(ok);
            true
        }
        _ => gst::Pad::query_default(pad, parent, query),
    }
}

/// The running time of `buffer`'s first sample, if it has one.
fn running_time(
    segment: Option<&gst::FormattedSegment<gst::ClockTime>>,
    buffer: &gst::BufferRef,
) -> Option<gst::ClockTime> {
    segment?.to_running_time(buffer.pts()?)
}

/// What each track is converted to before the mixer: mono S16LE at the
/// recording's rate (any rate until it is fixed).
fn track_caps(rate: Option<u32>) -> gst::Caps {
    let builder = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .channels(1);
    match rate {
        Some(rate) => builder.rate(rate as i32).build(),
        None => builder.build(),
    }
}

#[glib::object_subclass]
impl ObjectSubclass for CallRecSink {
    const NAME: &'static str = "GstCallRecSink";
    type Type = super::CallRecSink;
    type ParentType = gst::Bin;

    fn new() -> Self {
        CallRecSink {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            caps_known: Condvar::new(),
            recording: Arc::new(Mutex::new(None)),
        }
    }
}

impl ObjectImpl for CallRecSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("The WAV file; written as <location>.part and renamed only when complete")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("rate")
                    .nick("Rate")
                    .blurb("Sample rate of the file; 0 = the highest input rate")
                    .maximum(384_000)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("start-timeout")
                    .nick("Start timeout")
                    .blurb("ERROR if no audio reaches any track this long (ns) after PLAYING; 0 = wait forever")
                    .default_value(DEFAULT_START_TIMEOUT.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("finalize-timeout")
                    .nick("Finalize timeout")
                    .blurb("Longest time (ns) anything waits for the disk: finishing the file (on EOS or a stop without EOS), or audio waiting for a disk that takes nothing; then the recording fails")
                    .minimum(gst::ClockTime::MSECOND.nseconds())
                    .default_value(DEFAULT_FINALIZE_TIMEOUT.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("header-interval")
                    .nick("Header interval")
                    .blurb("How often (ns) the .part header is rewritten, bounding what a crash loses")
                    .default_value(DEFAULT_HEADER_INTERVAL.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("min-duration")
                    .nick("Minimum duration")
                    .blurb("Recordings shorter than this (ns) are discarded with a WARNING")
                    .default_value(DEFAULT_MIN_DURATION.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", CallRecMode::Interleaved)
                    .nick("Mode")
                    .blurb("One interleaved file, or one mono file per track (location then holds %u)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("pause-mode", CallRecPauseMode::Silence)
                    .nick("Pause mode")
                    .blurb("What the pause/resume action signals do to the file: write silence or cut")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("file-mode")
                    .nick("File mode")
                    .blurb("Permissions of the recording file (recordings are personal data)")
                    .maximum(0o777)
                    .default_value(DEFAULT_FILE_MODE)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let ns = |v: &glib::Value| gst::ClockTime::from_nseconds(v.get::<u64>().unwrap());
        match pspec.name() {
            "location" => s.location = value.get::<Option<String>>().unwrap().map(PathBuf::from),
            "rate" => s.rate = value.get().unwrap(),
            "start-timeout" => s.start_timeout = ns(value),
            "finalize-timeout" => s.finalize_timeout = ns(value),
            "header-interval" => s.header_interval = ns(value),
            "min-duration" => s.min_duration = ns(value),
            "file-mode" => s.file_mode = value.get().unwrap(),
            "pause-mode" => s.pause_mode = value.get().unwrap(),
            "mode" => s.mode = value.get().unwrap(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            "location" => s
                .location
                .map(|l| l.to_string_lossy().into_owned())
                .to_value(),
            "rate" => s.rate.to_value(),
            "start-timeout" => s.start_timeout.nseconds().to_value(),
            "finalize-timeout" => s.finalize_timeout.nseconds().to_value(),
            "header-interval" => s.header_interval.nseconds().to_value(),
            "min-duration" => s.min_duration.nseconds().to_value(),
            "file-mode" => s.file_mode.to_value(),
            "pause-mode" => s.pause_mode.to_value(),
            "mode" => s.mode.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            // pause(running-time) / resume(running-time): every track at the
            // same running time, cut at the exact sample. GST_CLOCK_TIME_NONE
            // (u64::MAX) means now. Returns false when there is no recording.
            ["pause", "resume"]
                .into_iter()
                .map(|name| {
                    glib::subclass::Signal::builder(name)
                        .param_types([u64::static_type()])
                        .return_type::<bool>()
                        .action()
                        .class_handler(move |args| {
                            let obj = args[0].get::<super::CallRecSink>().unwrap();
                            let at = args[1].get::<u64>().unwrap();
                            let at = (at != u64::MAX).then(|| gst::ClockTime::from_nseconds(at));
                            Some(obj.imp().set_paused(name == "pause", at).to_value())
                        })
                        .build()
                })
                .collect()
        });
        SIGNALS.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SINK);
    }
}

impl GstObjectImpl for CallRecSink {}

impl ElementImpl for CallRecSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Call recording sink",
                "Sink/Audio",
                "Records the tracks of a call (one request pad each) on one timeline into a WAV file that \
                 is published only when complete; always finalizes, fails closed",
                "Call audio plugins",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder_full()
                .structure(gst::Structure::builder("audio/x-raw").build())
                .structure(gst::Structure::builder("audio/x-mulaw").build())
                .structure(gst::Structure::builder("audio/x-alaw").build())
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink_%u",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        _templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        if self.recording().is_some() {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Pad,
                ("Tracks must be requested before the recording starts"),
                ["the file's channel count is fixed at READY->PAUSED"]
            );
            return None;
        }
        self.add_track(name)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let track = {
            let mut state = self.state();
            let Some(i) = state
                .tracks
                .iter()
                .position(|t| t.ghost.upcast_ref::<gst::Pad>() == pad)
            else {
                return;
            };
            state.tracks.remove(i)
        };
        let obj = self.obj();
        let _ = track.ghost.set_active(false);
        let _ = obj.remove_pad(&track.ghost);
        for e in track.elements.iter().chain(track.decoder.as_ref()) {
            let _ = e.set_state(gst::State::Null);
            let _ = obj.remove(e);
        }
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::debug!(CAT, imp = self, "changing state {transition:?}");
        if transition == gst::StateChange::ReadyToPaused {
            self.open()?;
        }
        if transition == gst::StateChange::PlayingToPaused
            && let Some(id) = self.state().start_timer.take()
        {
            id.unschedule();
        }
        let result = self.parent_change_state(transition);
        match transition {
            gst::StateChange::PausedToPlaying => self.arm_start_timeout(),
            gst::StateChange::PausedToReady => {
                if let Some(id) = self.state().start_timer.take() {
                    id.unschedule();
                }
                // Streaming has stopped on every track: finish with what came.
                if self.finalize_on_stop() {
                    *self.recording() = None;
                }
            }
            _ => {}
        }
        if result.is_err()
            && transition == gst::StateChange::ReadyToPaused
            && let Some(mut rec) = self.recording().take()
            && let Some(files) = rec.files.take()
        {
            files.discard();
        }
        result
    }
}

impl BinImpl for CallRecSink {}
