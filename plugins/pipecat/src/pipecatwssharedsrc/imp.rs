// SPDX-License-Identifier: MPL-2.0
//! `pipecatwssharedsrc`: the bot's audio, pushed by threads every shared
//! source of the process shares, with no streaming thread of its own.
//!
//! `pipecatwsrc` hands every message from the thread that reads the socket
//! to its own streaming thread: at a thousand bot legs that is a thousand
//! threads and two thread switches per 20 ms message, which cost more than
//! everything else the source does. This source queues itself for one
//! pusher thread shared by all (`pushers.rs`), as gst-plugins-rs'
//! threadshare elements push from their context's thread; under load that
//! thread is woken once per batch of messages, not per message.
//! Downstream should not block: `appsink`, a sink with `sync=false`,
//! `callrecsink` (it waits only on a stalled disk, bounded by its
//! `finalize-timeout`), or a `queue`. One that does holds only its own
//! call: after `pushers::RESCUE_AFTER` another pusher takes the others.
//! A push longer than `BLOCKED_PUSH` is reported with a WARNING on the bus,
//! once per element; one that lasts `pushers::CUT_OFF` ends its own call
//! with an ERROR (and a FLUSH_START from its pad, which frees a sink that
//! honours flushes).
//!
//! It pushes only while PLAYING: what arrives before waits in the bounded
//! inbox, as in `pipecatwsrc`. The end of the connection reaches the bus
//! as there: a hang-up is EOS (or an ERROR with `on-close=error`), any
//! other end an ERROR that names the cause, then EOS, at once.
//!
//! Lock order: `turn`, then `state`, then the connection's mailbox;
//! `settings` is taken alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, TryLockError};
use std::time::{Duration, Instant};

use callaudio::sync::lock;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::bot_audio::{self, SourceSettings};
use crate::common::{self, LinkSettings};
use crate::connection::{self, CAT, Connection, End, Next, Use};
use crate::inbox::{Chunk, Limits};
use crate::wire::serializer::Format;

use super::pushers;

/// A push longer than this is downstream blocking: said once per element.
const BLOCKED_PUSH: Duration = Duration::from_millis(50);
/// The most messages' room the batch keeps between pushes: one message is
/// the usual batch, a few when the thread fell behind.
const KEPT_BATCH: usize = 16;
/// What to do about a downstream that holds a shared push thread.
const BLOCKING_ADVICE: &str = "pipecatwssharedsrc pushes every call's audio from threads they share; follow it with elements that do not block (a queue, appsink, callrecsink, a sink with sync=false), or use pipecatwsrc";

/// The source whose pad `pad` is, if it still is.
fn source_of(pad: &gst::Pad) -> Option<super::PipecatWsSharedSrc> {
    pad.parent()?.downcast::<super::PipecatWsSharedSrc>().ok()
}

#[derive(Debug, Clone, Default)]
struct Settings {
    link: LinkSettings,
    source: SourceSettings,
}

#[derive(Default)]
struct State {
    connection: Option<Arc<Use>>,
    /// What went downstream of the stream's sticky events.
    stream_started: bool,
    segment_sent: bool,
    /// The format the caps were last set for, and whether they are the
    /// wire's G.711.
    format: Option<Format>,
    coded_out: bool,
    /// Downstream asked to renegotiate.
    reconfigure: bool,
    /// Where the next buffer may start at the earliest.
    next_pts: gst::ClockTime,
    /// Something went downstream (audio, or the GAP for silence).
    announced: bool,
    announce_timer: Option<tokio::task::JoinHandle<()>>,
    /// When the bot's last audio arrived (or PLAYING began), whether its
    /// silence since was reported (`response-timeout`), and the timer that
    /// looks.
    last_audio: Option<Instant>,
    warned_silent: bool,
    silence_timer: Option<tokio::task::JoinHandle<()>>,
    warned_blocked: bool,
    limits: Option<Limits>,
    /// The pipeline's clock and base time while PLAYING: looked up once,
    /// not per message (both change only through a state change).
    clock: Option<(gst::Clock, gst::ClockTime)>,
}

pub struct PipecatWsSharedSrc {
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Held by the pusher pushing for this element (a held pusher and the
    /// one that took its place may both try). It holds the batch being
    /// pushed, kept to reuse its allocation.
    turn: Mutex<Vec<Chunk>>,
    /// Something arrived while another thread had the turn.
    pending: AtomicBool,
    /// Queued for a pusher (`pushers::schedule`), which has not begun yet.
    queued: AtomicBool,
    /// Outside `state`, beside `turn` and `pending`, so a message that
    /// finds nothing to do touches one cache line of this element.
    playing: AtomicBool,
    /// The stream ended (EOS or an error): nothing more goes out.
    done: AtomicBool,
    /// `latency` passed in PLAYING with nothing from the bot: send a GAP.
    announce_due: AtomicBool,
    /// The id of the connection the element started with (0 when
    /// stopped): a pusher of an earlier one, still running as the element
    /// restarts, pushes nothing.
    current: AtomicU64,
}

impl PipecatWsSharedSrc {
    fn send(&self, what: common::Outgoing) -> bool {
        let conn = lock(&self.state).connection.clone();
        common::send_outgoing(self.obj().upcast_ref(), conn.as_deref(), what)
    }

    /// Pushes what there is to push from `conn`, unless another thread is
    /// at it (it then pushes this too). The one entry to the data path.
    fn wake(&self, conn: &Connection) {
        self.pending.store(true, Ordering::Release);
        loop {
            let mut turn = match self.turn.try_lock() {
                Ok(turn) => turn,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            if !self.pending.swap(false, Ordering::AcqRel) {
                return;
            }
            // This runs on the shared runtime: a panic here would end the
            // reader of this connection without a word.
            let pushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.push_what_arrived(conn, &mut turn)
            }));
            // Whatever a panic left in the batch is not pushed later; and a
            // backlog's worth of room (a hostile bot's tiny frames can make
            // thousands) is not kept for every message after it.
            turn.clear();
            if turn.capacity() > KEPT_BATCH {
                *turn = Vec::new();
            }
            if pushed.is_err() {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("Internal error in pipecatwssharedsrc: this call's bot audio ended"),
                    ["a panic while pushing; see the log"]
                );
                self.finish_stream();
            }
            drop(turn);
            if !self.pending.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Has a pusher push what there is, once however often this is called
    /// before it begins: from the reader, a timer, the start of PLAYING.
    /// (`wake` marks it pending when the pusher begins.)
    fn schedule(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            pushers::schedule(&self.srcpad);
        }
    }

    /// On a pusher: `wake` for the connection the element started with, if
    /// it still has one.
    fn wake_own(&self) {
        self.queued.store(false, Ordering::Release);
        let conn = lock(&self.state).connection.clone();
        if let Some(conn) = conn {
            self.wake(&conn);
        }
    }

    /// Pushes what `conn` holds (what arrived up to now), as one batch: one
    /// lock of its mailbox, and one of `state` when the batch is one
    /// message, as it is unless the thread fell behind.
    fn push_what_arrived(&self, conn: &Connection, batch: &mut Vec<Chunk>) {
        if !self.playing.load(Ordering::Acquire)
            || self.done.load(Ordering::Acquire)
            || self.current.load(Ordering::Acquire) != conn.id()
        {
            return;
        }
        // Deactivating the pad waits for this lock: nothing is pushed once
        // the element stops.
        let _stream = self.srcpad.stream_lock();
        let (after, dropped) = conn.take_all(batch);
        if !dropped.is_empty()
            && let Some(limits) = lock(&self.state).limits
        {
            bot_audio::warn_dropped(self.obj().upcast_ref(), dropped, limits);
        }
        // Audio, if any, does what the GAP would.
        if self.announce_due.swap(false, Ordering::AcqRel)
            && batch.is_empty()
            && !lock(&self.state).announced
        {
            self.announce_silence();
        }
        for chunk in batch.drain(..) {
            if !self.push_audio(chunk) {
                return;
            }
        }
        if let Some(Next::End(end)) = after {
            self.ended(end);
        }
    }

    fn push_audio(&self, chunk: Chunk) -> bool {
        let format = chunk.audio.format();
        let now = Instant::now();
        let (pts, renegotiate, coded_out) = {
            let mut state = lock(&self.state);
            let running = state
                .clock
                .as_ref()
                .and_then(|(clock, base)| clock.time().checked_sub(*base));
            let pts = bot_audio::stamp(running, now, &chunk, &mut state.next_pts);
            state.announced = true;
            state.last_audio = Some(chunk.arrival);
            state.warned_silent = false;
            let renegotiate =
                state.format != Some(format) || std::mem::take(&mut state.reconfigure);
            (pts, renegotiate, state.coded_out)
        };
        let coded_out = if renegotiate {
            match self.set_format(format) {
                Some(coded) => coded,
                None => return false,
            }
        } else {
            coded_out
        };
        self.push_buffer(bot_audio::buffer(chunk, pts, coded_out), now)
    }

    /// Sends the stream's start, once.
    fn start_stream(&self) {
        let first = !std::mem::replace(&mut lock(&self.state).stream_started, true);
        if first {
            let id = self.srcpad.create_stream_id(&*self.obj(), None::<&str>);
            self.srcpad
                .push_event(gst::event::StreamStart::builder(&id).build());
        }
    }

    /// Sets the caps for `format` (then the segment, the first time).
    /// Returns whether they are the wire's G.711, or `None` when
    /// downstream refused them (an ERROR is posted).
    fn set_format(&self, format: Format) -> Option<bool> {
        self.start_stream();
        let (caps, coded) = bot_audio::caps_for(&self.srcpad, format);
        gst::debug!(CAT, imp = self, "bot audio is {caps}");
        if !self.srcpad.push_event(gst::event::Caps::new(&caps)) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Downstream does not accept the bot's audio ({})", caps),
                ["the caps event was refused"]
            );
            self.finish_stream();
            return None;
        }
        let first_segment = {
            let mut state = lock(&self.state);
            state.format = Some(format);
            state.coded_out = coded;
            !std::mem::replace(&mut state.segment_sent, true)
        };
        if first_segment {
            // Buffers carry running time, as a live source's do.
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            self.srcpad.push_event(gst::event::Segment::new(&segment));
        }
        Some(coded)
    }

    /// Runs `push` (of a buffer or a serialized event on the pad), which
    /// starts at `started`, under the watchdog's eye, and says once when it
    /// held its pusher long.
    fn watched<T>(&self, started: Instant, push: impl FnOnce(&gst::Pad) -> T) -> T {
        let result = {
            let _watched = pushers::watch_push(&self.srcpad, started);
            push(&self.srcpad)
        };
        let took = started.elapsed();
        if took > BLOCKED_PUSH && !std::mem::replace(&mut lock(&self.state).warned_blocked, true) {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Clock,
                (
                    "Downstream held the shared push thread for {} ms: another thread pushed the other calls meanwhile",
                    took.as_millis()
                ),
                ["{BLOCKING_ADVICE}"]
            );
        }
        result
    }

    fn push_buffer(&self, buffer: gst::Buffer, started: Instant) -> bool {
        let pushed = self.watched(started, |pad| pad.push(buffer));
        match pushed {
            Ok(_) => true,
            // Stopping: the state change ends the stream.
            Err(gst::FlowError::Flushing) => false,
            Err(gst::FlowError::Eos) => {
                self.done.store(true, Ordering::Release);
                false
            }
            Err(err) => {
                // What a base source says when its task stops on a flow error.
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error."),
                    ["streaming stopped, reason {err:?}"]
                );
                self.finish_stream();
                false
            }
        }
    }

    /// The bot has said nothing for `latency`: a GAP lets synchronised
    /// sinks complete the change to PLAYING, when the format is known
    /// (before caps a segment would be misordered).
    fn announce_silence(&self) {
        let settings = lock(&self.settings).clone();
        let Some(format) = bot_audio::known_in_advance(
            settings.link.serializer,
            settings.source.expected.as_ref(),
        ) else {
            return;
        };
        let Some(now) = self.obj().current_running_time() else {
            return;
        };
        if self.set_format(format).is_none() {
            return;
        }
        lock(&self.state).announced = true;
        gst::debug!(
            CAT,
            imp = self,
            "the bot is silent: GAP at {now} so sinks preroll"
        );
        self.watched(Instant::now(), |pad| {
            pad.push_event(gst::event::Gap::builder(now).build())
        });
    }

    fn ended(&self, end: End) {
        if let End::Closed { code, reason } = end {
            let on_close = lock(&self.settings).source.on_close;
            let obj = self.obj();
            bot_audio::report_close(
                obj.upcast_ref(),
                code,
                &reason,
                gst::ClockTime::ZERO,
                on_close,
            );
        }
        // A failure is on the bus already, posted by the connection.
        self.finish_stream();
    }

    /// Ends the stream: EOS, so a recorder downstream finalizes.
    fn finish_stream(&self) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        self.start_stream();
        self.watched(Instant::now(), |pad| pad.push_event(gst::event::Eos::new()));
    }

    /// From the watchdog's thread: a push has held its pusher for
    /// `pushers::CUT_OFF`. This call ends.
    fn cut_off(&self) {
        self.done.store(true, Ordering::Release);
        gst::element_imp_error!(
            self,
            gst::CoreError::Clock,
            (
                "Downstream held the shared push thread for {:?}: this call's bot audio is stopped",
                pushers::CUT_OFF
            ),
            ["{BLOCKING_ADVICE}; a FLUSH_START went downstream to free the thread"]
        );
        self.srcpad.push_event(gst::event::FlushStart::new());
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let handlers = pushers::Handlers {
            push: |pad| {
                if let Some(src) = source_of(pad) {
                    src.imp().wake_own();
                }
            },
            cut_off: |pad| {
                if let Some(src) = source_of(pad) {
                    src.imp().cut_off();
                }
            },
        };
        pushers::watch(&self.srcpad, handlers)
            .map_err(|text| gst::error_msg!(gst::CoreError::Thread, ("{}", text)))?;
        let settings = lock(&self.settings).clone();
        // Returns at once: connecting goes on in the background.
        let conn = bot_audio::open(self.obj().upcast_ref(), &settings.link, &settings.source)?;
        // The pad, not the element: a strong reference to the element
        // would keep it alive through its own connection.
        conn.set_pusher(Some(connection::Pusher {
            pad: self.srcpad.clone(),
            push: |pad, _| {
                if let Some(src) = source_of(pad) {
                    src.imp().schedule();
                }
            },
        }));
        self.done.store(false, Ordering::Release);
        self.announce_due.store(false, Ordering::Release);
        self.current.store(conn.id(), Ordering::Release);
        *lock(&self.state) = State {
            limits: Some(settings.source.limits()),
            connection: Some(Arc::new(conn)),
            ..State::default()
        };
        Ok(())
    }

    fn play(&self) {
        let settings = lock(&self.settings).source.clone();
        let obj = self.obj().clone();
        let announce = crate::runtime::spawn_after(
            Duration::from_nanos(settings.latency.nseconds()),
            move || {
                obj.imp().announce_due.store(true, Ordering::Release);
                obj.imp().schedule();
            },
        );
        let silence = (!settings.response_timeout.is_zero()).then(|| {
            let obj = self.obj().clone();
            crate::runtime::spawn(async move {
                obj.imp().watch_silence(settings.response_timeout).await
            })
        });
        let obj = self.obj();
        let clock = obj.clock().zip(obj.base_time());
        {
            let mut state = lock(&self.state);
            self.playing.store(true, Ordering::Release);
            state.clock = clock;
            state.last_audio.get_or_insert_with(Instant::now);
            if let Some(old) = state.announce_timer.replace(announce) {
                old.abort();
            }
            if let Some(old) = std::mem::replace(&mut state.silence_timer, silence) {
                old.abort();
            }
        }
        // What waited for PLAYING goes out from a pusher, not from this
        // thread: a state change never pushes.
        self.schedule();
    }

    /// `response-timeout`: a WARNING when the bot has sent no audio that
    /// long, once per silent stretch. One timer per source, moved on only
    /// when it fires, not per message.
    async fn watch_silence(&self, timeout: gst::ClockTime) {
        let timeout = Duration::from_nanos(timeout.nseconds());
        let mut due = Instant::now() + timeout;
        loop {
            tokio::time::sleep_until(due.into()).await;
            let warn = {
                if !self.playing.load(Ordering::Acquire) || self.done.load(Ordering::Acquire) {
                    return;
                }
                let mut state = lock(&self.state);
                let quiet_until = state.last_audio.unwrap_or_else(Instant::now) + timeout;
                let now = Instant::now();
                if quiet_until > now {
                    // Audio came meanwhile: look when its silence would be due.
                    due = quiet_until;
                    false
                } else {
                    due = now + timeout;
                    !std::mem::replace(&mut state.warned_silent, true)
                }
            };
            if warn {
                let obj = self.obj();
                bot_audio::warn_silent(
                    obj.upcast_ref(),
                    gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
                );
            }
        }
    }

    fn stop(&self) {
        pushers::forget(&self.srcpad);
        let (timers, conn) = {
            let mut state = lock(&self.state);
            self.playing.store(false, Ordering::Release);
            self.current.store(0, Ordering::Release);
            (
                [state.announce_timer.take(), state.silence_timer.take()],
                state.connection.take(),
            )
        };
        for timer in timers.into_iter().flatten() {
            timer.abort();
        }
        // Letting go of our use closes the socket if nobody else uses it.
        if let Some(conn) = conn {
            conn.set_pusher(None);
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            q.set(
                true,
                lock(&self.settings).source.latency,
                gst::ClockTime::NONE,
            );
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Reconfigure(_) => {
                lock(&self.state).reconfigure = true;
                true
            }
            // Live: nothing to seek in.
            gst::EventView::Seek(_) => false,
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for PipecatWsSharedSrc {
    const NAME: &'static str = "GstPipecatWsSharedSrc";
    type Type = super::PipecatWsSharedSrc;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .query_function(|pad, parent, query| {
                PipecatWsSharedSrc::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .event_function(|pad, parent, event| {
                PipecatWsSharedSrc::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(pad, event),
                )
            })
            .build();
        PipecatWsSharedSrc {
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            turn: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            playing: AtomicBool::new(false),
            done: AtomicBool::new(false),
            announce_due: AtomicBool::new(false),
            current: AtomicU64::new(0),
        }
    }
}

impl ObjectImpl for PipecatWsSharedSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = LinkSettings::properties();
            props.extend(SourceSettings::properties());
            props
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        let known = s.link.set(pspec.name(), value) || s.source.set(pspec.name(), value);
        assert!(known, "unknown property {}", pspec.name());
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        s.link
            .get(pspec.name())
            .or_else(|| s.source.get(pspec.name()))
            .unwrap_or_else(|| unreachable!("unknown property {}", pspec.name()))
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            common::send_signals::<super::PipecatWsSharedSrc>(|obj, what| obj.imp().send(what))
        });
        SIGNALS.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.srcpad).unwrap();
        obj.set_element_flags(gst::ElementFlags::SOURCE);
    }
}

impl GstObjectImpl for PipecatWsSharedSrc {}

impl ElementImpl for PipecatWsSharedSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Pipecat WebSocket source on shared threads",
                "Source/Audio/Network",
                "Outputs a Pipecat bot's audio as pipecatwsrc does, pushed from the thread shared by \
                 every WebSocket instead of a thread of its own: downstream must not block",
                env!("CARGO_PKG_AUTHORS"),
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| vec![bot_audio::src_template()]);
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => {
                if let Err(err) = self.start() {
                    // Whatever the start had taken is let go.
                    self.stop();
                    self.post_error_message(err);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PlayingToPaused => self.playing.store(false, Ordering::Release),
            _ => {}
        }
        let result = self.parent_change_state(transition);
        match transition {
            // Deactivating the pad (in the parent) waited for any push.
            gst::StateChange::PausedToReady => self.stop(),
            gst::StateChange::ReadyToPaused if result.is_err() => self.stop(),
            gst::StateChange::PausedToPlaying if result.is_ok() => self.play(),
            _ => {}
        }
        match (transition, result?) {
            (gst::StateChange::ReadyToPaused | gst::StateChange::PlayingToPaused, _) => {
                Ok(gst::StateChangeSuccess::NoPreroll)
            }
            (_, success) => Ok(success),
        }
    }
}
