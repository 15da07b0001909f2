//! The properties `pipecatwsrc` and `pipecatwssink` share: where the bot is
//! and how to speak to it.

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::connection::ConnectConfig;
use crate::serializer::Serializer;

pub const DEFAULT_CONNECT_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 4 * 1024 * 1024;

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
                .blurb("Longest wait (ns) for the WebSocket to open")
                .minimum(gst::ClockTime::MSECOND.nseconds())
                .default_value(DEFAULT_CONNECT_TIMEOUT.nseconds())
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
                .nick("Stream SID")
                .blurb("Twilio streamSid sent in the start event and with every media message")
                .default_value(Some(LinkSettings::default().stream_sid.as_str()))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("call-sid")
                .nick("Call SID")
                .blurb("Twilio callSid sent in the start event")
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
                self.connect_timeout = gst::ClockTime::from_nseconds(value.get().unwrap())
            }
            "max-message-size" => self.max_message_size = value.get().unwrap(),
            "stream-sid" => {
                self.stream_sid = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "call-sid" => {
                self.call_sid = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "tls-verify" => self.tls_verify = value.get().unwrap(),
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
        }
    }
}
