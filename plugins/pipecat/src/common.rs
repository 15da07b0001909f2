// SPDX-License-Identifier: MPL-2.0
//! The properties `pipecatwsrc` and `pipecatwssink` share: where the bot is
//! and how to speak to it.

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::connection::ConnectConfig;
use crate::wire::serializer::Serializer;
use crate::wire::session::DTMF_KEYS;

pub const DEFAULT_CONNECT_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 4 * 1024 * 1024;
pub const DEFAULT_KEEPALIVE_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(10);
/// The longest wait any time property of these elements allows: every
/// deadline sum stays far from overflow, and a call waits no longer.
pub const MAX_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(3600);
pub const DEFAULT_KEEPALIVE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);

#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub uri: Option<String>,
    pub serializer: Serializer,
    pub connection: String,
    pub extra_headers: Option<gst::Structure>,
    pub connect_timeout: gst::ClockTime,
    pub max_message_size: u32,
    pub stream_sid: String,
    pub call_sid: String,
    pub tls_verify: bool,
    pub keepalive_interval: gst::ClockTime,
    pub keepalive_timeout: gst::ClockTime,
    pub delayed_ack: bool,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            uri: None,
            serializer: Serializer::Protobuf,
            connection: String::new(),
            extra_headers: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            stream_sid: "MZ00000000000000000000000000000000".into(),
            call_sid: "CA00000000000000000000000000000000".into(),
            tls_verify: true,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            delayed_ack: false,
        }
    }
}

impl LinkSettings {
    pub fn properties() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("uri")
                .nick("URI")
                .blurb("ws:// or wss:// address of the Pipecat bot (tokens in it are never logged)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("serializer", Serializer::Protobuf)
                .nick("Serializer")
                .blurb("Wire format, as the bot's Pipecat serializer speaks it")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("connection")
                .nick("Connection")
                .blurb("Name shared by a pipecatwsrc and a pipecatwssink that use one WebSocket; empty = private")
                .mutable_ready()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("extra-headers")
                .nick("Extra headers")
                .blurb("HTTP headers for the upgrade request, e.g. \"headers, Authorization=\\\"Bearer …\\\"\" (values never logged)")
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("tls-verify")
                .nick("TLS verify")
                .blurb("Check the wss:// server's certificate against the webpki roots; false only for test bots")
                .default_value(true)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("connect-timeout")
                .nick("Connect timeout")
                .blurb("Longest wait (ns) for the WebSocket to open, at most 1 hour")
                .minimum(gst::ClockTime::MSECOND.nseconds())
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(DEFAULT_CONNECT_TIMEOUT.nseconds())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("keepalive-interval")
                .nick("Keepalive interval")
                .blurb("How often (ns) a WebSocket ping goes to the bot while it sends nothing else; 0 = never")
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(DEFAULT_KEEPALIVE_INTERVAL.nseconds())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("keepalive-timeout")
                .nick("Keepalive timeout")
                .blurb("A bot that answers nothing this long (ns) after a ping is frozen: an ERROR ends the call")
                .minimum(gst::ClockTime::MSECOND.nseconds())
                .maximum(MAX_TIMEOUT.nseconds())
                .default_value(DEFAULT_KEEPALIVE_TIMEOUT.nseconds())
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("delayed-ack")
                .nick("Delayed ACKs")
                .blurb("Acknowledge the bot's audio at TCP's delayed pace (every second message), as TCP does anyway while caller audio flows: half the ACKs, and at a thousand legs that only receive, 29% less CPU on loopback. Only for bots whose server disables Nagle's algorithm (TCP_NODELAY, as Pipecat's does): behind Nagle, every other message would wait for the delayed ACK (p90 23 ms measured)")
                .default_value(false)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("max-message-size")
                .nick("Max message size")
                .blurb("Largest message (bytes) accepted from the bot; a larger one is an error")
                .minimum(1024)
                .default_value(DEFAULT_MAX_MESSAGE_SIZE)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("stream-sid")
                .nick("Stream ID")
                .blurb("The media stream's id, sent in the handshake and with every media and DTMF event, as each provider names it: Twilio streamSid, Telnyx stream_id, Plivo streamId, Exotel stream_sid, Genesys session id")
                .default_value(Some(LinkSettings::default().stream_sid.as_str()))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("call-sid")
                .nick("Call ID")
                .blurb("The call's id, sent in the handshake: Twilio callSid, Telnyx call_control_id, Plivo callId, Exotel call_sid, Genesys conversationId")
                .default_value(Some(LinkSettings::default().call_sid.as_str()))
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets a shared property; false if `name` is not one.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        match name {
            "uri" => self.uri = value.get().unwrap(),
            "serializer" => self.serializer = value.get().unwrap(),
            "connection" => {
                self.connection = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "extra-headers" => self.extra_headers = value.get().unwrap(),
            "connect-timeout" => {
                self.connect_timeout = callaudio::clock_time_of(value.get().unwrap())
            }
            "max-message-size" => self.max_message_size = value.get().unwrap(),
            "stream-sid" => {
                self.stream_sid = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "call-sid" => {
                self.call_sid = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "tls-verify" => self.tls_verify = value.get().unwrap(),
            "keepalive-interval" => {
                self.keepalive_interval = callaudio::clock_time_of(value.get().unwrap())
            }
            "keepalive-timeout" => {
                self.keepalive_timeout = callaudio::clock_time_of(value.get().unwrap())
            }
            "delayed-ack" => self.delayed_ack = value.get().unwrap(),
            _ => return false,
        }
        true
    }

    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "uri" => self.uri.to_value(),
            "serializer" => self.serializer.to_value(),
            "connection" => self.connection.to_value(),
            "extra-headers" => self.extra_headers.to_value(),
            "connect-timeout" => self.connect_timeout.nseconds().to_value(),
            "max-message-size" => self.max_message_size.to_value(),
            "stream-sid" => self.stream_sid.to_value(),
            "call-sid" => self.call_sid.to_value(),
            "tls-verify" => self.tls_verify.to_value(),
            "keepalive-interval" => self.keepalive_interval.nseconds().to_value(),
            "keepalive-timeout" => self.keepalive_timeout.nseconds().to_value(),
            "delayed-ack" => self.delayed_ack.to_value(),
            _ => return None,
        })
    }

    pub fn connect_config(&self, uri: &str) -> ConnectConfig {
        let headers = self
            .extra_headers
            .iter()
            .flat_map(|s| {
                s.iter()
                    .map(|(k, v)| (k.to_string(), v.get::<String>().unwrap_or_default()))
            })
            .collect();
        ConnectConfig {
            uri: uri.to_owned(),
            serializer: self.serializer,
            headers,
            connect_timeout: Duration::from_nanos(self.connect_timeout.nseconds()),
            max_message_size: self.max_message_size as usize,
            stream_sid: self.stream_sid.clone(),
            call_sid: self.call_sid.clone(),
            tls_verify: self.tls_verify,
            delayed_ack: self.delayed_ack,
            keepalive: (!self.keepalive_interval.is_zero()).then(|| {
                (
                    Duration::from_nanos(self.keepalive_interval.nseconds()),
                    Duration::from_nanos(self.keepalive_timeout.nseconds()),
                )
            }),
        }
    }
}

/// The URI handler's protocols: `pipecat+` before a WebSocket URI.
pub const URI_PROTOCOLS: &[&str] = &["pipecat+ws", "pipecat+wss"];

/// Settings every element takes from a `pipecat+` URI's query.
pub const LINK_URI_PARAMETERS: &[&str] = &[
    "serializer",
    "connection",
    "stream-sid",
    "call-sid",
    "connect-timeout",
    "max-message-size",
    "keepalive-interval",
    "keepalive-timeout",
    "delayed-ack",
];

/// Properties that turn a safety check off: never from a URI, whose author
/// may not be the application's.
const CODE_ONLY_PARAMETERS: &[&str] = &["tls-verify"];

/// Applies `pipecat+ws[s]://host/path?serializer=twilio&token=...` to
/// `element`: query parameters named in `settable` become the properties of
/// the same name (checked against each property's range, as `gst-launch`
/// would); the others (the bot's own, e.g. a token) stay in the WebSocket
/// URI, which becomes `uri`. Only in NULL or READY. Error texts never show a
/// secret.
pub fn apply_pipecat_uri(
    element: &gst::Element,
    uri: &str,
    settable: &[&str],
) -> Result<(), glib::Error> {
    let bad = |why: String| glib::Error::new(gst::URIError::BadUri, &why);
    if element.current_state() > gst::State::Ready {
        return Err(glib::Error::new(
            gst::URIError::BadState,
            "the URI can only be changed in NULL or READY",
        ));
    }
    let ws = uri
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("pipecat+"))
        .map(|_| &uri[8..])
        .ok_or_else(|| bad("not a pipecat+ws:// or pipecat+wss:// URI".into()))?;
    let mut url = url::Url::parse(ws).map_err(|e| {
        bad(format!(
            "{} is not a WebSocket URI: {e}",
            crate::wire::redact::redact_uri(ws)
        ))
    })?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(bad("the part after pipecat+ must be ws:// or wss://".into()));
    }
    let mut settings = Vec::new();
    let mut kept = Vec::new();
    for (key, value) in url.query_pairs() {
        if CODE_ONLY_PARAMETERS.contains(&key.as_ref()) {
            return Err(bad(format!(
                "{key} cannot be set from a URI: whoever supplies a bot's URI must not turn \
                 its checks off; set the {key} property from code"
            )));
        }
        if !settable.contains(&key.as_ref()) {
            kept.push((key.into_owned(), value.into_owned()));
            continue;
        }
        let pspec = element
            .find_property(&key)
            .ok_or_else(|| bad(format!("no property {key}")))?;
        // GStreamer reads "-1" as 2^64-1 for an unsigned property: a
        // negative number is never what the URI's author meant.
        let unsigned =
            [glib::Type::U8, glib::Type::U32, glib::Type::U64].contains(&pspec.value_type());
        if unsigned && value.trim_start().starts_with('-') {
            return Err(bad(format!(
                "{key}: {value:?} is negative; it takes a number from 0 up"
            )));
        }
        let mut parsed =
            <glib::Value as gst::prelude::GstValueExt>::deserialize_with_pspec(&value, &pspec)
                .map_err(|_| bad(format!("{key}: {value:?} is not a valid value")))?;
        let original = parsed.clone();
        // SAFETY: validates a value of the pspec's own type, in place.
        let modified: bool = unsafe {
            glib::translate::from_glib(glib::gobject_ffi::g_param_value_validate(
                glib::translate::ToGlibPtr::to_glib_none(&pspec).0,
                glib::translate::ToGlibPtrMut::to_glib_none_mut(&mut parsed).0,
            ))
        };
        if modified {
            return Err(bad(format!("{key}: {value:?} is out of range")));
        }
        settings.push((key.into_owned(), original));
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    for (key, value) in &settings {
        element.set_property_from_value(key, value);
    }
    element.set_property("uri", url.as_str());
    Ok(())
}

/// The `pipecat+` URI of an element whose `uri` is `ws`.
pub fn pipecat_uri(ws: Option<&str>) -> Option<String> {
    ws.map(|ws| format!("pipecat+{ws}"))
}

/// The action signals both elements have, each true when what it names
/// was queued for the bot:
/// - `send-message(json)`: a JSON (RTVI) message;
/// - `send-text(text)`: a `TextFrame`;
/// - `send-dtmf(keys)`: one DTMF event per key, in order.
pub fn send_signals<T: glib::object::ObjectType + IsA<gst::Element>>(
    send: fn(&T, Outgoing) -> bool,
) -> Vec<glib::subclass::Signal> {
    ["send-message", "send-text", "send-dtmf"]
        .into_iter()
        .map(|name| {
            glib::subclass::Signal::builder(name)
                .param_types([String::static_type()])
                .return_type::<bool>()
                .action()
                .class_handler(move |args| {
                    let obj = args[0].get::<T>().ok()?;
                    let value = args[1].get::<String>().unwrap_or_default();
                    let what = match name {
                        "send-message" => Outgoing::Message(value),
                        "send-text" => Outgoing::Text(value),
                        _ => Outgoing::Dtmf(value),
                    };
                    Some(send(&obj, what).to_value())
                })
                .build()
        })
        .collect()
}

/// What an application sends the bot besides audio.
pub enum Outgoing {
    /// JSON text (an RTVI message, say).
    Message(String),
    Text(String),
    /// Keys the caller pressed, each one of `session::DTMF_KEYS`.
    Dtmf(String),
}

/// Queues `what` on `conn` for the bot; false, with a warning that says
/// why, when it cannot go.
pub fn send_outgoing(
    element: &gst::Element,
    conn: Option<&crate::connection::Use>,
    what: Outgoing,
) -> bool {
    let refuse = |why: &str| {
        gst::warning!(crate::connection::CAT, obj = element, "{why}: nothing sent");
        false
    };
    let Some((conn, session)) = conn.and_then(|c| Some((c, c.session()?))) else {
        return refuse("not started");
    };
    let nick = session.serializer().nick();
    let msgs = match &what {
        Outgoing::Message(json) => {
            if serde_json::from_str::<serde_json::Value>(json).is_err() {
                return refuse("send-message: not JSON");
            }
            match session.message(json) {
                Some(msg) => vec![msg],
                None => return refuse(&format!("serializer {nick} has no way to send a message")),
            }
        }
        Outgoing::Text(text) => match session.text_frame(text) {
            Some(msg) => vec![msg],
            None => return refuse(&format!("serializer {nick} has no way to send text")),
        },
        Outgoing::Dtmf(keys) => {
            if keys.is_empty() || !keys.chars().all(|k| DTMF_KEYS.contains(k)) {
                return refuse(&format!(
                    "send-dtmf: '{keys}' is not keys of {DTMF_KEYS} (Pipecat takes no others)"
                ));
            }
            keys.chars().map(|key| session.dtmf(key)).collect()
        }
    };
    msgs.into_iter().all(|msg| conn.send(msg).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipecat_uri_sets_properties_and_keeps_the_bots_own_parameters() {
        gst::init().unwrap();
        crate::plugin_register_static().unwrap();
        let src = gst::ElementFactory::make("pipecatwsrc").build().unwrap();
        apply_pipecat_uri(
            &src,
            "pipecat+wss://bot.example/ws?serializer=twilio&token=abc&connection=call7&max-queue=1000000000",
            &[LINK_URI_PARAMETERS, &["max-queue"]].concat(),
        )
        .unwrap();
        assert_eq!(
            src.property::<String>("uri"),
            "wss://bot.example/ws?token=abc"
        );
        assert_eq!(src.property::<String>("connection"), "call7");
        assert_eq!(src.property::<u64>("max-queue"), 1_000_000_000);
        let serializer = src.property_value("serializer");
        assert_eq!(
            glib::EnumValue::from_value(&serializer).unwrap().1.nick(),
            "twilio"
        );
        for bad in [
            "pipecat+ws://h/?connect-timeout=0",
            "pipecat+ws://h/?serializer=nope",
            "pipecat+http://h/",
            "ws://h/",
        ] {
            assert!(
                apply_pipecat_uri(&src, bad, LINK_URI_PARAMETERS).is_err(),
                "{bad}"
            );
        }
    }
}
