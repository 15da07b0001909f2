// SPDX-License-Identifier: MPL-2.0
//! `stallfiller`: one continuous output timeline for a live audio stream.
//!
//! Two threads push on the source pad: the upstream streaming thread (real
//! data, events) and the filler (silence while upstream stalls): the source
//! pad's task, or with `shared-threads` a turn on a worker shared by every
//! stallfiller of the process (`callaudio::workers`), which costs no thread
//! per element.
//!
//! An element that embeds a stallfiller (callrecsink) may hand it buffers
//! without its sink pad (`StallFiller::chain`) and take its buffers without
//! its source pad (`set_embedded_output`): the same two entry points, the
//! same `push_lock`; only the pads' per-buffer work is skipped.
//!
//! Lock order: `push_lock`, then `state`, then `settings`. `push_lock`
//! serialises the two pushers so no buffer goes out of order and is held
//! across pushes; `state` is only ever held for arithmetic, never across a
//! push; `settings` only to copy them. Under `state`, a turn may be queued
//! on the shared workers (their queue's lock, which calls nothing back) and
//! a deadline armed on the watch (its lock, likewise), and at EOS the
//! track's end noted for its parallel tracks (`ending.rs`'s lock, likewise;
//! waiting for theirs takes no lock of ours).
//!
//! The fill scheduler is `imp/fill.rs`; EOS is `imp/eos.rs`. The clock's deadline watch (`watch.rs`, one thread per clock for every
//! stallfiller) tells the task when the next sample is overdue:
//! `base_time + running_time(end) + upstream latency + threshold`.
//! Our LATENCY answer adds `threshold`, so the silence we push at that moment
//! still reaches a synchronised sink in time.
//!
//! Work is bounded whatever the timestamps: a hole longer than `max-gap` is a
//! resync, not a fill; silence is described as a run and stamped as it is
//! pushed, so a long fill never holds more than one buffer; and every sum of
//! times saturates or gives up rather than overflowing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, OnceLock};

use callaudio::sync::{lock, wait};
use callaudio::{Layout, SilenceSource};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::reach::Reach;
use super::timeline::{Placement, Timeline};
use super::watch::{Token, Watch};

mod eos;
mod fill;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "stallfiller",
        gst::DebugColorFlags::empty(),
        Some("Proactive silence for stalled live audio"),
    )
});

const DEFAULT_THRESHOLD: gst::ClockTime = gst::ClockTime::from_mseconds(200);
/// Longer than any threshold is useful for: a stall noticed an hour late is
/// not noticed. Bounding it keeps every deadline sum far from overflow.
const MAX_THRESHOLD: gst::ClockTime = gst::ClockTime::from_seconds(3600);
const DEFAULT_FILL_CHUNK: gst::ClockTime = gst::ClockTime::from_mseconds(20);
const DEFAULT_TOLERANCE: gst::ClockTime = gst::ClockTime::ZERO;
const DEFAULT_POST_MESSAGES: bool = true;
/// SIP stacks hang up a call whose RTP stops for about this long (RTP
/// timeouts are commonly 30-60 s), so a longer hole in a call's timestamps is
/// not a stall to bridge but a jump: it is resynchronised, not filled.
pub const DEFAULT_MAX_GAP: gst::ClockTime = gst::ClockTime::from_seconds(60);
const MAX_MAX_GAP: gst::ClockTime = gst::ClockTime::from_seconds(24 * 3600);
/// The latest clock time a stall is filled at: 2^62 ns, about 146 years.
const MAX_DEADLINE: gst::ClockTime = gst::ClockTime::from_nseconds(1 << 62);

#[derive(Debug, Clone, Copy)]
struct Settings {
    threshold: gst::ClockTime,
    fill_chunk: gst::ClockTime,
    tolerance: gst::ClockTime,
    max_gap: gst::ClockTime,
    post_messages: bool,
    shared_threads: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold: DEFAULT_THRESHOLD,
            fill_chunk: DEFAULT_FILL_CHUNK,
            tolerance: DEFAULT_TOLERANCE,
            max_gap: DEFAULT_MAX_GAP,
            post_messages: DEFAULT_POST_MESSAGES,
            shared_threads: false,
        }
    }
}

/// The workers that fill stalls for every stallfiller with
/// `shared-threads`. A fill that blocks downstream holds one; the next
/// finds none free and starts another.
static FILLERS: callaudio::workers::Workers = callaudio::workers::Workers::new("stall-fill", 64);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Queues a turn of one element's filler on the shared workers.
type Turn = Arc<dyn Fn() + Send + Sync>;

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    in_samples: u64,
    out_samples: u64,
    silence_samples: u64,
    dropped_samples: u64,
    stalls: u64,
    longest_stall: gst::ClockTime,
    resyncs: u64,
    partial_frame_bytes: u64,
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
    silence: Option<Arc<SilenceSource>>,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// `None` until the first buffer, GAP or overdue deadline of a segment
    /// fixes the origin.
    timeline: Option<Timeline>,
    /// The next buffer out starts a discontinuity (a new timeline or a resync).
    discont: bool,
    upstream: Option<Upstream>,
    playing: bool,
    /// The clock and base time of this PLAYING, so timing the arrival of
    /// each buffer takes no object lock.
    clock: Option<(gst::Clock, gst::ClockTime)>,
    /// Where real data would have reached by a given running time, since
    /// the stream started or was flushed.
    reach: Reach,
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
    /// With `shared-threads`, while the source pad is active: how to queue
    /// a turn instead of waking a task (a strong reference to the element,
    /// dropped at deactivation), and whether one is queued.
    turn: Option<Turn>,
    turn_queued: bool,
    /// Stream time at which real data stopped, while a stall is being filled.
    stall_since: Option<gst::ClockTime>,
    /// Clock time of the stall's first fill, and the running time filled
    /// since: the task never fills more than the clock has run, plus
    /// `max-gap`, whatever the segments say.
    stall_clock: Option<gst::ClockTime>,
    stall_filled: gst::ClockTime,
    /// A flow error the task met, handed to upstream on its next buffer;
    /// the task waits while one is pending.
    flow_error: Option<gst::FlowError>,
    /// The clock is further ahead than the segment can express: no position
    /// to fill to. Filling waits for the stream to move (data, a segment).
    unreachable: bool,
    stats: Stats,
}

impl State {
    fn wake_task(&mut self, cond: &Condvar) {
        if let Some(((token, _), watch)) = self.pending_wait.take().zip(self.watch.as_ref()) {
            watch.cancel(token);
        }
        self.overdue = None;
        self.kick(cond);
    }

    /// Makes the filler look at the state again: the task, or a turn.
    fn kick(&mut self, cond: &Condvar) {
        match &self.turn {
            Some(turn) if !self.turn_queued => {
                self.turn_queued = true;
                turn();
            }
            Some(_) => {}
            None => cond.notify_all(),
        }
    }

    fn reset_stream(&mut self) {
        self.timeline = None;
        self.stall_since = None;
        self.stall_clock = None;
        self.stall_filled = gst::ClockTime::ZERO;
        self.eos = false;
        self.flow_error = None;
        self.unreachable = false;
    }

    /// Starts the timeline at `origin` if there is none yet and the format
    /// is known; true if there is a timeline now.
    fn ensure_timeline(&mut self, origin: Option<gst::ClockTime>) -> bool {
        if self.timeline.is_some() {
            return true;
        }
        let (Some(layout), Some(segment)) = (self.layout.as_ref(), self.segment.as_ref()) else {
            return false;
        };
        let start = segment.start().unwrap_or(gst::ClockTime::ZERO);
        let origin = origin.unwrap_or(start);
        let origin_offset = layout.time_to_samples(origin.saturating_sub(start));
        gst::debug!(CAT, "timeline starts at {origin}");
        self.timeline = Some(Timeline::new(layout.clone(), origin, origin_offset));
        self.discont = true;
        true
    }
}

/// Silence claimed on the timeline, stamped and pushed piece by piece by
/// whoever pushes the `Output`, so a long fill holds one buffer at a time.
struct SilenceRun {
    /// The timeline as it was before the run.
    timeline: Timeline,
    n: u64,
    chunk: u64,
    source: Arc<SilenceSource>,
    discont: bool,
}

/// What a decision sends downstream, in order: messages, silence, data.
#[derive(Default)]
struct Output {
    messages: Vec<gst::Message>,
    silence: Option<SilenceRun>,
    data: Option<gst::Buffer>,
}

/// What is placed on the timeline: a buffer of audio, or a span of silence
/// standing in for audio (a GAP event), which is never allocated whole.
enum Input {
    Buffer(gst::Buffer),
    Silence { pts: gst::ClockTime, n: u64 },
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
    /// An embedding element's own entry for our buffers (`push_buffer`).
    embedded: OnceLock<super::EmbeddedOutput>,
    /// `srcpad` is linked straight to the embedding element's pad whose
    /// chain function `embedded` is.
    embedded_linked: AtomicBool,
    /// `srcpad` was (re)linked: its sticky events may not have reached the
    /// peer yet, and only a push on the pad sends them.
    relinked: AtomicBool,
    /// Tells this element's notes from others' at EOS (`ending.rs`).
    id: u64,
}

/// Whether data is real audio or silence standing in for it (a GAP event).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Silence,
}

impl StallFiller {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn settings(&self) -> Settings {
        *lock(&self.settings)
    }

    fn push_guard(&self) -> MutexGuard<'_, ()> {
        lock(&self.push_lock)
    }

    fn chunk_samples(layout: &Layout, settings: &Settings) -> u64 {
        layout.time_to_samples(settings.fill_chunk).max(1)
    }

    /// Claims `n` samples of silence on the timeline for `out`.
    fn emit_silence(state: &mut State, settings: &Settings, n: u64, out: &mut Output) {
        if n == 0 {
            return;
        }
        let (Some(timeline), Some(source)) = (state.timeline.as_mut(), state.silence.as_ref())
        else {
            return;
        };
        match out.silence.as_mut() {
            Some(run) => run.n += n,
            None => {
                let chunk = Self::chunk_samples(timeline.layout(), settings).min(source.max_take());
                out.silence = Some(SilenceRun {
                    timeline: timeline.clone(),
                    n,
                    chunk,
                    source: source.clone(),
                    discont: std::mem::take(&mut state.discont),
                });
            }
        }
        timeline.skip(n);
        state.stats.silence_samples += n;
        state.stats.out_samples += n;
    }

    fn element_message(&self, name: &str, fields: gst::Structure) -> gst::Message {
        let mut s = fields;
        s.set_name(name);
        callaudio::message::element_message(&*self.obj(), s)
    }

    /// A WARNING to post once the state is unlocked.
    fn warning(&self, text: &str, debug: &str) -> gst::Message {
        gst::warning!(CAT, imp = self, "{text}: {debug}");
        gst::message::Warning::builder(gst::StreamError::Format, text)
            .debug(debug)
            .src(&*self.obj())
            .build()
    }

    /// Places one input on the timeline: fills a hole before it, trims
    /// what overlaps output already sent, stamps what is left. A forward
    /// jump past `max-gap` resynchronises instead of filling.
    fn place(&self, state: &mut State, input: Input, kind: Kind) -> Result<Output, gst::FlowError> {
        let Some(layout) = state.layout.clone() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Received audio before caps"),
                ["stallfiller needs a CAPS event before the first buffer"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        if state.segment.is_none() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Received audio before a segment"),
                ["stallfiller needs a SEGMENT event before the first buffer"]
            );
            return Err(gst::FlowError::Error);
        }
        let mut out = Output::default();
        let mut input = input;
        let (pts, n) = match &mut input {
            Input::Buffer(buffer) => {
                let size = buffer.size();
                let stray = size % layout.bpf;
                if stray > 0 {
                    // A stray byte would put every later sample off by it.
                    gst::debug!(CAT, imp = self, "cut {stray} stray bytes off a buffer");
                    state.stats.partial_frame_bytes += stray as u64;
                    let whole = std::mem::replace(buffer, gst::Buffer::new());
                    *buffer = callaudio::whole_frames(whole, &layout).0;
                }
                (buffer.pts(), (size / layout.bpf) as u64)
            }
            Input::Silence { pts, n } => (Some(*pts), *n),
        };
        if kind == Kind::Audio {
            state.stats.in_samples += n;
        }
        if n == 0 {
            return Ok(out);
        }
        state.ensure_timeline(pts);
        let timeline = state.timeline.as_ref().expect("layout and segment are set");
        let mut placement = timeline.place(pts, 0);
        // Settings are read only off the steady path (a contiguous buffer is
        // contiguous under any tolerance), and then once.
        let mut cached: Option<Settings> = None;
        let mut settings = || *cached.get_or_insert_with(|| self.settings());
        if placement != Placement::Contiguous {
            let tolerance = layout.time_to_samples(settings().tolerance);
            placement = timeline.place(pts, tolerance);
        }
        let mut kept = n;
        let mut trim = 0;
        match placement {
            Placement::Contiguous => {}
            Placement::Gap(missing) if missing > layout.time_to_samples(settings().max_gap) => {
                let jump = layout.samples_to_time(missing);
                let pts = pts.expect("a gap needs a timestamp");
                out.messages.push(self.warning(
                    "Timestamps jumped ahead by more than max-gap: resynchronised instead of filling",
                    &format!(
                        "jump of {jump} at {pts}, max-gap is {}; the output is discontinuous here",
                        settings().max_gap
                    ),
                ));
                state.stats.resyncs += 1;
                state.timeline = Some(timeline.continue_at(pts));
                state.discont = true;
            }
            Placement::Gap(missing) => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "{missing} samples missing before {pts:?}: filling"
                );
                Self::emit_silence(state, &settings(), missing, &mut out);
            }
            Placement::Overlap(stale) if stale >= n => {
                gst::log!(CAT, imp = self, "dropping {n} samples, all already covered");
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
                trim = stale;
                kept = n - stale;
            }
        }

        if kind == Kind::Audio {
            state.stall_clock = None;
            state.stall_filled = gst::ClockTime::ZERO;
        }
        if kind == Kind::Audio
            && let Some(since) = state.stall_since.take()
        {
            let end = state.timeline.as_ref().unwrap().end();
            let duration = end.saturating_sub(since);
            state.stats.longest_stall = state.stats.longest_stall.max(duration);
            gst::info!(
                CAT,
                imp = self,
                "real audio resumed after a stall of {duration}"
            );
            if settings().post_messages {
                out.messages.push(
                    self.element_message(
                        "stallfiller-resumed",
                        gst::Structure::builder("x")
                            .field("timestamp", end)
                            .field("duration", duration)
                            .build(),
                    ),
                );
            }
        }
        let buffer = match input {
            Input::Silence { .. } => {
                // The silence kept continues whatever hole was filled before it.
                Self::emit_silence(state, &settings(), kept, &mut out);
                return Ok(out);
            }
            Input::Buffer(buffer) if trim > 0 => {
                callaudio::trim(buffer, trim, 0, &layout).expect("stale < n")
            }
            Input::Buffer(buffer) => buffer,
        };
        let mut buffer = buffer;
        let discont = std::mem::take(&mut state.discont);
        let timeline = state.timeline.as_mut().unwrap();
        {
            let b = buffer.make_mut();
            timeline.stamp(b, kept);
            // The output is one continuous timeline: only its start and a
            // resync are discontinuities, whatever upstream lost on its side.
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
        if let Some(run) = out.silence {
            let mut timeline = run.timeline;
            let mut left = run.n;
            let mut discont = run.discont;
            while left > 0 {
                let mut buffer = run.source.take(run.chunk.min(left));
                let len = run.source.layout().samples_in_bytes(buffer.size());
                {
                    let b = buffer.get_mut().unwrap();
                    timeline.stamp(b, len);
                    if std::mem::take(&mut discont) {
                        b.set_flags(gst::BufferFlags::DISCONT);
                    }
                }
                self.push_buffer(buffer)?;
                left -= len;
            }
        }
        match out.data {
            Some(buffer) => self.push_buffer(buffer),
            None => Ok(gst::FlowSuccess::Ok),
        }
    }

    /// Where every buffer leaves, under `push_lock`: to the source pad, or
    /// while the embedding element said the pad is linked straight to it,
    /// to its entry for them, which skips the pad's per-buffer work. The
    /// first buffer after a (re)link still takes the pad, which sends the
    /// sticky events (caps, segment) the peer has not had yet first.
    fn push_buffer(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.embedded_linked.load(Ordering::Acquire) {
            if self.relinked.load(Ordering::Acquire) {
                self.relinked.store(false, Ordering::Release);
            } else if let Some(output) = self.embedded.get() {
                return output(buffer);
            }
        }
        self.srcpad.push(buffer)
    }

    pub(super) fn set_embedded_output(&self, output: super::EmbeddedOutput) {
        let _ = self.embedded.set(output);
    }

    pub(super) fn set_embedded_linked(&self, linked: bool) {
        self.relinked.store(true, Ordering::Release);
        self.embedded_linked.store(linked, Ordering::Release);
    }

    /// The one entry of upstream's buffers: from the sink pad, or straight
    /// from an embedding element's pad (`StallFiller::chain`), which skips
    /// the sink pad's checks: hence the flushing and EOS checks here.
    pub(super) fn chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _push = self.push_guard();
        let out = {
            let mut state = self.state();
            if state.flushing {
                return Err(gst::FlowError::Flushing);
            }
            if state.eos {
                return Err(gst::FlowError::Eos);
            }
            if let Some(err) = state.flow_error.take() {
                state.wake_task(&self.cond);
                return Err(err);
            }
            if std::mem::take(&mut state.unreachable) {
                state.wake_task(&self.cond);
            }
            // Real data moves the end and so the task's deadline later; the
            // task finds that out when it wakes, so it is not disturbed here.
            let span = buffer
                .pts()
                .zip(state.layout.as_ref())
                .map(|(pts, layout)| (pts, layout.samples_in_bytes(buffer.size())));
            let out = self.place(&mut state, Input::Buffer(buffer), Kind::Audio)?;
            if let (Some(span), true) = (span, out.data.is_some()) {
                Self::note_arrival(&mut state, span);
            }
            out
        };
        self.push_output(out)
    }

    /// Times the arrival of a real buffer (its pts and samples), which
    /// just moved the output, for `Reach`.
    fn note_arrival(state: &mut State, (pts, n): (gst::ClockTime, u64)) {
        let (Some((clock, base)), Some(timeline), Some(segment)) =
            (&state.clock, &state.timeline, &state.segment)
        else {
            return;
        };
        let duration = timeline.layout().samples_to_time(n);
        let (Some(start), Some(end)) = (
            segment.to_running_time(pts),
            segment.to_running_time(timeline.end()),
        ) else {
            return;
        };
        let arrival = state
            .reach
            .times_next()
            .then(|| clock.time().checked_sub(*base))
            .flatten();
        gst::trace!(
            CAT,
            "data from {start} to {end} arrived at running time {arrival:?}"
        );
        state.reach.note(start, duration, end, arrival);
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
                state.reach = Reach::default();
                state.wake_task(&self.cond);
                drop(state);
                return self.srcpad.push_event(event);
            }
            EventView::Caps(c) => return self.set_caps(c.caps(), event.clone()),
            EventView::Segment(s) => return self.set_segment(s.segment(), event.clone()),
            EventView::Gap(g) => {
                let (timestamp, duration) = g.get();
                let settings = self.settings();
                let _push = self.push_guard();
                let out = {
                    let mut state = self.state();
                    let n = match (duration, state.layout.as_ref()) {
                        (Some(duration), Some(layout)) if state.segment.is_some() => {
                            layout.time_to_samples(duration)
                        }
                        // Nothing to turn into samples: the GAP goes on as it is.
                        _ => {
                            drop(state);
                            return self.srcpad.push_event(event);
                        }
                    };
                    if duration.is_some_and(|d| d > settings.max_gap) {
                        // Not filled: the stream resumes after it, as after
                        // a jump, and downstream learns of the gap itself.
                        let resume = timestamp.saturating_add(duration.unwrap());
                        let warning = self.warning(
                            "A GAP event longer than max-gap: resynchronised instead of filling",
                            &format!(
                                "gap of {} at {timestamp}, max-gap is {}",
                                duration.unwrap(),
                                settings.max_gap
                            ),
                        );
                        match state.timeline.as_ref() {
                            Some(timeline) => state.timeline = Some(timeline.continue_at(resume)),
                            None => {
                                state.ensure_timeline(Some(resume));
                            }
                        }
                        state.discont = true;
                        state.stats.resyncs += 1;
                        drop(state);
                        let _ = self.obj().post_message(warning);
                        return self.srcpad.push_event(event);
                    }
                    self.place(
                        &mut state,
                        Input::Silence { pts: timestamp, n },
                        Kind::Silence,
                    )
                };
                return match out {
                    Ok(out) => {
                        let _ = self.push_output(out);
                        true
                    }
                    Err(_) => false,
                };
            }
            EventView::Eos(_) => return self.eos(event),
            _ => {}
        }
        if event.is_serialized() {
            let _push = self.push_guard();
            self.srcpad.push_event(event)
        } else {
            self.srcpad.push_event(event)
        }
    }

    fn set_caps(&self, caps: &gst::CapsRef, event: gst::Event) -> bool {
        let layout = match Layout::from_caps(caps) {
            Ok(layout) => layout,
            Err(err) => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("Unsupported audio format: {}", err),
                    ["caps {caps}"]
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
            state.silence = Some(Arc::new(SilenceSource::new(
                &layout,
                Self::chunk_samples(&layout, &settings),
            )));
            state.layout = Some(layout);
            state.wake_task(&self.cond);
        }
        drop(state);
        self.srcpad.push_event(event)
    }

    /// A new segment continues the timeline in running time: a hole between
    /// the old segment's end and the new one's start is filled (up to
    /// `max-gap`) in the old segment, an overlap trims what follows.
    fn set_segment(&self, segment: &gst::Segment, event: gst::Event) -> bool {
        let segment = match segment.clone().downcast::<gst::ClockTime>() {
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
        if segment.rate() < 0.0 {
            gst::element_imp_error!(
                self,
                gst::StreamError::NotImplemented,
                ("Reverse playback is not supported"),
                [
                    "segment rate {}: a stall filler keeps time moving forward",
                    segment.rate()
                ]
            );
            return false;
        }
        let settings = self.settings();
        let _push = self.push_guard();
        let mut state = self.state();
        if state.segment.as_ref() == Some(&segment) {
            drop(state);
            return self.srcpad.push_event(event);
        }
        let mut out = Output::default();
        let continued = match (state.segment.as_ref(), state.timeline.as_ref()) {
            (Some(old), Some(timeline)) => {
                let end_rt = old.to_running_time(timeline.end());
                let start_rt = segment
                    .start()
                    .and_then(|start| segment.to_running_time(start));
                match (end_rt, start_rt) {
                    (Some(end_rt), Some(start_rt)) => {
                        let hole = start_rt.saturating_sub(end_rt);
                        if !hole.is_zero()
                            && hole <= settings.max_gap
                            && let Some(until) = old.position_from_running_time(start_rt)
                        {
                            let n = timeline.samples_until(until);
                            Self::emit_silence(&mut state, &settings, n, &mut out);
                        }
                        let end_rt = end_rt.max(start_rt);
                        segment
                            .position_from_running_time(end_rt)
                            .map(|origin| state.timeline.as_ref().unwrap().continue_at(origin))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        gst::debug!(
            CAT,
            imp = self,
            "new segment {segment:?}, timeline {}",
            if continued.is_some() {
                "continues"
            } else {
                "restarts"
            }
        );
        let keep_stall = state.stall_since;
        state.reset_stream();
        if continued.is_some() {
            state.stall_since = keep_stall;
        }
        state.timeline = continued;
        state.segment = Some(segment);
        state.wake_task(&self.cond);
        drop(state);
        let _ = self.push_output(out);
        self.srcpad.push_event(event)
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
            q.set(
                live,
                min.saturating_add(threshold),
                max.map(|max| max.saturating_add(threshold)),
            );
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
        self.query_upstream();
    }

    /// Asks upstream whether it is live and its latency, and keeps the
    /// answer. An upstream that does not answer keeps what it said before,
    /// or is not live if it never said.
    fn query_upstream(&self) {
        let mut q = gst::query::Latency::new();
        let answer = self.sinkpad.peer_query(&mut q).then(|| {
            let (live, min_latency, _) = q.result();
            Upstream { live, min_latency }
        });
        let mut state = self.state();
        match answer {
            Some(upstream) => state.upstream = Some(upstream),
            None => {
                state.upstream.get_or_insert(Upstream {
                    live: false,
                    min_latency: gst::ClockTime::ZERO,
                });
            }
        }
    }

    fn src_activate(&self, active: bool) -> Result<(), gst::LoggableError> {
        let shared = self.settings().shared_threads;
        if active {
            let mut state = self.state();
            state.task_stop = false;
            let this = self.ref_counted();
            if shared {
                state.turn = Some(Arc::new(move || {
                    let this = this.clone();
                    FILLERS.submit(move || this.turn());
                }));
                state.turn_queued = false;
                state.kick(&self.cond);
                return Ok(());
            }
            drop(state);
            self.srcpad
                .start_task(move || this.fill_loop())
                .map_err(|err| gst::loggable_error!(CAT, "failed to start the fill task: {err}"))
        } else {
            let turn = {
                let mut state = self.state();
                state.task_stop = true;
                state.flushing = true;
                state.wake_task(&self.cond);
                state.turn.take()
            };
            // The element's reference in it goes outside the lock.
            drop(turn);
            if shared {
                return Ok(());
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
            .field("resyncs", stats.resyncs)
            .field("partial-frame-bytes", stats.partial_frame_bytes)
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for StallFiller {
    const NAME: &'static str = "GstStallFiller";
    /// callrecsink links this crate and makes its tracks' fillers from its
    /// own copy of the type (`StallFiller::new`); with the stallfiller
    /// plugin loaded too, the second copy registers under a suffixed name
    /// instead of failing.
    const ALLOW_NAME_CONFLICT: bool = true;
    type Type = super::StallFiller;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|_pad, parent, buffer| {
                callaudio::sync::chain_guarded(parent, |filler: &super::StallFiller| {
                    filler.imp().chain(buffer)
                })
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
            embedded: OnceLock::new(),
            embedded_linked: AtomicBool::new(false),
            relinked: AtomicBool::new(false),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
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
                    .maximum(MAX_THRESHOLD.nseconds())
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
                glib::ParamSpecUInt64::builder("max-gap")
                    .nick("Max gap")
                    .blurb(
                        "Longest hole (ns) in the input's timestamps that is filled with silence; a \
                         longer forward jump resynchronises the output (DISCONT, a WARNING, counted \
                         in stats as resyncs). Also bounds the tail padded at EOS",
                    )
                    .minimum(gst::ClockTime::MSECOND.nseconds())
                    .maximum(MAX_MAX_GAP.nseconds())
                    .default_value(DEFAULT_MAX_GAP.nseconds())
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
                         longest-stall (ns), resyncs, partial-frame-bytes",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecBoolean::builder("shared-threads")
                    .nick("Shared threads")
                    .blurb(
                        "Fill stalls from a few worker threads shared by every stallfiller of the \
                         process instead of a task (a thread) of its own: for processes with \
                         thousands of streams (callrecsink sets it). A fill that blocks downstream \
                         holds a worker and the next fill starts another",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "threshold" => {
                settings.threshold = callaudio::clock_time_of(value.get().unwrap());
                drop(settings);
                self.state().wake_task(&self.cond);
                // Our latency changed with it: let the pipeline redistribute.
                let _ = self
                    .obj()
                    .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
            }
            "fill-chunk" => settings.fill_chunk = callaudio::clock_time_of(value.get().unwrap()),
            "tolerance" => settings.tolerance = callaudio::clock_time_of(value.get().unwrap()),
            "max-gap" => settings.max_gap = callaudio::clock_time_of(value.get().unwrap()),
            "post-messages" => settings.post_messages = value.get().unwrap(),
            "shared-threads" => settings.shared_threads = value.get().unwrap(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        match pspec.name() {
            "threshold" => settings.threshold.nseconds().to_value(),
            "fill-chunk" => settings.fill_chunk.nseconds().to_value(),
            "tolerance" => settings.tolerance.nseconds().to_value(),
            "max-gap" => settings.max_gap.nseconds().to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "shared-threads" => settings.shared_threads.to_value(),
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
                env!("CARGO_PKG_AUTHORS"),
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
            let obj = self.obj();
            let clock = obj.clock().zip(obj.base_time());
            let mut state = self.state();
            state.clock = clock;
            state.playing = true;
            state.wake_task(&self.cond);
        }
        Ok(success)
    }
}

/// Any interleaved raw audio, and the two G.711 encodings SIP audio comes
/// in, within the rates and channel counts every element of this set bounds.
fn audio_caps() -> gst::Caps {
    Layout::template_caps()
}
