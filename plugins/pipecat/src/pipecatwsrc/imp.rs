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

use crate::common::{self, LinkSettings};
use crate::connection::{CAT, Connection, End, Next, Use};
use crate::inbox::{Chunk, Limits};
use crate::redact;
use crate::serializer::{self, Format};
use crate::trim::SilenceHold;
use callaudio::g711::Law;

const DEFAULT_MAX_QUEUE: gst::ClockTime = gst::ClockTime::from_seconds(5);
/// 5 s of 48 kHz stereo S16 with room to spare; a bot that declares more
/// bytes per second than that is bounded by bytes before duration.
const DEFAULT_MAX_QUEUE_BYTES: u32 = 2 << 20;
const DEFAULT_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(20);
/// Longer than Pipecat's default end silence (2 s), and a hold that long
/// is what bounds how late silence may be.
const MAX_TRIM_END_SILENCE: gst::ClockTime = gst::ClockTime::from_seconds(10);

#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstPipecatOnClose")]
pub enum OnClose {
    #[default]
    #[enum_value(name = "EOS: the bot hanging up ends the stream", nick = "eos")]
    Eos,
    #[enum_value(name = "Error: the bot hanging up is an error", nick = "error")]
    Error,
}

#[derive(Debug, Clone)]
struct Settings {
    link: LinkSettings,
    on_close: OnClose,
    response_timeout: gst::ClockTime,
    max_queue: gst::ClockTime,
    max_queue_bytes: u32,
    latency: gst::ClockTime,
    trim_end_silence: gst::ClockTime,
    /// The bot's format when the application knows it in advance.
    expected: Option<gst::Caps>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            link: LinkSettings::default(),
            on_close: OnClose::Eos,
            response_timeout: gst::ClockTime::ZERO,
            max_queue: DEFAULT_MAX_QUEUE,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            latency: DEFAULT_LATENCY,
            trim_end_silence: gst::ClockTime::ZERO,
            expected: None,
        }
    }
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

    fn post(&self, s: gst::Structure) {
        callaudio::message::post_element_message(&*self.obj(), s);
    }

    /// Caps for audio of this format: the wire's own G.711 when the wire is
    /// G.711 and downstream prefers it, S16LE otherwise.
    fn caps_for(&self, format: Format) -> (gst::Caps, bool) {
        let raw = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::S16le)
            .rate(format.rate as i32)
            .channels(format.channels as i32)
            .build();
        let Some(law) = format.law else {
            return (raw, false);
        };
        let name = match law {
            Law::Mu => "audio/x-mulaw",
            Law::A => "audio/x-alaw",
        };
        let coded = gst::Caps::builder(name)
            .field("rate", format.rate as i32)
            .field("channels", format.channels as i32)
            .build();
        let peer = self.obj().src_pad().peer_query_caps(None);
        let prefers_coded =
            peer.iter().next().is_some_and(|s| s.name() == name) || !peer.can_intersect(&raw);
        if prefers_coded && peer.can_intersect(&coded) {
            (coded, true)
        } else {
            (raw, false)
        }
    }

    /// Sets the caps for `format`, as downstream prefers them now.
    fn use_format(&self, format: Format) -> Result<(), gst::FlowError> {
        let (caps, coded) = self.caps_for(format);
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
        let duration = chunk.duration();
        let audio = chunk.audio;
        let format = audio.format();
        // Stamped at arrival on the pipeline clock, but never before the end
        // of the previous buffer: a burst of TTS plays out in order.
        let arrival = self.obj().current_running_time().map(|now| {
            now.saturating_sub(gst::ClockTime::from_nseconds(
                chunk.arrival.elapsed().as_nanos() as u64,
            ))
        });
        let (pts, new_format) = {
            let mut state = lock(&self.state);
            let new_format = state.format != Some(format);
            let pts = arrival.unwrap_or(state.next_pts).max(state.next_pts);
            state.next_pts = pts + duration;
            state.warned_silent = false;
            state.announced = true;
            (pts, new_format)
        };
        if new_format {
            self.use_format(format)?;
        }
        let coded_out = lock(&self.state).coded_out;
        let data = if coded_out {
            audio.data
        } else {
            audio.into_s16le()
        };
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(pts);
            b.set_duration(duration);
        }
        Ok(buffer)
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
                gst::info!(
                    CAT,
                    imp = self,
                    "bot hung up ({code}); all received audio was pushed"
                );
                self.post(
                    gst::Structure::builder("pipecat-closed")
                        .field("code", code as u32)
                        .field("reason", reason.as_str())
                        .field("clean", true)
                        .field("trimmed", trimmed)
                        .build(),
                );
                if settings.on_close == OnClose::Error {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Read,
                        ("The Pipecat bot hung up (close code {})", code),
                        ["on-close=error; reason: {reason:?}"]
                    );
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
            props.extend([
                glib::ParamSpecEnum::builder_with_default("on-close", OnClose::Eos)
                    .nick("On close")
                    .blurb("What a clean hang-up by the bot becomes")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("response-timeout")
                    .nick("Response timeout")
                    .blurb("Post a pipecat-agent-silent WARNING when the bot sends no audio this long (ns); 0 = off")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-queue")
                    .nick("Max queue")
                    .blurb("Audio (ns) held while downstream is slow; beyond it the oldest is dropped with a WARNING")
                    .minimum(gst::ClockTime::MSECOND.nseconds())
                    .default_value(DEFAULT_MAX_QUEUE.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-queue-bytes")
                    .nick("Max queue bytes")
                    .blurb("Bytes of the bot's audio held while downstream is slow (each message counts 64 bytes more); beyond it, or beyond max-queue, the oldest is dropped with a WARNING")
                    .minimum(4096)
                    .default_value(DEFAULT_MAX_QUEUE_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Caps>("caps")
                    .nick("Caps")
                    .blurb("The bot's audio when known in advance, e.g. audio/x-raw,rate=16000,channels=1: set at start, so sinks preroll before the bot speaks (protobuf carries the rate only with audio); audio in another format still renegotiates")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("trim-end-silence")
                    .nick("Trim end silence")
                    .blurb("Hold back pure silence up to this long (ns, 0 = off, at most 10 s) and drop it when the bot then closes cleanly: Pipecat's end silence (audio_out_end_silence_secs) stays out of a recording. Silence is late by up to this long: for recording legs, not live playback")
                    .maximum(MAX_TRIM_END_SILENCE.nseconds())
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("latency")
                    .nick("Latency")
                    .blurb("Latency (ns) reported downstream: how late after arrival bot audio may be rendered")
                    .default_value(DEFAULT_LATENCY.nseconds())
                    .mutable_ready()
                    .build(),
            ]);
            props
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        if s.link.set(pspec.name(), value) {
            return;
        }
        let ns = || gst::ClockTime::from_nseconds(value.get::<u64>().unwrap());
        match pspec.name() {
            "on-close" => s.on_close = value.get().unwrap(),
            "response-timeout" => s.response_timeout = ns(),
            "max-queue" => s.max_queue = ns(),
            "max-queue-bytes" => s.max_queue_bytes = value.get().unwrap(),
            "latency" => s.latency = ns(),
            "trim-end-silence" => s.trim_end_silence = ns(),
            "caps" => s.expected = value.get().unwrap(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        if let Some(v) = s.link.get(pspec.name()) {
            return v;
        }
        match pspec.name() {
            "on-close" => s.on_close.to_value(),
            "response-timeout" => s.response_timeout.nseconds().to_value(),
            "max-queue" => s.max_queue.nseconds().to_value(),
            "max-queue-bytes" => s.max_queue_bytes.to_value(),
            "latency" => s.latency.nseconds().to_value(),
            "trim-end-silence" => s.trim_end_silence.nseconds().to_value(),
            "caps" => s.expected.to_value(),
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
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // What a bot may declare (see `serializer::BOT_RATES`), and the
            // telephony wires' G.711.
            let mut caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .rate_range(
                    *serializer::BOT_RATES.start() as i32..=*serializer::BOT_RATES.end() as i32,
                )
                .channels_range(
                    *serializer::BOT_CHANNELS.start() as i32
                        ..=*serializer::BOT_CHANNELS.end() as i32,
                )
                .build();
            {
                let caps = caps.get_mut().unwrap();
                for name in ["audio/x-mulaw", "audio/x-alaw"] {
                    caps.append_structure(
                        gst::Structure::builder(name)
                            .field("rate", 8000)
                            .field("channels", 1)
                            .build(),
                    );
                }
            }
            vec![
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
}

impl BaseSrcImpl for PipecatWsSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings();
        let Some(uri) = settings.link.uri.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ["No uri set for the Pipecat bot"]
            ));
        };
        gst::debug!(
            CAT,
            imp = self,
            "starting with {}",
            redact::redact_uri(&uri)
        );
        if let Some(caps) = settings.expected.as_ref()
            && expected_format(caps).is_none()
        {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "caps {} is not audio a bot may send: audio/x-raw with a rate in 8000..=192000 Hz and 1..=8 channels",
                    caps
                )
            ));
        }
        let obj = self.obj();
        let element: &gst::Element = obj.upcast_ref();
        let conn = Connection::acquire(
            element,
            &settings.link.connection,
            Some((&uri, settings.link.serializer)),
        )
        .map_err(|text| gst::error_msg!(gst::ResourceError::Settings, ("{}", text)))?;
        conn.attach_src(
            element,
            Limits {
                duration: settings.max_queue,
                bytes: settings.max_queue_bytes as usize,
            },
        );
        // Returns at once: connecting goes on in the background and create()
        // waits for it, so stopping the pipeline never waits for the bot.
        conn.connect(&settings.link.connect_config(&uri))
            .map_err(|end| match end {
                End::Failed { text, debug } => {
                    gst::error_msg!(gst::ResourceError::OpenRead, ("{}", text), ["{}", debug])
                }
                End::Closed { .. } => gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ["The Pipecat bot closed at once"]
                ),
            })?;
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
        let format = known
            .or_else(|| settings.link.serializer.wire_format())
            .or_else(|| settings.expected.as_ref().and_then(expected_format));
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
            q.set(true, self.settings().latency, gst::ClockTime::NONE);
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
        let response_timeout = (!settings.response_timeout.is_zero())
            .then(|| Duration::from_nanos(settings.response_timeout.nseconds()));
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
                Some(Duration::from_nanos(settings.latency.nseconds()))
            };
            let timeout = match (timeout, hold_left) {
                (Some(t), Some(h)) => Some(t.min(h)),
                (t, h) => t.or(h),
            }
            .map(|t| t.max(Duration::from_millis(1)));
            let (next, dropped) = conn.next(timeout);
            if !dropped.is_empty() {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Read,
                    (
                        "Downstream is slow: dropped {} of the bot's oldest audio ({} messages)",
                        dropped.duration,
                        dropped.messages
                    ),
                    [
                        "more than max-queue ({}) or max-queue-bytes ({}) was waiting",
                        settings.max_queue,
                        settings.max_queue_bytes
                    ]
                );
            }
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
                        gst::element_imp_warning!(
                            self,
                            gst::ResourceError::Read,
                            (
                                "The Pipecat bot sent no audio for {}",
                                settings.response_timeout
                            ),
                            ["response-timeout; the connection is still open"]
                        );
                        self.post(
                            gst::Structure::builder("pipecat-agent-silent")
                                .field("timeout", settings.response_timeout)
                                .build(),
                        );
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

/// The format `caps` names, if it is raw audio a bot may send: S16LE
/// (protobuf's audio) within the bounds a bot may declare.
fn expected_format(caps: &gst::Caps) -> Option<Format> {
    let s = caps.structure(0)?;
    if s.name() != "audio/x-raw" {
        return None;
    }
    let rate = s.get::<i32>("rate").ok()? as u32;
    let channels = s.get::<i32>("channels").unwrap_or(1) as u32;
    (serializer::BOT_RATES.contains(&rate) && serializer::BOT_CHANNELS.contains(&channels))
        .then_some(Format {
            rate,
            channels,
            law: None,
        })
}
