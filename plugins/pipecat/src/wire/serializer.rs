// SPDX-License-Identifier: MPL-2.0
//! Pipecat's wire formats, as `pipecat-ai` 1.14 implements them
//! (`pipecat/serializers/*.py`): what a bot's message means. What the client
//! says to the bot is in `session.rs`.

use base64::Engine;
use gst::glib;
use tokio_tungstenite::tungstenite::Message;

use crate::wire::protobuf::{self, Kind};
use callaudio::g711::{self, Law};

#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstPipecatSerializer")]
pub enum Serializer {
    #[default]
    #[enum_value(
        name = "Protobuf: ProtobufFrameSerializer, binary frames.proto messages",
        nick = "protobuf"
    )]
    Protobuf,
    #[enum_value(
        name = "Twilio: TwilioFrameSerializer, JSON media events, base64 mu-law 8 kHz",
        nick = "twilio"
    )]
    Twilio,
    #[enum_value(
        name = "Telnyx: TelnyxFrameSerializer with PCMU, base64 mu-law 8 kHz",
        nick = "telnyx"
    )]
    Telnyx,
    #[enum_value(
        name = "Telnyx PCMA: TelnyxFrameSerializer with PCMA, base64 A-law 8 kHz",
        nick = "telnyx-pcma"
    )]
    TelnyxPcma,
    #[enum_value(
        name = "Plivo: PlivoFrameSerializer, playAudio events, base64 mu-law 8 kHz",
        nick = "plivo"
    )]
    Plivo,
    #[enum_value(
        name = "Exotel: ExotelFrameSerializer, JSON media events, base64 S16LE 8 kHz",
        nick = "exotel"
    )]
    Exotel,
    #[enum_value(
        name = "Vonage: VonageFrameSerializer (Audio Connector), binary S16LE 16 kHz, JSON events",
        nick = "vonage"
    )]
    Vonage,
    #[enum_value(
        name = "Genesys: GenesysAudioHookSerializer (AudioHook v2), binary mu-law 8 kHz, JSON control",
        nick = "genesys"
    )]
    Genesys,
}

/// How a wire carries the bot's audio and its interruptions, as Pipecat's
/// serializer for it writes them.
#[derive(Debug, Clone, Copy)]
enum Carrier {
    /// Protobuf frames: the bot declares rate and channels per message.
    Protobuf,
    /// JSON events with base64 audio in `media.payload`.
    Json {
        /// The event carrying the bot's audio.
        media: &'static str,
        /// The event telling the client to drop queued audio.
        clear: &'static str,
    },
    /// Vonage: binary audio; `{"action": "clear"}` interrupts.
    VonageBinary,
    /// Genesys AudioHook: binary audio; JSON control messages.
    AudioHook,
}

#[derive(Debug, Clone, Copy)]
struct WireSpec {
    carrier: Carrier,
    /// `None`: raw S16LE.
    law: Option<Law>,
    /// The rate of both directions, where the wire fixes it.
    rate: Option<u32>,
}

/// Audio as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireAudio {
    /// Interleaved S16LE when `law` is `None`, G.711 bytes otherwise.
    pub data: bytes::Bytes,
    pub rate: u32,
    pub channels: u32,
    pub law: Option<Law>,
}

/// What the caps of the bot's audio depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub rate: u32,
    pub channels: u32,
    /// `None`: S16LE.
    pub law: Option<Law>,
}

impl WireAudio {
    pub fn format(&self) -> Format {
        Format {
            rate: self.rate,
            channels: self.channels,
            law: self.law,
        }
    }

    pub fn frames(&self) -> u64 {
        let bytes_per_frame = if self.law.is_some() { 1 } else { 2 } * self.channels as u64;
        self.data.len() as u64 / bytes_per_frame
    }

    pub fn duration(&self) -> gst::ClockTime {
        callaudio::samples_to_time(self.frames(), self.rate)
    }

    /// The audio as interleaved S16LE.
    pub fn into_s16le(self) -> bytes::Bytes {
        match self.law {
            Some(law) => g711::decode_law(law, &self.data).into(),
            None => self.data,
        }
    }
}

/// What one message from the bot means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Audio as the wire carries it: interleaved S16LE, or G.711 of `law`.
    Audio(WireAudio),
    Text(String),
    Transcription {
        text: String,
        user_id: String,
        timestamp: String,
    },
    /// JSON text: RTVI and other transport messages.
    Message(String),
    Interruption,
    /// The bot asks to end the session (AudioHook `disconnect`): the client
    /// answers with its `close`.
    HangUpRequested,
    /// The bot confirmed the end of the session (AudioHook `closed`): the
    /// call is over, cleanly.
    SessionClosed,
    /// A message of the protocol that carries nothing for us (e.g. a pong).
    Nothing,
}

/// The rate of the telephony wires that fix one (all but Vonage's 16 kHz).
pub const TELEPHONY_RATE: u32 = 8000;
/// Vonage's Audio Connector, as Pipecat's serializer defaults to it.
pub const VONAGE_RATE: u32 = 16000;
/// The rates a bot may declare: every rate a voice pipeline uses, and no
/// value that would make a buffer's duration or size absurd (a declared
/// rate of 1 Hz put each 20 ms of audio 160 s long; 2^31 made downstream
/// allocate gigabytes).
pub const BOT_RATES: std::ops::RangeInclusive<u32> = 8000..=192_000;
/// The channel counts a bot may declare.
pub const BOT_CHANNELS: std::ops::RangeInclusive<u32> = 1..=8;

/// Every serializer, for tests and fuzzing.
#[cfg(test)]
pub const ALL: [Serializer; 8] = [
    Serializer::Protobuf,
    Serializer::Twilio,
    Serializer::Telnyx,
    Serializer::TelnyxPcma,
    Serializer::Plivo,
    Serializer::Exotel,
    Serializer::Vonage,
    Serializer::Genesys,
];

impl Serializer {
    /// The name `serializer=` takes.
    pub fn nick(self) -> &'static str {
        match self {
            Serializer::Protobuf => "protobuf",
            Serializer::Twilio => "twilio",
            Serializer::Telnyx => "telnyx",
            Serializer::TelnyxPcma => "telnyx-pcma",
            Serializer::Plivo => "plivo",
            Serializer::Exotel => "exotel",
            Serializer::Vonage => "vonage",
            Serializer::Genesys => "genesys",
        }
    }

    fn spec(self) -> WireSpec {
        let json = |media, clear| Carrier::Json { media, clear };
        let (carrier, law, rate) = match self {
            Serializer::Protobuf => (Carrier::Protobuf, None, None),
            Serializer::Twilio => (json("media", "clear"), Some(Law::Mu), Some(TELEPHONY_RATE)),
            Serializer::Telnyx => (json("media", "clear"), Some(Law::Mu), Some(TELEPHONY_RATE)),
            Serializer::TelnyxPcma => (json("media", "clear"), Some(Law::A), Some(TELEPHONY_RATE)),
            Serializer::Plivo => (
                json("playAudio", "clearAudio"),
                Some(Law::Mu),
                Some(TELEPHONY_RATE),
            ),
            Serializer::Exotel => (json("media", "clear"), None, Some(TELEPHONY_RATE)),
            Serializer::Vonage => (Carrier::VonageBinary, None, Some(VONAGE_RATE)),
            Serializer::Genesys => (Carrier::AudioHook, Some(Law::Mu), Some(TELEPHONY_RATE)),
        };
        WireSpec { carrier, law, rate }
    }

    /// The G.711 law of the wire's audio, both ways; `None` for S16LE.
    pub fn law(self) -> Option<Law> {
        self.spec().law
    }

    pub fn decode(self, msg: &Message) -> Result<Inbound, String> {
        let spec = self.spec();
        match (spec.carrier, msg) {
            (Carrier::Protobuf, Message::Binary(data)) => decode_protobuf(data.clone()),
            (Carrier::Protobuf, Message::Text(_)) => {
                Err("a text message where protobuf expects binary".into())
            }
            (Carrier::Json { media, clear }, Message::Text(text)) => {
                decode_json_event(text, media, clear, spec.law)
            }
            (Carrier::Json { .. }, Message::Binary(_)) => {
                Err("a binary message where telephony JSON was expected".into())
            }
            (Carrier::VonageBinary | Carrier::AudioHook, Message::Binary(data)) => {
                let law = spec.law;
                if law.is_none() && data.len() % 2 != 0 {
                    return Err(format!("S16LE audio of odd length {}", data.len()));
                }
                Ok(Inbound::Audio(WireAudio {
                    data: data.clone(),
                    rate: spec.rate.unwrap_or(TELEPHONY_RATE),
                    channels: 1,
                    law,
                }))
            }
            (Carrier::VonageBinary, Message::Text(text)) => {
                let json = parse_json(text)?;
                Ok(match json.get("action").and_then(|a| a.as_str()) {
                    Some("clear") => Inbound::Interruption,
                    _ => Inbound::Message(text.to_string()),
                })
            }
            (Carrier::AudioHook, Message::Text(text)) => decode_audiohook(text),
            _ => Ok(Inbound::Nothing),
        }
    }

    /// The format of the bot's audio, if the wire fixes it (every
    /// telephony wire is mono at one rate).
    pub fn wire_format(self) -> Option<Format> {
        let spec = self.spec();
        spec.rate.map(|rate| Format {
            rate,
            channels: 1,
            law: spec.law,
        })
    }

    /// The rate the bot must be sent audio at, if the wire fixes it.
    pub fn fixed_rate(self) -> Option<u32> {
        self.spec().rate
    }
}

fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("telephony message is not JSON: {e}"))
}

fn decode_protobuf(data: bytes::Bytes) -> Result<Inbound, String> {
    Ok(match protobuf::decode_shared(data)? {
        Kind::Audio(frame) => {
            let (sample_rate, num_channels) = (frame.sample_rate, frame.num_channels);
            if !BOT_RATES.contains(&sample_rate) {
                return Err(format!(
                    "the bot declared sample_rate={sample_rate}, outside {}..={} Hz",
                    BOT_RATES.start(),
                    BOT_RATES.end()
                ));
            }
            if !BOT_CHANNELS.contains(&num_channels) {
                return Err(format!(
                    "the bot declared num_channels={num_channels}, outside {}..={}",
                    BOT_CHANNELS.start(),
                    BOT_CHANNELS.end()
                ));
            }
            if frame.audio.len() % (2 * num_channels as usize) != 0 {
                return Err(format!(
                    "audio of {} bytes is not whole S16 frames of {num_channels} channel(s)",
                    frame.audio.len()
                ));
            }
            Inbound::Audio(WireAudio {
                data: frame.audio,
                rate: sample_rate,
                channels: num_channels,
                law: None,
            })
        }
        Kind::Text(frame) => Inbound::Text(frame.text),
        Kind::Transcription(frame) => Inbound::Transcription {
            text: frame.text,
            user_id: frame.user_id,
            timestamp: frame.timestamp,
        },
        Kind::Message(frame) => Inbound::Message(frame.data),
        Kind::Interruption(_) => Inbound::Interruption,
    })
}

/// Twilio, Telnyx, Plivo and Exotel: every message is a JSON event.
fn decode_json_event(
    text: &str,
    media: &str,
    clear: &str,
    law: Option<Law>,
) -> Result<Inbound, String> {
    let json = parse_json(text)?;
    let event = json.get("event").and_then(|e| e.as_str());
    if event == Some(media) {
        let payload = json
            .pointer("/media/payload")
            .and_then(|p| p.as_str())
            .ok_or_else(|| format!("{media} event without media.payload"))?;
        let coded = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|e| format!("media payload is not base64: {e}"))?;
        if law.is_none() && coded.len() % 2 != 0 {
            return Err(format!("S16LE payload of odd length {}", coded.len()));
        }
        return Ok(Inbound::Audio(WireAudio {
            data: coded.into(),
            rate: TELEPHONY_RATE,
            channels: 1,
            law,
        }));
    }
    if event == Some(clear) {
        return Ok(Inbound::Interruption);
    }
    Ok(Inbound::Message(text.to_owned()))
}

/// Genesys AudioHook control messages, as Pipecat's server side sends them.
fn decode_audiohook(text: &str) -> Result<Inbound, String> {
    let json = parse_json(text)?;
    Ok(match json.get("type").and_then(|t| t.as_str()) {
        Some("opened" | "pong" | "resumed") => Inbound::Nothing,
        Some("disconnect") => Inbound::HangUpRequested,
        Some("closed") => Inbound::SessionClosed,
        Some("event")
            if json
                .pointer("/parameters/entities")
                .and_then(|e| e.as_array())
                .is_some_and(|entities| {
                    entities
                        .iter()
                        .any(|e| e.get("type").and_then(|t| t.as_str()) == Some("barge_in"))
                }) =>
        {
            Inbound::Interruption
        }
        _ => Inbound::Message(text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_media_decodes_to_s16() {
        let msg = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/wA="}}"#;
        assert_eq!(
            Serializer::Twilio
                .decode(&Message::Text(msg.into()))
                .unwrap(),
            Inbound::Audio(WireAudio {
                data: vec![0xFF, 0x00].into(),
                rate: 8000,
                channels: 1,
                law: Some(Law::Mu)
            })
        );
        let clear = r#"{"event":"clear","streamSid":"MZ1"}"#;
        assert_eq!(
            Serializer::Twilio
                .decode(&Message::Text(clear.into()))
                .unwrap(),
            Inbound::Interruption
        );
        assert!(
            Serializer::Twilio
                .decode(&Message::Text("{nope".into()))
                .unwrap_err()
                .contains("not JSON")
        );
        let play = r#"{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"/wA="}}"#;
        assert!(matches!(
            Serializer::Plivo
                .decode(&Message::Text(play.into()))
                .unwrap(),
            Inbound::Audio(_)
        ));
        let clear = r#"{"event":"clearAudio","streamId":"x"}"#;
        assert_eq!(
            Serializer::Plivo
                .decode(&Message::Text(clear.into()))
                .unwrap(),
            Inbound::Interruption
        );
        let exotel = r#"{"event":"media","stream_sid":"x","media":{"payload":"AQACAA=="}}"#;
        assert_eq!(
            Serializer::Exotel
                .decode(&Message::Text(exotel.into()))
                .unwrap(),
            Inbound::Audio(WireAudio {
                data: vec![1, 0, 2, 0].into(),
                rate: 8000,
                channels: 1,
                law: None
            })
        );
    }

    #[test]
    fn declared_rates_and_channels_are_bounded() {
        for (rate, channels, bad) in [
            (1, 1, "sample_rate=1"),
            (u32::MAX, 1, "sample_rate=4294967295"),
            (i32::MAX as u32, 1, "sample_rate=2147483647"),
            (16000, 0, "num_channels=0"),
            (16000, 9, "num_channels=9"),
        ] {
            let msg = Message::Binary(protobuf::encode_audio(&[0; 36], rate, channels).into());
            let err = Serializer::Protobuf.decode(&msg).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        let ok = Message::Binary(protobuf::encode_audio(&[0; 32], 192_000, 8).into());
        assert!(Serializer::Protobuf.decode(&ok).is_ok());
    }

    #[test]
    fn vonage_is_binary_audio_and_json_events() {
        let audio = Serializer::Vonage
            .decode(&Message::Binary(vec![1, 0, 2, 0].into()))
            .unwrap();
        assert_eq!(
            audio,
            Inbound::Audio(WireAudio {
                data: vec![1, 0, 2, 0].into(),
                rate: 16000,
                channels: 1,
                law: None
            })
        );
        assert!(
            Serializer::Vonage
                .decode(&Message::Binary(vec![1, 0, 2].into()))
                .unwrap_err()
                .contains("odd length")
        );
        let clear = Message::Text(r#"{"action":"clear"}"#.into());
        assert_eq!(
            Serializer::Vonage.decode(&clear).unwrap(),
            Inbound::Interruption
        );
    }

    #[test]
    fn audiohook_control_messages_mean_what_pipecat_means() {
        let decode = |text: &str| Serializer::Genesys.decode(&Message::Text(text.into()));
        assert_eq!(
            decode(r#"{"version":"2","type":"opened","seq":1,"parameters":{}}"#).unwrap(),
            Inbound::Nothing
        );
        assert_eq!(
            decode(
                r#"{"version":"2","type":"event","seq":2,"parameters":{"entities":[{"type":"barge_in","data":{}}]}}"#
            )
            .unwrap(),
            Inbound::Interruption
        );
        assert_eq!(
            decode(
                r#"{"version":"2","type":"disconnect","seq":3,"parameters":{"reason":"completed"}}"#
            )
            .unwrap(),
            Inbound::HangUpRequested
        );
        assert_eq!(
            decode(r#"{"version":"2","type":"closed","seq":4,"parameters":{}}"#).unwrap(),
            Inbound::SessionClosed
        );
        let audio = Serializer::Genesys
            .decode(&Message::Binary(vec![0xFF; 160].into()))
            .unwrap();
        assert!(matches!(audio, Inbound::Audio(a) if a.law == Some(Law::Mu) && a.rate == 8000));
    }
}
