// SPDX-License-Identifier: MPL-2.0
//! What both bot-audio sources (`pipecatwsrc`, one streaming thread each,
//! and `pipecatwssharedsrc`, pushed from threads all its instances share) do
//! alike: their caps, how a buffer is stamped, and how the end of the
//! connection is reported.

use callaudio::g711::Law;
use gst::glib;
use gst::prelude::*;

use crate::common::{LinkSettings, MAX_TIMEOUT};
use crate::connection::{CAT, Connection, End, Use};
use crate::inbox::{Chunk, Dropped, Limits};
use crate::wire::redact;
use crate::wire::serializer::{self, Format, Serializer};

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

/// What a bot may declare (see `serializer::BOT_RATES`), and the telephony
/// wires' G.711.
fn template_caps() -> gst::Caps {
    let mut caps = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .rate_range(*serializer::BOT_RATES.start() as i32..=*serializer::BOT_RATES.end() as i32)
        .channels_range(
            *serializer::BOT_CHANNELS.start() as i32..=*serializer::BOT_CHANNELS.end() as i32,
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
    caps
}

pub fn src_template() -> gst::PadTemplate {
    gst::PadTemplate::new(
        "src",
        gst::PadDirection::Src,
        gst::PadPresence::Always,
        &template_caps(),
    )
    .unwrap()
}

/// Caps for audio of this format out of `pad`: the wire's own G.711 when
/// the wire is G.711 and downstream prefers it, S16LE otherwise. The bool
/// says which.
pub fn caps_for(pad: &gst::Pad, format: Format) -> (gst::Caps, bool) {
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
    let peer = pad.peer_query_caps(None);
    let prefers_coded =
        peer.iter().next().is_some_and(|s| s.name() == name) || !peer.can_intersect(&raw);
    if prefers_coded && peer.can_intersect(&coded) {
        (coded, true)
    } else {
        (raw, false)
    }
}

/// The format known before the bot's first audio: the serializer's wire
/// (every telephony wire is 8 kHz mono), else the `caps` the application
/// gave.
pub fn known_in_advance(serializer: Serializer, expected: Option<&gst::Caps>) -> Option<Format> {
    serializer
        .wire_format()
        .or_else(|| expected.and_then(expected_format))
}

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

/// The error for `caps` that are not audio a bot may send.
fn check_expected(caps: Option<&gst::Caps>) -> Result<(), gst::ErrorMessage> {
    match caps {
        Some(caps) if expected_format(caps).is_none() => Err(gst::error_msg!(
            gst::ResourceError::Settings,
            (
                "caps {} is not audio a bot may send: audio/x-raw with a rate in 8000..=192000 Hz and 1..=8 channels",
                caps
            )
        )),
        _ => Ok(()),
    }
}

/// Opens the source's connection to the bot: starts connecting and returns
/// at once (connecting goes on in the background, so stopping the pipeline
/// never waits for the bot). Refuses, with an error a person can act on,
/// settings that can never work.
pub fn open(
    element: &gst::Element,
    link: &LinkSettings,
    source: &SourceSettings,
) -> Result<Use, gst::ErrorMessage> {
    let Some(uri) = link.uri.as_deref() else {
        return Err(gst::error_msg!(
            gst::ResourceError::NotFound,
            ("No uri set for the Pipecat bot: set uri=ws://host:port/path (or wss://)")
        ));
    };
    gst::debug!(
        CAT,
        obj = element,
        "starting with {}",
        redact::redact_uri(uri)
    );
    check_expected(source.expected.as_ref())?;
    let conn = Connection::acquire(element, &link.connection, Some((uri, link.serializer)))
        .map_err(|text| gst::error_msg!(gst::ResourceError::Settings, ("{}", text)))?;
    conn.attach_src(element, source.limits());
    conn.connect(&link.connect_config(uri))
        .map_err(|end| match end {
            End::Failed { text, debug } => {
                gst::error_msg!(gst::ResourceError::OpenRead, ("{}", text), ["{}", debug])
            }
            End::Closed { .. } => gst::error_msg!(
                gst::ResourceError::OpenRead,
                ["The Pipecat bot closed at once"]
            ),
        })?;
    Ok(conn)
}

/// Where `chunk` goes on the pipeline's running time, given the running
/// time `running` read at `now`: when it arrived, but never before the end
/// of the previous buffer (`next_pts`, moved on), so a burst of TTS plays
/// out in order.
pub fn stamp(
    running: Option<gst::ClockTime>,
    now: std::time::Instant,
    chunk: &Chunk,
    next_pts: &mut gst::ClockTime,
) -> gst::ClockTime {
    let arrival = running.map(|running| {
        running.saturating_sub(gst::ClockTime::from_nseconds(
            now.saturating_duration_since(chunk.arrival).as_nanos() as u64,
        ))
    });
    let pts = arrival.unwrap_or(*next_pts).max(*next_pts);
    *next_pts = pts + chunk.duration();
    pts
}

/// The buffer for `chunk`, in the wire's G.711 when `coded_out`.
pub fn buffer(chunk: Chunk, pts: gst::ClockTime, coded_out: bool) -> gst::Buffer {
    let duration = chunk.duration();
    let data = if coded_out {
        chunk.audio.data
    } else {
        chunk.audio.into_s16le()
    };
    let mut buffer = gst::Buffer::from_slice(data);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(duration);
    }
    buffer
}

/// The WARNING for audio the inbox dropped because downstream was slow.
pub fn warn_dropped(element: &gst::Element, dropped: Dropped, limits: Limits) {
    if dropped.is_empty() {
        return;
    }
    gst::element_warning!(
        element,
        gst::ResourceError::Read,
        (
            "Downstream is slow: dropped {} of the bot's oldest audio ({} messages)",
            dropped.duration,
            dropped.messages
        ),
        [
            "more than max-queue ({}) or max-queue-bytes ({}) was waiting",
            limits.duration,
            limits.bytes
        ]
    );
}

/// The bot has sent no audio for `timeout` (`response-timeout`): a WARNING
/// and the `pipecat-agent-silent` message. Once per silent stretch.
pub fn warn_silent(element: &gst::Element, timeout: gst::ClockTime) {
    gst::element_warning!(
        element,
        gst::ResourceError::Read,
        ("The Pipecat bot sent no audio for {}", timeout),
        ["response-timeout; the connection is still open"]
    );
    callaudio::message::post_element_message(
        element,
        gst::Structure::builder("pipecat-agent-silent")
            .field("timeout", timeout)
            .build(),
    );
}

/// Reports a clean close by the bot: the `pipecat-closed` message, and with
/// `on-close=error` the ERROR. Returns whether it posted that ERROR.
pub fn report_close(
    element: &gst::Element,
    code: u16,
    reason: &str,
    trimmed: gst::ClockTime,
    on_close: OnClose,
) -> bool {
    gst::info!(
        CAT,
        obj = element,
        "bot hung up ({code}); all received audio was pushed"
    );
    callaudio::message::post_element_message(
        element,
        gst::Structure::builder("pipecat-closed")
            .field("code", code as u32)
            .field("reason", reason)
            .field("clean", true)
            .field("trimmed", trimmed)
            .build(),
    );
    if on_close == OnClose::Error {
        gst::element_error!(
            element,
            gst::ResourceError::Read,
            ("The Pipecat bot hung up (close code {})", code),
            ["on-close=error; reason: {reason:?}"]
        );
        return true;
    }
    false
}

const DEFAULT_MAX_QUEUE: gst::ClockTime = gst::ClockTime::from_seconds(5);
/// 5 s of 48 kHz stereo S16 with room to spare; a bot that declares more
/// bytes per second than that is bounded by bytes before duration.
const DEFAULT_MAX_QUEUE_BYTES: u32 = 2 << 20;
const DEFAULT_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(20);
/// More latency than any live call can bear; keeps the latency sums of the
/// pipeline far from overflow.
const MAX_LATENCY: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// The properties both sources have besides the link's.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub on_close: OnClose,
    pub max_queue: gst::ClockTime,
    pub max_queue_bytes: u32,
    pub latency: gst::ClockTime,
    /// The bot's format when the application knows it in advance.
    pub expected: Option<gst::Caps>,
    /// Warn when the bot sends no audio this long; zero: never.
    pub response_timeout: gst::ClockTime,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            on_close: OnClose::Eos,
            max_queue: DEFAULT_MAX_QUEUE,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            latency: DEFAULT_LATENCY,
            expected: None,
            response_timeout: gst::ClockTime::ZERO,
        }
    }
}

impl SourceSettings {
    pub fn properties() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecEnum::builder_with_default("on-close", OnClose::Eos)
                .nick("On close")
                .blurb("What a clean hang-up by the bot becomes")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("max-queue")
                .nick("Max queue")
                .blurb("Audio (ns) held while downstream is slow, at most 1 hour; beyond it the oldest is dropped with a WARNING")
                .minimum(gst::ClockTime::MSECOND.nseconds())
                .maximum(MAX_TIMEOUT.nseconds())
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
            glib::ParamSpecUInt64::builder("response-timeout")
                .nick("Response timeout")
                .blurb("Post a pipecat-agent-silent WARNING when the bot sends no audio this long (ns, at most 1 hour); 0 = off")
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("latency")
                .nick("Latency")
                .blurb("Latency (ns) reported downstream: how late after arrival bot audio may be rendered, at most 10 s")
                .maximum(MAX_LATENCY.nseconds())
                .default_value(DEFAULT_LATENCY.nseconds())
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets one of these properties; false if `name` is not one.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        let ns = || callaudio::clock_time_of(value.get::<u64>().unwrap());
        match name {
            "on-close" => self.on_close = value.get().unwrap(),
            "max-queue" => self.max_queue = ns(),
            "max-queue-bytes" => self.max_queue_bytes = value.get().unwrap(),
            "latency" => self.latency = ns(),
            "caps" => self.expected = value.get().unwrap(),
            "response-timeout" => self.response_timeout = ns(),
            _ => return false,
        }
        true
    }

    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "on-close" => self.on_close.to_value(),
            "max-queue" => self.max_queue.nseconds().to_value(),
            "max-queue-bytes" => self.max_queue_bytes.to_value(),
            "latency" => self.latency.nseconds().to_value(),
            "caps" => self.expected.to_value(),
            "response-timeout" => self.response_timeout.nseconds().to_value(),
            _ => return None,
        })
    }

    pub fn limits(&self) -> Limits {
        Limits {
            duration: self.max_queue,
            bytes: self.max_queue_bytes as usize,
        }
    }
}
