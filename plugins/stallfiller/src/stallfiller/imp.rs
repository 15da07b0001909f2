//! `stallfiller`: one continuous output timeline for a live audio stream.
//!
//! Two threads push on the source pad: the upstream streaming thread (real
//! data, events) and the source pad's task (silence while upstream stalls).
//! `push_lock` serialises the two so no buffer goes out of order; `state` is
//! only ever held for arithmetic, never across a push.
//!
//! The clock's deadline watch (`watch.rs`, one thread per clock for every
//! stallfiller) tells the task when the next sample is overdue:
//! `base_time + running_time(end) + upstream latency + threshold`.
//! Our LATENCY answer adds `threshold`, so the silence we push at that moment
//! still reaches a synchronised sink in time.

use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use callaudio::{Layout, SilenceSource};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::timeline::{Placement, Timeline};
use super::watch::{Token, Watch};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "stallfiller",
        gst::DebugColorFlags::empty(),
        Some("Proactive silence for stalled live audio"),
    )
});

const DEFAULT_THRESHOLD: gst::ClockTime = gst::ClockTime::from_mseconds(200);
const DEFAULT_FILL_CHUNK: gst::ClockTime = gst::ClockTime::from_mseconds(20);
const DEFAULT_TOLERANCE: gst::ClockTime = gst::ClockTime::ZERO;
const DEFAULT_POST_MESSAGES: bool = true;

#[derive(Debug, Clone, Copy)]
struct Settings {
    threshold: gst::ClockTime,
    fill_chunk: gst::ClockTime,
    tolerance: gst::ClockTime,
    post_messages: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold: DEFAULT_THRESHOLD,
            fill_chunk: DEFAULT_FILL_CHUNK,
            tolerance: DEFAULT_TOLERANCE,
            post_messages: DEFAULT_POST_MESSAGES,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    in_samples: u64,
    out_samples: u64,
    silence_samples: u64,
    dropped_samples: u64,
    stalls: u64,
    longest_stall: gst::ClockTime,
}

/// What upstream told us in the LATENCY query.
#[derive(Debug, Clone, Copy)]
struct Upstream {
    live: bool,
    min_latency: gst::ClockTime,
}

#[derive(Default)]
struct State {
    layout: Option<Layout>,
    silence: Option<SilenceSource>,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// `None` until the first buffer (or GAP) of a segment fixes the origin.
    timeline: Option<Timeline>,
    upstream: Option<Upstream>,
    playing: bool,
    flushing: bool,
    eos: bool,
    /// Set while the source pad is deactivated: the task must leave.
    task_stop: bool,
    /// The clock's deadline watch, and the deadline armed on it, so anyone
    /// can cancel it; its number tells a callback whether it is current.
    watch: Option<Arc<Watch>>,
    pending_wait: Option<(Token, u64)>,
    waits_armed: u64,
    /// A deadline the clock reported passed: the task fills from it.
    overdue: Option<gst::ClockTime>,
    /// Stream time at which real data stopped, while a stall is being filled.
    stall_since: Option<gst::ClockTime>,
    /// A flow error the task met, handed to upstream on its next buffer;
    /// the task waits while one is pending.
    flow_error: Option<gst::FlowError>,
    stats: Stats,
}

impl State {
    fn wake_task(&mut self, cond: &Condvar) {
        if let Some(((token, _), watch)) = self.pending_wait.take().zip(self.watch.as_ref()) {
            watch.cancel(token);
        }
        self.overdue = None;
        cond.notify_all();
    }

    fn reset_stream(&mut self) {
        self.timeline = None;
        self.stall_since = None;
        self.eos = false;
        self.flow_error = None;
    }
}

/// Buffers a decision sends downstream, in order: silence first, then data.
#[derive(Default)]
struct Output {
    silence: Vec<gst::Buffer>,
    data: Option<gst::Buffer>,
    messages: Vec<gst::Message>,
}

pub struct StallFiller {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Wakes the task when there may be a new deadline to wait for.
    cond: Condvar,
    /// Held across every push on `srcpad`, from either thread.
    push_lock: Mutex<()>,
}

/// Whether data is real audio or silence standing in for it (a GAP event).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Silence,
}

impl StallFiller {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn settings(&self) -> Settings {
        *self.settings.lock().unwrap()
    }

    fn push_guard(&self) -> MutexGuard<'_, ()> {
        self.push_lock.lock().unwrap()
    }

    fn chunk_samples(layout: &Layout, settings: &Settings) -> u64 {
        layout.time_to_samples(settings.fill_chunk).max(1)
    }

    /// Appends `n` samples of stamped silence to `out`, in fill-chunk pieces.
    fn emit_silence(state: &mut State, settings: &Settings, n: u64, out: &mut Vec<gst::Buffer>) {
        let (Some(timeline), Some(silence)) = (state.timeline.as_mut(), state.silence.as_ref())
        else {
            return;
        };
        let chunk = Self::chunk_samples(timeline.layout(), settings);
        let mut left = n;
        while left > 0 {
            let len = left.min(chunk);
            let mut buffer = silence.take(len);
            timeline.stamp(buffer.get_mut().unwrap(), len);
            out.push(buffer);
            left -= len;
        }
        state.stats.silence_samples += n;
        state.stats.out_samples += n;
    }

    fn element_message(&self, name: &str, fields: gst::Structure) -> gst::Message {
        let mut s = fields;
        s.set_name(name);
        gst::message::Element::builder(s).src(&*self.obj()).build()
    }

    /// Places one input buffer on the timeline: fills a hole before it, trims
    /// what overlaps output already sent, stamps what is left.
    ///
    /// Settings are only read off the steady path: a contiguous buffer is
    /// contiguous under any tolerance.
    fn place(
        &self,
        state: &mut State,
        buffer: gst::Buffer,
        kind: Kind,
    ) -> Result<Output, gst::FlowError> {
        let Some(layout) = state.layout.clone() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Received audio before caps"),
                ["stallfiller needs a CAPS event before the first buffer"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let mut out = Output::default();
        let n = layout.samples_in_bytes(buffer.size());
        if kind == Kind::Audio {
            state.stats.in_samples += n;
        }
        if n == 0 {
            return Ok(out);
        }

        let mut discont = false;
        if state.timeline.is_none() {
            let segment = state.segment.as_ref().ok_or(gst::FlowError::Error)?;
            let origin = buffer
                .pts()
                .unwrap_or(segment.start().unwrap_or(gst::ClockTime::ZERO));
            let origin_offset =
                layout.time_to_samples(origin.saturating_sub(segment.start().unwrap_or_default()));
            gst::debug!(CAT, imp = self, "timeline starts at {origin}");
            state.timeline = Some(Timeline::new(layout.clone(), origin, origin_offset));
            // The task has no deadline without a timeline: it waits for this.
            self.cond.notify_all();
            discont = true;
        }
        let timeline = state.timeline.as_ref().unwrap();
        let mut placement = timeline.place(buffer.pts(), 0);
        if placement != Placement::Contiguous {
            let tolerance = layout.time_to_samples(self.settings().tolerance);
            placement = timeline.place(buffer.pts(), tolerance);
        }
        let mut buffer = buffer;
        let mut kept = n;
        match placement {
            Placement::Contiguous => {}
            Placement::Gap(missing) => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "{missing} samples missing before {:?}: filling",
                    buffer.pts()
                );
                Self::emit_silence(state, &self.settings(), missing, &mut out.silence);
            }
            Placement::Overlap(stale) if stale >= n => {
                gst::log!(
                    CAT,
                    imp = self,
                    "dropping a buffer of {n} samples, all already covered"
                );
                if kind == Kind::Audio {
                    state.stats.dropped_samples += n;
                }
                return Ok(out);
            }
            Placement::Overlap(stale) => {
                gst::debug!(CAT, imp = self, "trimming {stale} stale samples of {n}");
                if kind == Kind::Audio {
                    state.stats.dropped_samples += stale;
                }
                buffer = callaudio::trim(buffer, stale, 0, &layout).expect("stale < n");
                kept = n - stale;
            }
        }

        let timeline = state.timeline.as_mut().unwrap();
        if kind == Kind::Audio
            && let Some(since) = state.stall_since.take()
        {
            let duration = timeline.end().saturating_sub(since);
            state.stats.longest_stall = state.stats.longest_stall.max(duration);
            gst::info!(
                CAT,
                imp = self,
                "real audio resumed after a stall of {duration}"
            );
            if self.settings().post_messages {
                out.messages.push(
                    self.element_message(
                        "stallfiller-resumed",
                        gst::Structure::builder("x")
                            .field("timestamp", timeline.end())
                            .field("duration", duration)
                            .build(),
                    ),
                );
            }
        }
        {
            let b = buffer.make_mut();
            timeline.stamp(b, kept);
            // The output is one continuous timeline: only its very start is a
            // discontinuity, whatever upstream lost on its side.
            if discont {
                b.set_flags(gst::BufferFlags::DISCONT);
            } else if b.flags().contains(gst::BufferFlags::DISCONT) {
                b.unset_flags(gst::BufferFlags::DISCONT);
            }
        }
        state.stats.out_samples += kept;
        if kind == Kind::Silence {
            state.stats.silence_samples += kept;
        }
        out.data = Some(buffer);
        Ok(out)
    }

    /// Pushes an `Output` in order. The caller holds `push_lock`.
    fn push_output(&self, out: Output) -> Result<gst::FlowSuccess, gst::FlowError> {
        for message in out.messages {
            let _ = self.obj().post_message(message);
        }
        let mut result = Ok(gst::FlowSuccess::Ok);
        for buffer in out.silence.into_iter().chain(out.data) {
            result = self.srcpad.push(buffer);
            if result.is_err() {
                break;
            }
        }
        result
    }

    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _push = self.push_guard();
        let out = {
            let mut state = self.state();
            if let Some(err) = state.flow_error.take() {
                state.wake_task(&self.cond);
                return Err(err);
            }
            // Real data moves the end and so the task's deadline later; the
            // task finds that out when it wakes, so it is not disturbed here.
            self.place(&mut state, buffer, Kind::Audio)?
        };
        self.push_output(out)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling {event:?}");
        match event.view() {
            EventView::FlushStart(_) => {
                let mut state = self.state();
                state.flushing = true;
                state.wake_task(&self.cond);
                drop(state);
                return self.srcpad.push_event(event);
            }
            EventView::FlushStop(_) => {
                let _push = self.push_guard();
                let mut state = self.state();
                state.flushing = false;
                state.reset_stream();
                state.segment = None;
                state.wake_task(&self.cond);
                drop(state);
                return self.srcpad.push_event(event);
            }
            EventView::Caps(c) => {
                let layout = match Layout::from_caps(c.caps()) {
                    Ok(layout) => layout,
                    Err(err) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("Unsupported audio format"),
                            ["{err}"]
                        );
                        return false;
                    }
                };
                let settings = self.settings();
                let _push = self.push_guard();
                let mut state = self.state();
                if state.layout.as_ref() != Some(&layout) {
                    gst::debug!(CAT, imp = self, "new layout {layout:?}");
                    if let Some(timeline) = state.timeline.as_mut() {
                        timeline.rebase(layout.clone());
                    }
                    state.silence = Some(SilenceSource::new(
                        &layout,
                        Self::chunk_samples(&layout, &settings),
                    ));
                    state.layout = Some(layout);
                }
                drop(state);
                return self.srcpad.push_event(event);
            }
            EventView::Segment(s) => {
                let segment = match s.segment().clone().downcast::<gst::ClockTime>() {
                    Ok(segment) => segment,
                    Err(segment) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("Audio must come in a TIME segment"),
                            ["got a segment in {:?} format", segment.format()]
                        );
                        return false;
                    }
                };
                let _push = self.push_guard();
                let mut state = self.state();
                if state.segment.as_ref() != Some(&segment) {
                    state.reset_stream();
                    state.segment = Some(segment);
                    state.wake_task(&self.cond);
                }
                drop(state);
                return self.srcpad.push_event(event);
            }
            EventView::Gap(g) => {
                let (timestamp, duration) = g.get();
                let _push = self.push_guard();
                let out = {
                    let mut state = self.state();
                    match (duration, state.silence.as_ref()) {
                        (Some(duration), Some(silence)) if state.segment.is_some() => {
                            let n = silence.layout().time_to_samples(duration);
                            let mut buffer = silence.take(n);
                            buffer.get_mut().unwrap().set_pts(timestamp);
                            self.place(&mut state, buffer, Kind::Silence)
                        }
                        // Nothing to turn into samples: the GAP goes on as it is.
                        _ => {
                            drop(state);
                            return self.srcpad.push_event(event);
                        }
                    }
                };
                return match out {
                    Ok(out) => {
                        let _ = self.push_output(out);
                        true
                    }
                    Err(_) => false,
                };
            }
            EventView::Eos(_) => {
                self.ensure_upstream_known();
                let settings = self.settings();
                let _push = self.push_guard();
                let out = {
                    let mut state = self.state();
                    let mut out = Output::default();
                    if let Some(target) = self.eos_target(&state) {
                        let n = state
                            .timeline
                            .as_ref()
                            .map_or(0, |t| t.samples_until(target));
                        gst::debug!(
                            CAT,
                            imp = self,
                            "padding the tail with {n} samples up to {target}"
                        );
                        Self::emit_silence(&mut state, &settings, n, &mut out.silence);
                    }
                    if let (Some(since), Some(timeline)) =
                        (state.stall_since.take(), state.timeline.as_ref())
                    {
                        let duration = timeline.end().saturating_sub(since);
                        state.stats.longest_stall = state.stats.longest_stall.max(duration);
                    }
                    state.eos = true;
                    state.wake_task(&self.cond);
                    out
                };
                let _ = self.push_output(out);
                return self.srcpad.push_event(event);
            }
            _ => {}
        }
        if event.is_serialized() {
            let _push = self.push_guard();
            self.srcpad.push_event(event)
        } else {
            self.srcpad.push_event(event)
        }
    }

    /// Where the tail must reach at EOS: in a live pipeline the moment EOS
    /// arrives (so parallel tracks end together); otherwise the segment stop.
    fn eos_target(&self, state: &State) -> Option<gst::ClockTime> {
        let segment = state.segment.as_ref()?;
        if state.upstream.is_some_and(|u| u.live) && state.playing {
            let obj = self.obj();
            let now = obj.clock()?.time();
            let running_time = now.checked_sub(obj.base_time()?)?;
            segment.position_from_running_time(running_time)
        } else {
            segment.stop()
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            if !self.sinkpad.peer_query(q.query_mut()) {
                return false;
            }
            let (live, min, max) = q.result();
            let threshold = self.settings().threshold;
            gst::debug!(
                CAT,
                imp = self,
                "upstream latency: live {live}, min {min}, max {max:?}"
            );
            {
                let mut state = self.state();
                state.upstream = Some(Upstream {
                    live,
                    min_latency: min,
                });
                state.wake_task(&self.cond);
            }
            q.set(live, min + threshold, max.map(|max| max + threshold));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// Nobody may have asked for latency yet (no synchronised sink downstream,
    /// or not yet): then ask upstream ourselves whether it is live.
    fn ensure_upstream_known(&self) {
        if self.state().upstream.is_some() {
            return;
        }
        let mut q = gst::query::Latency::new();
        let upstream = if self.sinkpad.peer_query(&mut q) {
            let (live, min_latency, _) = q.result();
            Upstream { live, min_latency }
        } else {
            Upstream {
                live: false,
                min_latency: gst::ClockTime::ZERO,
            }
        };
        self.state().upstream.get_or_insert(upstream);
    }

    /// Clock time at which the next sample is overdue, if the task should be
    /// waiting for it at all.
    fn deadline(&self, state: &State, settings: &Settings) -> Option<gst::ClockTime> {
        if !state.playing
            || state.flushing
            || state.eos
            || state.task_stop
            || state.flow_error.is_some()
        {
            return None;
        }
        let upstream = state.upstream.filter(|u| u.live)?;
        let timeline = state.timeline.as_ref()?;
        let running_time = state.segment.as_ref()?.to_running_time(timeline.end())?;
        let base_time = self.obj().base_time()?;
        Some(base_time + running_time + upstream.min_latency + settings.threshold)
    }

    /// One turn of the source pad's task: sleep until the clock reports the
    /// next sample overdue, then push one chunk of silence.
    ///
    /// The deadline is watched by the clock's `Watch`, so while data keeps
    /// coming the deadline moves on in the watch's thread and this task never
    /// wakes: a process with thousands of tracks pays no thread switch per
    /// track for deadlines that real data has already met.
    fn fill_loop(&self) {
        let mut state = self.state();
        let due = loop {
            if state.task_stop {
                drop(state);
                let _ = self.srcpad.pause_task();
                return;
            }
            if state.upstream.is_none() && state.playing && state.timeline.is_some() {
                drop(state);
                self.ensure_upstream_known();
                state = self.state();
                continue;
            }
            if let Some(due) = state.overdue.take() {
                break due;
            }
            if state.pending_wait.is_none() {
                self.arm_deadline(&mut state);
            }
            state = self.cond.wait(state).unwrap();
        };
        drop(state);
        self.fill_if_overdue(due);
    }

    /// Arms the watch for the current deadline, if there is one.
    fn arm_deadline(&self, state: &mut State) {
        let Some(deadline) = self.deadline(state, &self.settings()) else {
            return;
        };
        let Some(clock) = self.obj().clock() else {
            return;
        };
        if !state.watch.as_ref().is_some_and(|w| w.is_for(&clock)) {
            match Watch::for_clock(&clock) {
                Ok(watch) => state.watch = Some(watch),
                Err(err) => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Thread,
                        ("Could not start the stall deadline watch"),
                        ["{err}"]
                    );
                    return;
                }
            }
        }
        let watch = state.watch.as_ref().unwrap();
        state.waits_armed += 1;
        let seq = state.waits_armed;
        // A strong reference, not a GLib weak one (those share one
        // process-wide lock that thousands of tracks would contend on). It
        // lives until the deadline passes or is cancelled, and every pending
        // deadline is cancelled when the source pad deactivates.
        let this = self.ref_counted();
        gst::trace!(CAT, imp = self, "watching deadline {deadline}");
        let token = watch.arm(deadline, move || this.deadline_passed(seq, deadline));
        state.pending_wait = Some((token, seq));
    }

    /// The watch's callback, in its thread: hand a real stall to the task,
    /// or follow the deadline that data has moved on.
    fn deadline_passed(&self, seq: u64, waited_for: gst::ClockTime) {
        let mut state = self.state();
        if state.pending_wait.as_ref().map(|(_, s)| *s) != Some(seq) {
            return;
        }
        state.pending_wait = None;
        match self.deadline(&state, &self.settings()) {
            Some(deadline) if deadline <= waited_for => {
                state.overdue = Some(waited_for);
                self.cond.notify_all();
            }
            Some(_) => self.arm_deadline(&mut state),
            None => self.cond.notify_all(),
        }
    }

    fn fill_if_overdue(&self, waited_for: gst::ClockTime) {
        let settings = self.settings();
        let _push = self.push_guard();
        let out = {
            let mut state = self.state();
            // Data may have arrived while we waited for the lock.
            match self.deadline(&state, &settings) {
                Some(deadline) if deadline <= waited_for => {}
                _ => return,
            }
            let Some(layout) = state.layout.clone() else {
                return;
            };
            let mut out = Output::default();
            if state.stall_since.is_none() {
                let since = state.timeline.as_ref().unwrap().end();
                state.stall_since = Some(since);
                state.stats.stalls += 1;
                gst::info!(
                    CAT,
                    imp = self,
                    "upstream stalled at {since}: filling with silence"
                );
                if settings.post_messages {
                    let running_time = state
                        .segment
                        .as_ref()
                        .and_then(|s| s.to_running_time(since));
                    out.messages.push(
                        self.element_message(
                            "stallfiller-stall",
                            gst::Structure::builder("x")
                                .field("timestamp", since)
                                .field("running-time", running_time)
                                .build(),
                        ),
                    );
                }
            }
            let n = Self::chunk_samples(&layout, &settings);
            Self::emit_silence(&mut state, &settings, n, &mut out.silence);
            out
        };
        if let Err(err) = self.push_output(out) {
            gst::debug!(CAT, imp = self, "silence push returned {err:?}");
            // Upstream gets it on its next buffer; until then there is no
            // deadline, so the task does not retry against a broken downstream.
            self.state().flow_error = Some(err);
        }
    }

    fn src_activate(&self, active: bool) -> Result<(), gst::LoggableError> {
        if active {
            self.state().task_stop = false;
            let this = self.ref_counted();
            self.srcpad
                .start_task(move || this.fill_loop())
                .map_err(|err| gst::loggable_error!(CAT, "failed to start the fill task: {err}"))
        } else {
            {
                let mut state = self.state();
                state.task_stop = true;
                state.flushing = true;
                state.wake_task(&self.cond);
            }
            self.srcpad
                .stop_task()
                .map_err(|err| gst::loggable_error!(CAT, "failed to stop the fill task: {err}"))
        }
    }

    fn stats_structure(&self) -> gst::Structure {
        let stats = self.state().stats;
        gst::Structure::builder("stallfiller-stats")
            .field("in-samples", stats.in_samples)
            .field("out-samples", stats.out_samples)
            .field("silence-samples", stats.silence_samples)
            .field("dropped-samples", stats.dropped_samples)
            .field("stalls", stats.stalls)
            .field("longest-stall", stats.longest_stall.nseconds())
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for StallFiller {
    const NAME: &'static str = "GstStallFiller";
    type Type = super::StallFiller;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                StallFiller::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                StallFiller::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .query_function(|pad, parent, query| {
                StallFiller::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .activatemode_function(|_pad, parent, mode, active| {
                StallFiller::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic in activate")),
                    |imp| {
                        if mode == gst::PadMode::Push {
                            imp.src_activate(active)
                        } else {
                            Err(gst::loggable_error!(CAT, "only push mode is supported"))
                        }
                    },
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        StallFiller {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            push_lock: Mutex::new(()),
        }
    }
}

impl ObjectImpl for StallFiller {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt64::builder("threshold")
                    .nick("Threshold")
                    .blurb(
                        "How long after the next sample is due (ns) before silence is pushed in its place; \
                         added to the reported latency",
                    )
                    .minimum(0)
                    .maximum(u64::MAX - 1)
                    .default_value(DEFAULT_THRESHOLD.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("fill-chunk")
                    .nick("Fill chunk")
                    .blurb("Duration (ns) of each silence buffer pushed while a stall lasts")
                    .minimum(gst::ClockTime::MSECOND.nseconds())
                    .maximum(gst::ClockTime::SECOND.nseconds())
                    .default_value(DEFAULT_FILL_CHUNK.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("tolerance")
                    .nick("Tolerance")
                    .blurb(
                        "Timestamp jitter (ns) absorbed without filling or trimming; 0 keeps the output \
                         sample-exact to the input timestamps",
                    )
                    .minimum(0)
                    .maximum(gst::ClockTime::SECOND.nseconds())
                    .default_value(DEFAULT_TOLERANCE.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post stallfiller-stall and stallfiller-resumed element messages on the bus")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "in-samples, out-samples, silence-samples, dropped-samples, stalls, \
                         longest-stall (ns)",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "threshold" => {
                settings.threshold = gst::ClockTime::from_nseconds(value.get().unwrap());
                drop(settings);
                self.state().wake_task(&self.cond);
                // Our latency changed with it: let the pipeline redistribute.
                let _ = self
                    .obj()
                    .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
            }
            "fill-chunk" => {
                settings.fill_chunk = gst::ClockTime::from_nseconds(value.get().unwrap())
            }
            "tolerance" => settings.tolerance = gst::ClockTime::from_nseconds(value.get().unwrap()),
            "post-messages" => settings.post_messages = value.get().unwrap(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        match pspec.name() {
            "threshold" => settings.threshold.nseconds().to_value(),
            "fill-chunk" => settings.fill_chunk.nseconds().to_value(),
            "tolerance" => settings.tolerance.nseconds().to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "stats" => self.stats_structure().to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for StallFiller {}

impl ElementImpl for StallFiller {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Stall filler",
                "Filter/Audio",
                "Keeps live audio on one continuous timeline: pushes silence while upstream stalls, \
                 trims late data that overlaps it, pads the tail at EOS",
                "Call audio plugins",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = audio_caps();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::trace!(CAT, imp = self, "changing state {transition:?}");
        match transition {
            gst::StateChange::ReadyToPaused => {
                let mut state = self.state();
                *state = State {
                    task_stop: state.task_stop,
                    ..State::default()
                };
            }
            gst::StateChange::PlayingToPaused => {
                let mut state = self.state();
                state.playing = false;
                state.wake_task(&self.cond);
            }
            _ => {}
        }
        let success = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToPlaying {
            let mut state = self.state();
            state.playing = true;
            state.wake_task(&self.cond);
        }
        Ok(success)
    }
}

/// Any interleaved raw audio, and the two G.711 encodings SIP audio comes in.
fn audio_caps() -> gst::Caps {
    let mut caps = gst_audio::AudioCapsBuilder::new_interleaved().build();
    {
        let caps = caps.get_mut().unwrap();
        for name in ["audio/x-mulaw", "audio/x-alaw"] {
            caps.append_structure(
                gst::Structure::builder(name)
                    .field("rate", gst::IntRange::new(1, i32::MAX))
                    .field("channels", gst::IntRange::new(1, i32::MAX))
                    .build(),
            );
        }
    }
    caps
}
