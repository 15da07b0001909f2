// SPDX-License-Identifier: MPL-2.0
//! `pipecatwsrc`: a live source of the bot's audio.
//!
//! Caps are set only once the format is known: at the bot's first audio, or
//! at start when the serializer's wire fixes it (every telephony wire is
//! 8 kHz mono). Never a placeholder fixated from the template: a stock
//! encoder downstream would take it and then refuse the real one.
//!
//! `create()` waits on the connection's inbox, never on a timer: it wakes
//! for audio, for the end of the connection (and says why), and for
//! `unlock()`. A clean hang-up pushes everything received, then EOS.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use callaudio::sync::lock;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use crate::bot_audio::{self, SourceSettings};
use crate::common::{self, LinkSettings};
use crate::connection::{CAT, End, Next, Use};
use crate::inbox::Chunk;
use crate::wire::serializer::Format;
use crate::wire::trim::SilenceHold;

/// Longer than Pipecat's default end silence (2 s), and a hold that long
/// is what bounds how late silence may be.
const MAX_TRIM_END_SILENCE: gst::ClockTime = gst::ClockTime::from_seconds(10);

#[derive(Debug, Clone, Default)]
struct Settings {
    link: LinkSettings,
    source: SourceSettings,
    trim_end_silence: gst::ClockTime,
}

struct State {
    connection: Option<std::sync::Arc<Use>>,
    /// Pure silence held back for `trim-end-silence`.
    hold: SilenceHold,
    /// The format the caps were last set for.
    format: Option<Format>,
    /// Whether buffers go out in the wire's G.711 rather than S16LE.
    coded_out: bool,
    /// Where the next buffer may start at the earliest: bursts play in order.
    next_pts: gst::ClockTime,
    /// A `pipecat-agent-silent` warning was posted for the current silence.
    warned_silent: bool,
    /// Something went downstream (audio, or the GAP that lets sinks
    /// preroll while the bot says nothing).
    announced: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            connection: None,
            hold: SilenceHold::new(gst::ClockTime::ZERO),
            format: None,
            coded_out: false,
            next_pts: gst::ClockTime::ZERO,
            warned_silent: false,
            announced: false,
        }
    }
}

#[derive(Default)]
pub struct PipecatWsSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

impl PipecatWsSrc {
    /// `send-message` and `send-text`.
    fn send(&self, what: common::Outgoing) -> bool {
        let conn = lock(&self.state).connection.clone();
        common::send_outgoing(self.obj().upcast_ref(), conn.as_deref(), what)
    }

    fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    fn connection(&self) -> Option<std::sync::Arc<Use>> {
        lock(&self.state).connection.clone()
    }

    /// Sets the caps for `format`, as downstream prefers them now.
    fn use_format(&self, format: Format) -> Result<(), gst::FlowError> {
        let (caps, coded) = bot_audio::caps_for(self.obj().src_pad(), format);
        gst::debug!(CAT, imp = self, "bot audio is {caps}");
        self.obj()
            .set_caps(&caps)
            .map_err(|_| gst::FlowError::NotNegotiated)?;
        let mut state = lock(&self.state);
        state.format = Some(format);
        state.coded_out = coded;
        Ok(())
    }

    fn buffer_for(&self, chunk: Chunk) -> Result<gst::Buffer, gst::FlowError> {
        let format = chunk.audio.format();
        let running = self.obj().current_running_time();
        let (pts, new_format) = {
            let mut state = lock(&self.state);
            let pts = bot_audio::stamp(
                running,
                std::time::Instant::now(),
                &chunk,
                &mut state.next_pts,
            );
            state.warned_silent = false;
            state.announced = true;
            (pts, state.format != Some(format))
        };
        if new_format {
            self.use_format(format)?;
        }
        let coded_out = lock(&self.state).coded_out;
        Ok(bot_audio::buffer(chunk, pts, coded_out))
    }

    /// The bot has said nothing yet: one GAP lets synchronised sinks preroll,
    /// so the pipeline reaches PLAYING while the bot is silent. Pushed after
    /// the stream's segment (the base class sends its own only with the
    /// first buffer, and the same one). Downstream that needs caps first
    /// (an encoder) waits for the bot's first audio, which brings them.
    /// Only once the caps are known (a telephony wire: at start): before
    /// them a segment, and so a GAP, would be misordered.
    fn announce_silence(&self) {
        let known = {
            let mut state = lock(&self.state);
            state.announced = true;
            state.format.is_some()
        };
        // Without caps a segment (and so a GAP) would be misordered.
        if !known {
            return;
        }
        let obj = self.obj();
        let pad = obj.src_pad();
        let Some(now) = obj.current_running_time() else {
            return;
        };
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        gst::debug!(
            CAT,
            imp = self,
            "the bot is silent: GAP at {now} so sinks preroll"
        );
        let _ = pad.push_event(gst::event::Segment::new(&segment));
        let _ = pad.push_event(gst::event::Gap::builder(now).build());
    }

    fn ended(&self, end: End, settings: &Settings) -> gst::FlowError {
        match end {
            End::Closed { code, reason } => {
                // What is still held is the bot's end silence.
                let trimmed = lock(&self.state).hold.trim();
                let obj = self.obj();
                if bot_audio::report_close(
                    obj.upcast_ref(),
                    code,
                    &reason,
                    trimmed,
                    settings.source.on_close,
                ) {
                    return self.failed_with_error_posted();
                }
                gst::FlowError::Eos
            }
            // Already on the bus, posted by the connection when it happened.
            End::Failed { .. } => self.failed_with_error_posted(),
        }
    }

    /// Ends the stream after our ERROR, which names the cause, is on the
    /// bus: downstream gets its EOS (a recorder finalizes), and the base
    /// class is told "flushing", so it stops without posting a second,
    /// generic "Internal data stream error" that says nothing.
    fn failed_with_error_posted(&self) -> gst::FlowError {
        self.obj().src_pad().push_event(gst::event::Eos::new());
        gst::FlowError::Flushing
    }
}

#[glib::object_subclass]
impl ObjectSubclass for PipecatWsSrc {
    // The default object name comes from the type name: pipecatwsrc0.
    const NAME: &'static str = "GstPipecatWsrc";
    type Type = super::PipecatWsSrc;
    type ParentType = gst_base::PushSrc;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for PipecatWsSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = LinkSettings::properties();
            props.extend(SourceSettings::properties());
            props.extend([
                glib::ParamSpecUInt64::builder("trim-end-silence")
                    .nick("Trim end silence")
                    .blurb("Hold back pure silence up to this long (ns, 0 = off, at most 10 s) and drop it when the bot then closes cleanly: Pipecat's end silence (audio_out_end_silence_secs) stays out of a recording. Silence is late by up to this long: for recording legs, not live playback")
                    .maximum(MAX_TRIM_END_SILENCE.nseconds())
                    .default_value(0)
                    .mutable_ready()
                    .build(),
            ]);
            props
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        if s.link.set(pspec.name(), value) || s.source.set(pspec.name(), value) {
            return;
        }
        let ns = || callaudio::clock_time_of(value.get::<u64>().unwrap());
        match pspec.name() {
            "trim-end-silence" => s.trim_end_silence = ns(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        if let Some(v) = s
            .link
            .get(pspec.name())
            .or_else(|| s.source.get(pspec.name()))
        {
            return v;
        }
        match pspec.name() {
            "trim-end-silence" => s.trim_end_silence.nseconds().to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            common::send_signals::<super::PipecatWsSrc>(|obj, what| obj.imp().send(what))
        });
        SIGNALS.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
        obj.set_do_timestamp(false);
    }
}

impl GstObjectImpl for PipecatWsSrc {}

impl ElementImpl for PipecatWsSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Pipecat WebSocket source",
                "Source/Audio/Network",
                "Outputs a Pipecat bot's audio from its WebSocket; a hang-up is EOS, any other end an \
                 error that names the cause, at once",
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
}

impl BaseSrcImpl for PipecatWsSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings();
        // Returns at once: connecting goes on in the background and create()
        // waits for it, so stopping the pipeline never waits for the bot.
        let conn = bot_audio::open(self.obj().upcast_ref(), &settings.link, &settings.source)?;
        *lock(&self.state) = State {
            connection: Some(std::sync::Arc::new(conn)),
            hold: SilenceHold::new(settings.trim_end_silence),
            ..State::default()
        };
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Letting go of our use closes the socket if nobody else uses it.
        lock(&self.state).connection = None;
        Ok(())
    }

    /// No caps until the format is known (see the top of this file); once
    /// it is, a RECONFIGURE from downstream gets the caps it prefers now.
    fn negotiate(&self) -> Result<(), gst::LoggableError> {
        let known = lock(&self.state).format;
        let settings = self.settings();
        let format = known.or_else(|| {
            bot_audio::known_in_advance(settings.link.serializer, settings.source.expected.as_ref())
        });
        match format {
            Some(format) => self
                .use_format(format)
                .map_err(|_| gst::loggable_error!(CAT, "downstream refused {format:?}")),
            None => Ok(()),
        }
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(conn) = self.connection() {
            conn.set_flushing(true);
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(conn) = self.connection() {
            conn.set_flushing(false);
        }
        Ok(())
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            q.set(true, self.settings().source.latency, gst::ClockTime::NONE);
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }
}

impl PushSrcImpl for PipecatWsSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let settings = self.settings();
        let conn = self.connection().ok_or(gst::FlowError::Flushing)?;
        let response_timeout = (!settings.source.response_timeout.is_zero())
            .then(|| Duration::from_nanos(settings.source.response_timeout.nseconds()));
        loop {
            let (announced, ready, hold_left) = {
                let mut state = lock(&self.state);
                (state.announced, state.hold.next(), state.hold.wait_left())
            };
            if let Some(chunk) = ready {
                return Ok(CreateSuccess::NewBuffer(self.buffer_for(chunk)?));
            }
            // Until something went downstream, wait only `latency` before
            // announcing the silence with a GAP; held silence waits no
            // longer than its hold.
            let timeout = if announced {
                response_timeout
            } else {
                Some(Duration::from_nanos(settings.source.latency.nseconds()))
            };
            let timeout = match (timeout, hold_left) {
                (Some(t), Some(h)) => Some(t.min(h)),
                (t, h) => t.or(h),
            }
            .map(|t| t.max(Duration::from_millis(1)));
            let (next, dropped) = conn.next(timeout);
            bot_audio::warn_dropped(self.obj().upcast_ref(), dropped, settings.source.limits());
            match next {
                Next::Audio(chunk) => lock(&self.state).hold.push(chunk),
                Next::Flushing => return Err(gst::FlowError::Flushing),
                Next::End(end) => return Err(self.ended(end, &settings)),
                Next::TimedOut if hold_left.is_some() => {
                    lock(&self.state).hold.expire(std::time::Instant::now())
                }
                Next::TimedOut if !announced => self.announce_silence(),
                Next::TimedOut => {
                    let mut state = lock(&self.state);
                    if !std::mem::replace(&mut state.warned_silent, true) {
                        drop(state);
                        let obj = self.obj();
                        bot_audio::warn_silent(obj.upcast_ref(), settings.source.response_timeout);
                    }
                }
            }
        }
    }
}

impl URIHandlerImpl for PipecatWsSrc {
    const URI_TYPE: gst::URIType = gst::URIType::Src;

    fn protocols() -> &'static [&'static str] {
        common::URI_PROTOCOLS
    }

    fn uri(&self) -> Option<String> {
        common::pipecat_uri(self.settings().link.uri.as_deref())
    }

    fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
        let settable: Vec<&str> = common::LINK_URI_PARAMETERS
            .iter()
            .chain(SRC_URI_PARAMETERS)
            .copied()
            .collect();
        common::apply_pipecat_uri(self.obj().upcast_ref(), uri, &settable)
    }
}

/// The source's own settings a `pipecat+` URI may carry.
const SRC_URI_PARAMETERS: &[&str] = &[
    "on-close",
    "response-timeout",
    "max-queue",
    "max-queue-bytes",
    "latency",
    "trim-end-silence",
];
