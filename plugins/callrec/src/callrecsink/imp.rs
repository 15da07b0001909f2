// SPDX-License-Identifier: MPL-2.0
//! `callrecsink`: a sink bin with one request pad per track.
//!
//! Each track (`track.rs`) runs `stallfiller ! [decoder] ! [converter] !
//! TrackSink`; every track's buffers enter the one `Recording`
//! (`recording.rs`) through its `TrackSink` (`track_sink.rs`), and nowhere
//! else. The track's pad (`pad.rs`) sees its caps and its first buffer of
//! each recording before stallfiller does, and decides the route there: the
//! decoder on caps; on the first buffer, once the recording's rate is fixed,
//! whether the converter is needed.
//!
//! This file is the element: its pads, signals and state changes. Its
//! properties are in `settings.rs`, the recording's model in
//! `recording.rs` (no GObject), the files in `files/` and their writing in `writing/`,
//! and the bus reports in `report.rs`.
//!
//! Finalization has one entry point, `Recording::finalize`, reached from the
//! last track's EOS, from PAUSED->READY without EOS (bounded by
//! `finalize-timeout`), and never twice. Its outcome is always a bus message
//! (`report.rs`).
//!
//! Lock order: `recording`, then `state`, then `settings`. Nothing waits
//! while holding a lock: `fix_rate` waits on `caps_known`, which releases
//! `state`. A track is routed (elements linked, added) under `state` alone,
//! on the track's own streaming thread. Nothing is pushed or posted with a
//! lock held; reports are posted after `recording` is released.
//!
//! No panic of ours crosses into GStreamer: every callback and pad function runs
//! under `guarded`, which turns a panic into a failed recording with an
//! ERROR, and every lock is taken with `callaudio::sync::lock`, so a lock
//! that a panic poisoned does not take the next caller down with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use std::time::Duration;

use callaudio::sync::{lock, panic_text, wait_timeout_while};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::CAT;
use super::files::metadata::Metadata;
use super::files::{self, RecordingFiles};
use super::finalization;
use super::finalization::Finishing;
use super::pad::{CallRecSinkPad, Level};
use super::plan::{self, Refused};
use super::recording::{FALLBACK_RATE, Recording, Refusal, SharedRecording, TrackId};
use super::report;
use super::settings::{CallRecMode, Settings};
use super::track::{self, PadFunctions, Track};
use super::writing::FileWriter;

/// How long the first audio waits for the other tracks' caps before the
/// recording rate is fixed without them.
const CAPS_WAIT: Duration = Duration::from_millis(500);

#[derive(Default)]
struct State {
    /// By pad number: channel order.
    tracks: BTreeMap<u32, Track>,
    /// The number an unnamed pad request gets, unless taken.
    next_number: u32,
    start_timer: Option<gst::SingleShotClockId>,
}

pub struct CallRecSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Signalled with `state` when a track learns its input caps.
    caps_known: Condvar,
    recording: SharedRecording,
}

impl CallRecSink {
    fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn recording(&self) -> MutexGuard<'_, Option<Recording>> {
        lock(&self.recording)
    }

    fn element(&self) -> gst::Element {
        self.obj().clone().upcast()
    }

    /// Runs `f`; a panic in it fails the recording with an ERROR (keeping
    /// what was written) and gives `fallback`, instead of unwinding into
    /// GStreamer, which would abort the process.
    pub(super) fn guarded<T>(&self, fallback: T, f: impl FnOnce() -> T) -> T {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => v,
            Err(panic) => {
                self.failed_by_panic(&*panic);
                fallback
            }
        }
    }

    /// A panic of ours was caught: the recording fails with an ERROR that
    /// says so, keeping what was written.
    pub(super) fn failed_by_panic(&self, panic: &(dyn std::any::Any + Send)) {
        let text = panic_text(panic);
        gst::error!(CAT, imp = self, "panic: {text}");
        let reason = format!("internal error in callrecsink ({text}); this is a bug");
        let finishing = self
            .recording()
            .as_mut()
            .and_then(|r| r.fail(reason.clone()));
        match finishing {
            Some(finishing) => report::post(&self.element(), finishing.complete()),
            None => gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ("Internal error in callrecsink"),
                ["{reason}"]
            ),
        }
    }

    /// Adds track `name` (or the next free number), refusing a name that is
    /// taken or not `sink_N`.
    fn add_track(&self, name: Option<&str>) -> Option<gst::Pad> {
        let mut state = self.state();
        let number = match name {
            Some(name) => match track::number_of(name) {
                Some(n) if !state.tracks.contains_key(&n) => n,
                Some(_) => {
                    gst::warning!(CAT, imp = self, "pad {name} exists already");
                    return None;
                }
                None => {
                    gst::warning!(CAT, imp = self, "pad name {name} is not sink_N");
                    return None;
                }
            },
            None => {
                let mut n = state.next_number;
                while state.tracks.contains_key(&n) {
                    n = n.checked_add(1)?;
                }
                n
            }
        };
        let bin = self.obj().clone().upcast::<gst::Bin>();
        let functions = PadFunctions {
            event: |pad: &CallRecSinkPad, parent: Option<&gst::Object>, event: gst::Event| {
                if let Some(imp) = callrecsink(parent) {
                    match event.view() {
                        gst::EventView::Caps(c) => {
                            imp.guarded((), || imp.on_track_caps(pad.number(), c.caps()));
                        }
                        // stallfiller turns a GAP into silence, which must
                        // reach the file at its rate too; but silence alone
                        // does not start a recording.
                        gst::EventView::Gap(_)
                            if pad.unrouted()
                                && imp.guarded(false, || imp.route_track(pad.number(), false)) =>
                        {
                            pad.set_routed();
                        }
                        _ => {}
                    }
                }
                let sticky = event.is_sticky();
                let forwarded = gst::Pad::event_default(pad, parent, event);
                if sticky && !forwarded {
                    pad.sticky_event_refused();
                }
                forwarded
            },
            chain: |pad: &CallRecSinkPad, parent: Option<&gst::Object>, buffer: gst::Buffer| {
                if pad.unrouted()
                    && let Some(imp) = callrecsink(parent)
                {
                    imp.guarded(false, || imp.route_track(pad.number(), true));
                    pad.set_routed();
                }
                pad.chain_to_input(parent, buffer)
            },
        };
        let track = match Track::build(&bin, number, self.recording.clone(), functions) {
            Ok(built) => built,
            Err(err) => {
                drop(state);
                gst::element_imp_error!(
                    self,
                    gst::CoreError::MissingPlugin,
                    ("Could not build track {}", number),
                    ["{err}: callrecsink needs stallfiller, audioconvert and audioresample"]
                );
                return None;
            }
        };
        let ghost = track.ghost.clone();
        state.next_number = state.next_number.max(number.saturating_add(1));
        state.tracks.insert(number, track);
        drop(state);
        let added = ghost.set_active(true).is_ok() && self.obj().add_pad(&ghost).is_ok();
        if !added {
            // No orphan: a track exists exactly while its pad does.
            if let Some(track) = self.state().tracks.remove(&number) {
                track.remove(&bin);
            }
            return None;
        }
        // A launch line's `sink_0::gain=-6`, set before the pad existed,
        // waits for this.
        ChildProxyExt::child_added(
            &*self.obj(),
            ghost.upcast_ref::<glib::Object>(),
            &ghost.name(),
        );
        Some(ghost.upcast())
    }

    /// The track pads, in pad-number order: the first children a child
    /// proxy lookup sees. From the element's pad list, not `state`: a
    /// lookup runs inside the bin's `child-added`, which building a track
    /// emits under `state`.
    fn track_pads(&self) -> Vec<gst::Pad> {
        let mut pads = self.obj().sink_pads();
        pads.sort_by_key(|p| track::number_of(&p.name()));
        pads
    }

    /// The rate track `number`'s file has, once it is fixed.
    fn file_rate(&self, number: u32) -> Option<u32> {
        let recording = self.recording();
        let rec = recording.as_ref()?;
        rec.rate_of(rec.channel_of(number)?)
    }

    /// Track `number`'s caps, before stallfiller sees them: the track learns
    /// its input, links the decoder it needs and, once the recording's rate
    /// is fixed, the converter (caps may change during a call).
    fn on_track_caps(&self, number: u32, caps: &gst::CapsRef) {
        let Ok(layout) = callaudio::Layout::from_caps(caps) else {
            return;
        };
        let rate = self.file_rate(number);
        self.with_track(number, |track, bin| {
            let routed = track.set_input(bin, layout, rate);
            self.caps_known.notify_all();
            routed
        });
    }

    /// Runs `route` on track `number` under `state`; a failure (a decoder or
    /// converter missing) is an ERROR, posted once the lock is released.
    fn with_track(
        &self,
        number: u32,
        route: impl FnOnce(&mut Track, &gst::Bin) -> Result<(), String>,
    ) {
        let bin = self.obj().clone().upcast::<gst::Bin>();
        let mut state = self.state();
        let Some(track) = state.tracks.get_mut(&number) else {
            return;
        };
        let routed = route(track, &bin);
        drop(state);
        if let Err(err) = routed {
            gst::element_imp_error!(
                self,
                gst::CoreError::MissingPlugin,
                ("Cannot decode or convert track {}", number),
                [
                    "{err}: callrecsink needs mulawdec/alawdec (plugins-good), audioconvert and audioresample"
                ]
            );
        }
    }

    /// Track `number`'s first buffer (`fix` true) or GAP of this
    /// recording, before stallfiller sees it: a buffer fixes the recording's
    /// rate if no track has yet; then the track is routed for its file's
    /// rate. Whether it was: a GAP before the rate is fixed routes nothing.
    fn route_track(&self, number: u32, fix: bool) -> bool {
        if fix {
            self.fix_rate();
        }
        let rate = self.file_rate(number);
        if rate.is_none() && !fix {
            return false;
        }
        self.with_track(number, |track, bin| track.route(bin, rate, false));
        true
    }

    /// The recording rate: the `rate` property, or the highest input rate
    /// (in `separate` mode each track's own). Fixed at the first buffer of
    /// any track, which waits (at most `CAPS_WAIT`) for every track to
    /// announce its caps. The wait holds no recording lock: another track's
    /// caps take it on their way in (`on_track_caps` asks the file's rate),
    /// and holding it here made every track but the first fall back to the
    /// highest rate known.
    fn fix_rate(&self) {
        if self.recording().as_ref().is_none_or(|r| r.rates_fixed()) {
            return;
        }
        drop(wait_timeout_while(
            &self.caps_known,
            self.state(),
            CAPS_WAIT,
            |s| s.tracks.values().any(|t| t.input_rate().is_none()),
        ));
        let mut recording = self.recording();
        let Some(rec) = recording.as_mut().filter(|r| !r.rates_fixed()) else {
            return;
        };
        let state = self.state();
        let settings = self.settings();
        let known: Vec<Option<u32>> = state.tracks.values().map(|t| t.input_rate()).collect();
        let highest = known
            .iter()
            .flatten()
            .max()
            .copied()
            .unwrap_or(FALLBACK_RATE);
        // Tracks in pad order, which is channel (and file) order.
        let rates: Vec<u32> = if settings.rate > 0 {
            vec![settings.rate; known.len()]
        } else if settings.mode == CallRecMode::Separate {
            // Each file keeps its own track's rate: nothing is resampled.
            known.iter().map(|r| r.unwrap_or(highest)).collect()
        } else {
            vec![highest; known.len()]
        };
        gst::info!(
            CAT,
            imp = self,
            "recording {} track(s) at {rates:?} Hz",
            rec.channels()
        );
        rec.fix_rates(&rates);
    }

    /// What recording a buffer came to, for upstream: a report to post (the
    /// recording reached `max-duration`), or why it was refused.
    pub(super) fn recorded(
        &self,
        number: u32,
        result: Result<Option<Finishing>, Refusal>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match result {
            Ok(finishing) => {
                if let Some(finishing) = finishing {
                    report::post(&self.element(), finishing.complete());
                }
                Ok(gst::FlowSuccess::Ok)
            }
            Err(refusal) => Err(self.refused(number, refusal)),
        }
    }

    /// Posts why a buffer was refused; returns what upstream gets.
    fn refused(&self, number: u32, refusal: Refusal) -> gst::FlowError {
        match refusal {
            Refusal::Flow(err) => err,
            Refusal::NoTimestamps => {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("Track sink_{} has audio without timestamps", number)
                );
                gst::FlowError::Error
            }
            Refusal::Ended(finishing) => {
                report::post(&self.element(), finishing.complete());
                gst::FlowError::Error
            }
        }
    }

    /// The last track's EOS finishes the recording; the disk's part of it
    /// runs after the `recording` lock is released.
    pub(super) fn on_eos(&self, number: u32) {
        let finishing = self.recording().as_mut().and_then(|r| r.track_eos(number));
        if let Some(finishing) = finishing {
            report::post(&self.element(), finishing.complete());
        }
    }

    /// READY->PAUSED: every file is opened and every final name checked now,
    /// so a location that cannot be used fails the state change and leaves
    /// no file.
    fn open(&self) -> Result<(), gst::StateChangeError> {
        let settings = self.settings();
        let tracks: Vec<TrackId> = {
            let mut state = self.state();
            for track in state.tracks.values_mut() {
                // Every recording learns its tracks' caps and rate anew.
                track.reset();
                track.set_tolerance(settings.tolerance);
            }
            state
                .tracks
                .values()
                .map(|t| TrackId {
                    number: t.number,
                    pad: t.pad_name(),
                })
                .collect()
        };
        let metadata = Metadata {
            tags: self.obj().tag_list(),
        };
        // Before anything touches the disk: a key that does not parse is
        // never a plaintext file.
        let recipients = files::seal::parse(
            settings.recipients.as_deref(),
            settings.recipients_file.as_deref(),
        )
        .map_err(|why| {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Settings,
                ("Cannot encrypt the recording: {}", why),
                ["nothing was written; fix recipients / recipients-file"]
            );
            gst::StateChangeError
        })?;
        let mut plan = plan::plan(&settings, &tracks, metadata).map_err(|refused| {
            let (text, advice) = (refused.text(), refused.advice());
            match refused {
                Refused::NoLocation => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::NotFound,
                        ("{}", text),
                        ["{}", advice]
                    )
                }
                Refused::NoTracks => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("{}", text),
                        ["{}", advice]
                    )
                }
                _ => gst::element_imp_error!(
                    self,
                    gst::ResourceError::Settings,
                    ("{}", text),
                    ["{}", advice]
                ),
            }
            gst::StateChangeError
        })?;
        plan.spec.recipients = recipients;
        if let Some(warning) = &plan.warning {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                ("{}", warning),
                ["the format property chooses the format, never the extension"]
            );
        }
        let writer = files::check_destinations(&plan.locations, settings.overwrite)
            .and_then(|_| {
                RecordingFiles::create(
                    &plan.locations,
                    &plan.spec,
                    plan.channels_per_file,
                    FALLBACK_RATE,
                    settings.overwrite,
                )
            })
            .and_then(|files| FileWriter::spawn(files, plan.disk_timeout, plan.header_interval))
            .map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::OpenWrite,
                    ("Could not record to {}: {}", err.path.display(), err.err),
                    ["{err:?}"]
                );
                gst::StateChangeError
            })?;
        let setup = plan.setup;
        let mut recording = Recording::new(writer, tracks, setup);
        // Levels set before the start apply from the first sample.
        let levels: Vec<(u32, Level)> = self
            .state()
            .tracks
            .values()
            .filter_map(|t| {
                let level = t.ghost.level();
                (!level.is_unity()).then_some((t.number, level))
            })
            .collect();
        for (number, level) in levels {
            recording.set_level(number, gst::ClockTime::ZERO, level.factor());
        }
        *self.recording() = Some(recording);
        Ok(())
    }

    /// A track pad's `gain` or `mute` changed: from now on (from the start,
    /// before PLAYING) in the recording that runs, if any.
    pub(super) fn level_changed(&self, pad: &gst::Pad, level: Level) {
        let Some(number) = track::number_of(pad.name().as_str()) else {
            return;
        };
        let at = self
            .obj()
            .current_running_time()
            .unwrap_or(gst::ClockTime::ZERO);
        gst::info!(
            CAT,
            imp = self,
            "{} from running time {at}: {level:?}",
            pad.name()
        );
        if let Some(r) = self.recording().as_mut() {
            r.set_level(number, at, level.factor());
        }
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
        gst::info!(
            CAT,
            imp = self,
            "{} at running time {at}",
            if pause { "pause" } else { "resume" }
        );
        self.recording()
            .as_mut()
            .is_some_and(|r| r.set_paused(pause, at))
    }

    fn arm_start_timeout(&self) {
        let timeout = self.settings().start_timeout;
        if timeout.is_zero() {
            return;
        }
        // The pipeline's clock, as every other wait of the pipeline; the
        // system clock only for an element that has none.
        let clock = self.obj().clock().unwrap_or_else(gst::SystemClock::obtain);
        let id = clock.new_single_shot_id(clock.time().saturating_add(timeout));
        let weak = self.obj().downgrade();
        let armed = id.wait_async(move |_, _, _| {
            let Some(obj) = weak.upgrade() else { return };
            let imp = obj.imp();
            imp.guarded((), || {
                // Decided here, once: nothing was recorded, so nothing is
                // kept, and a later stop finds the recording already done.
                let silent = imp.recording().as_mut().is_some_and(|r| {
                    let silent = !r.rates_fixed() && !r.is_done();
                    if silent {
                        r.discard();
                    }
                    silent
                });
                if silent {
                    report::post_failed(
                        &imp.element(),
                        "no-audio",
                        gst::Array::new(Vec::<String>::new()),
                    );
                    gst::element_error!(
                        obj,
                        gst::ResourceError::Read,
                        ("No audio arrived within start-timeout ({})", timeout),
                        ["no buffer reached any track after PLAYING; nothing is saved"]
                    );
                }
            });
        });
        if armed.is_ok() {
            self.state().start_timer = Some(id);
        }
    }

    /// Finalizes a recording stopped without EOS, waiting at most
    /// `finalize-timeout` for the disk. Returns false if it had to give up
    /// (the recording is then still held by the stuck worker).
    fn finalize_on_stop(&self) -> bool {
        let timeout = Duration::from_nanos(self.settings().finalize_timeout.nseconds());
        finalization::on_stop(&self.recording, timeout, &self.element())
    }
}

/// The track pads are children too, as `audiomixer`'s and `compositor`'s
/// are, so `sink_0::gain=-6` works on a launch line and
/// `gst_child_proxy_set`; then the bin's own elements.
impl ChildProxyImpl for CallRecSink {
    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        self.track_pads()
            .into_iter()
            .find(|p| p.name() == name)
            .map(|p| p.upcast())
            .or_else(|| self.parent_child_by_name(name))
    }

    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        let pads = self.track_pads();
        match pads.get(index as usize) {
            Some(pad) => Some(pad.clone().upcast()),
            None => self.parent_child_by_index(index - pads.len() as u32),
        }
    }

    fn children_count(&self) -> u32 {
        self.obj().num_sink_pads() as u32 + self.parent_children_count()
    }
}

/// The element behind a track pad's `parent`.
fn callrecsink(parent: Option<&gst::Object>) -> Option<&CallRecSink> {
    Some(parent?.downcast_ref::<super::CallRecSink>()?.imp())
}

#[glib::object_subclass]
impl ObjectSubclass for CallRecSink {
    const NAME: &'static str = "GstCallRecSink";
    type Type = super::CallRecSink;
    type ParentType = gst::Bin;
    type Interfaces = (gst::TagSetter, gst::ChildProxy);

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
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(Settings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        lock(&self.settings).set(pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.settings().get(pspec.name())
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
                            let obj = args[0].get::<super::CallRecSink>().ok()?;
                            let at = args[1].get::<u64>().ok()?;
                            let at = (at != u64::MAX).then(|| callaudio::clock_time_of(at));
                            let imp = obj.imp();
                            // A panic must not unwind into the signal's emission.
                            let paused = imp.guarded(false, || imp.set_paused(name == "pause", at));
                            Some(paused.to_value())
                        })
                        .build()
                })
                .chain([
                    // finished(outcome): `callrecsink-finalized` or
                    // `callrecsink-failed`, as on the bus; emitted from the
                    // thread that decided it, once per recording.
                    glib::subclass::Signal::builder("finished")
                        .param_types([gst::Structure::static_type()])
                        .build(),
                ])
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

/// Tags set on the element (title, artist, comment, date, ...) reach the
/// file: see `metadata.rs`.
impl TagSetterImpl for CallRecSink {}

impl ElementImpl for CallRecSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Call recording sink",
                "Sink/Audio",
                "Records the tracks of a call (one request pad each) on one timeline into a WAV, FLAC or Ogg Opus file that \
                 is published only when complete; always finalizes, fails closed",
                env!("CARGO_PKG_AUTHORS"),
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
                gst::PadTemplate::with_gtype(
                    "sink_%u",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &caps,
                    CallRecSinkPad::static_type(),
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
        if self.recording().as_ref().is_some_and(|r| !r.is_done()) {
            // The file's channels are fixed when the recording starts.
            report::post_track_refused(
                &self.element(),
                name,
                "tracks must be requested before the recording starts (READY->PAUSED)",
            );
            return None;
        }
        self.add_track(name)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let track = {
            let mut state = self.state();
            let Some(number) = state
                .tracks
                .iter()
                .find(|(_, t)| t.ghost.upcast_ref::<gst::Pad>() == pad)
                .map(|(n, _)| *n)
            else {
                return;
            };
            state.tracks.remove(&number).unwrap()
        };
        let obj = self.obj();
        let _ = track.ghost.set_active(false);
        let _ = obj.remove_pad(&track.ghost);
        ChildProxyExt::child_removed(
            &*obj,
            track.ghost.upcast_ref::<glib::Object>(),
            &track.ghost.name(),
        );
        track.remove(obj.upcast_ref());
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
        {
            rec.discard();
        }
        result
    }
}

impl BinImpl for CallRecSink {}
