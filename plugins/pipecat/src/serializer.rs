//! Pipecat's wire formats, as `pipecat-ai` 1.14 implements them
//! (`pipecat/serializers/protobuf.py`, `twilio.py`).

use base64::Engine;
use gst::glib;
use tokio_tungstenite::tungstenite::Message;

use crate::g711::{self, Law};
use crate::protobuf::Frame;

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
}

/// How a telephony provider's JSON carries audio, as Pipecat's serializer
/// for it writes and reads it.
struct Telephony {
    /// The event carrying the bot's audio.
    bot_media: &'static str,
    /// The event telling the client to drop queued audio (an interruption).
    bot_clear: &'static str,
    /// `None`: raw S16LE.
    law: Option<Law>,
    /// The key of the stream id in a media message to the bot, if any.
    sid_key: Option<&'static str>,
}

/// Audio as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireAudio {
    /// Interleaved S16LE when `law` is `None`, G.711 bytes otherwise.
    pub data: Vec<u8>,
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
    pub fn into_s16le(self) -> Vec<u8> {
        match self.law {
            Some(law) => g711::decode_law(law, &self.data),
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
    /// A message of the protocol that carries nothing for us (e.g. a ping text).
    Nothing,
}

/// Every telephony wire carries 8 kHz mono.
pub const TELEPHONY_RATE: u32 = 8000;
/// The rates a bot may declare: every rate a voice pipeline uses, and no
/// value that would make a buffer's duration or size absurd (a declared
/// rate of 1 Hz put each 20 ms of audio 160 s long; 2^31 made downstream
/// allocate gigabytes).
pub const BOT_RATES: std::ops::RangeInclusive<u32> = 8000..=192_000;
/// The channel counts a bot may declare.
pub const BOT_CHANNELS: std::ops::RangeInclusive<u32> = 1..=8;

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
        }
    }

    fn telephony(self) -> Option<Telephony> {
        let (bot_media, bot_clear, law, sid_key) = match self {
            Serializer::Protobuf => return None,
            Serializer::Twilio => ("media", "clear", Some(Law::Mu), Some("streamSid")),
            Serializer::Telnyx => ("media", "clear", Some(Law::Mu), None),
            Serializer::TelnyxPcma => ("media", "clear", Some(Law::A), None),
            Serializer::Plivo => ("playAudio", "clearAudio", Some(Law::Mu), None),
            Serializer::Exotel => ("media", "clear", None, Some("stream_sid")),
        };
        Some(Telephony {
            bot_media,
            bot_clear,
            law,
            sid_key,
        })
    }

    pub fn decode(self, msg: &Message) -> Result<Inbound, String> {
        let telephony = self.telephony();
        match (telephony, msg) {
            (None, Message::Binary(data)) => Ok(match Frame::decode(data).map_err(|e| e.0)? {
                Frame::Audio {
                    audio,
                    sample_rate,
                    num_channels,
                } => {
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
                    if audio.len() % (2 * num_channels as usize) != 0 {
                        return Err(format!(
                            "audio of {} bytes is not whole S16 frames of {num_channels} channel(s)",
                            audio.len()
                        ));
                    }
                    Inbound::Audio(WireAudio {
                        data: audio,
                        rate: sample_rate,
                        channels: num_channels,
                        law: None,
                    })
                }
                Frame::Text(text) => Inbound::Text(text),
                Frame::Transcription {
                    text,
                    user_id,
                    timestamp,
                } => Inbound::Transcription {
                    text,
                    user_id,
                    timestamp,
                },
                Frame::Message(data) => Inbound::Message(data),
                Frame::Interruption => Inbound::Interruption,
            }),
            (None, Message::Text(_)) => Err("a text message where protobuf expects binary".into()),
            (Some(t), Message::Text(text)) => t.decode(text),
            (Some(_), Message::Binary(_)) => {
                Err("a binary message where telephony JSON was expected".into())
            }
            _ => Ok(Inbound::Nothing),
        }
    }

    /// Caller audio (mono S16LE at `rate`) as the bot expects it.
    pub fn encode_audio(self, pcm: &[u8], rate: u32, stream_sid: &str) -> Message {
        let Some(t) = self.telephony() else {
            return Message::Binary(Frame::encode_audio(pcm, rate, 1).into());
        };
        let coded = match t.law {
            Some(law) => g711::encode_law(law, pcm),
            None => pcm.to_vec(),
        };
        let payload = base64::engine::general_purpose::STANDARD.encode(coded);
        let mut json = serde_json::json!({"event": "media", "media": {"payload": payload}});
        if let Some(key) = t.sid_key {
            json[key] = stream_sid.into();
        }
        Message::Text(json.to_string().into())
    }

    /// A JSON message for the bot, where the wire has a way to carry one
    /// (protobuf's `MessageFrame`); `None` where it has none.
    pub fn encode_message(self, json: &str) -> Option<Message> {
        match self {
            Serializer::Protobuf => Some(Message::Binary(Frame::encode_message(json).into())),
            _ => None,
        }
    }

    /// Text for the bot (protobuf's `TextFrame`); `None` where the wire
    /// has no way to carry it.
    pub fn encode_text(self, text: &str) -> Option<Message> {
        match self {
            Serializer::Protobuf => Some(Message::Binary(Frame::encode_text(text).into())),
            _ => None,
        }
    }

    /// What the client says first. Pipecat's runner reads Twilio's `connected`
    /// and `start` events before it starts the bot.
    pub fn handshake(self, stream_sid: &str, call_sid: &str) -> Vec<Message> {
        match self {
            Serializer::Twilio => {
                let connected = serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
                let start = serde_json::json!({
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": stream_sid,
                    "start": {
                        "streamSid": stream_sid,
                        "callSid": call_sid,
                        "accountSid": "",
                        "tracks": ["inbound"],
                        "customParameters": {},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TELEPHONY_RATE, "channels": 1},
                    },
                });
                vec![
                    Message::Text(connected.to_string().into()),
                    Message::Text(start.to_string().into()),
                ]
            }
            _ => Vec::new(),
        }
    }

    /// The format of the bot's audio, if the wire fixes it (every
    /// telephony wire is 8 kHz mono).
    pub fn wire_format(self) -> Option<Format> {
        self.telephony().map(|t| Format {
            rate: TELEPHONY_RATE,
            channels: 1,
            law: t.law,
        })
    }

    /// The rate the bot must be sent audio at, if the wire fixes it.
    pub fn fixed_rate(self) -> Option<u32> {
        self.telephony().map(|_| TELEPHONY_RATE)
    }
}

impl Telephony {
    fn decode(&self, text: &str) -> Result<Inbound, String> {
        let json: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("telephony message is not JSON: {e}"))?;
        let event = json.get("event").and_then(|e| e.as_str());
        if event == Some(self.bot_media) {
            let payload = json
                .pointer("/media/payload")
                .and_then(|p| p.as_str())
                .ok_or_else(|| format!("{} event without media.payload", self.bot_media))?;
            let coded = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|e| format!("media payload is not base64: {e}"))?;
            if self.law.is_none() && coded.len() % 2 != 0 {
                return Err(format!("S16LE payload of odd length {}", coded.len()));
            }
            return Ok(Inbound::Audio(WireAudio {
                data: coded,
                rate: TELEPHONY_RATE,
                channels: 1,
                law: self.law,
            }));
        }
        if event == Some(self.bot_clear) {
            return Ok(Inbound::Interruption);
        }
        Ok(Inbound::Message(text.to_owned()))
    }
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
                data: vec![0xFF, 0x00],
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
                data: vec![1, 0, 2, 0],
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
            (16000, 0, "num_channels 0"),
            (16000, 9, "num_channels=9"),
        ] {
            let msg = Message::Binary(Frame::encode_audio(&[0; 36], rate, channels).into());
            let err = Serializer::Protobuf.decode(&msg).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        let ok = Message::Binary(Frame::encode_audio(&[0; 32], 192_000, 8).into());
        assert!(Serializer::Protobuf.decode(&ok).is_ok());
    }

    #[test]
    fn protobuf_audio_round_trips() {
        let msg = Serializer::Protobuf.encode_audio(&[1, 0, 2, 0], 16000, "");
        assert_eq!(
            Serializer::Protobuf.decode(&msg).unwrap(),
            Inbound::Audio(WireAudio {
                data: vec![1, 0, 2, 0],
                rate: 16000,
                channels: 1,
                law: None
            })
        );
    }
}
