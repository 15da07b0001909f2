//! Pipecat's wire formats, as `pipecat-ai` 1.14 implements them
//! (`pipecat/serializers/protobuf.py`, `twilio.py`).

use base64::Engine;
use gst::glib;
use tokio_tungstenite::tungstenite::Message;

use crate::g711;
use crate::protobuf::Frame;

#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstPipecatSerializer")]
pub enum Serializer {
    #[default]
    #[enum_value(name = "Protobuf: ProtobufFrameSerializer, binary frames.proto messages", nick = "protobuf")]
    Protobuf,
    #[enum_value(name = "Twilio: Twilio Media Streams JSON, base64 mu-law 8 kHz", nick = "twilio")]
    Twilio,
}

/// What one message from the bot means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Interleaved S16LE.
    Audio { pcm: Vec<u8>, rate: u32, channels: u32 },
    Text(String),
    Transcription { text: String, user_id: String, timestamp: String },
    /// JSON text: RTVI and other transport messages.
    Message(String),
    Interruption,
    /// A message of the protocol that carries nothing for us (e.g. a ping text).
    Nothing,
}

/// Twilio's media format: mu-law, 8 kHz, mono.
pub const TWILIO_RATE: u32 = 8000;

impl Serializer {
    pub fn decode(self, msg: &Message) -> Result<Inbound, String> {
        match (self, msg) {
            (Serializer::Protobuf, Message::Binary(data)) => Ok(match Frame::decode(data).map_err(|e| e.0)? {
                Frame::Audio { audio, sample_rate, num_channels } => {
                    if audio.len() % (2 * num_channels as usize) != 0 {
                        return Err(format!("audio of {} bytes is not whole S16 frames of {num_channels} channel(s)", audio.len()));
                    }
                    Inbound::Audio { pcm: audio, rate: sample_rate, channels: num_channels }
                }
                Frame::Text(text) => Inbound::Text(text),
                Frame::Transcription { text, user_id, timestamp } => Inbound::Transcription { text, user_id, timestamp },
                Frame::Message(data) => Inbound::Message(data),
                Frame::Interruption => Inbound::Interruption,
            }),
            (Serializer::Protobuf, Message::Text(_)) => Err("a text message where protobuf expects binary".into()),
            (Serializer::Twilio, Message::Text(text)) => decode_twilio(text),
            (Serializer::Twilio, Message::Binary(_)) => Err("a binary message where Twilio JSON was expected".into()),
            _ => Ok(Inbound::Nothing),
        }
    }

    /// Caller audio (mono S16LE at `rate`) as the bot expects it.
    pub fn encode_audio(self, pcm: &[u8], rate: u32, stream_sid: &str) -> Message {
        match self {
            Serializer::Protobuf => Message::Binary(Frame::encode_audio(pcm, rate, 1).into()),
            Serializer::Twilio => {
                let payload = base64::engine::general_purpose::STANDARD.encode(g711::encode(pcm));
                let json = serde_json::json!({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}});
                Message::Text(json.to_string().into())
            }
        }
    }

    /// What the client says first. Pipecat's runner reads Twilio's `connected`
    /// and `start` events before it starts the bot.
    pub fn handshake(self, stream_sid: &str, call_sid: &str) -> Vec<Message> {
        match self {
            Serializer::Protobuf => Vec::new(),
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
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TWILIO_RATE, "channels": 1},
                    },
                });
                vec![Message::Text(connected.to_string().into()), Message::Text(start.to_string().into())]
            }
        }
    }

    /// The rate the bot must be sent audio at, if the wire fixes it.
    pub fn fixed_rate(self) -> Option<u32> {
        match self {
            Serializer::Protobuf => None,
            Serializer::Twilio => Some(TWILIO_RATE),
        }
    }
}

fn decode_twilio(text: &str) -> Result<Inbound, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("Twilio message is not JSON: {e}"))?;
    match json.get("event").and_then(|e| e.as_str()) {
        Some("media") => {
            let payload = json
                .pointer("/media/payload")
                .and_then(|p| p.as_str())
                .ok_or("Twilio media event without media.payload")?;
            let ulaw = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|e| format!("Twilio media payload is not base64: {e}"))?;
            Ok(Inbound::Audio { pcm: g711::decode(&ulaw), rate: TWILIO_RATE, channels: 1 })
        }
        Some("clear") => Ok(Inbound::Interruption),
        _ => Ok(Inbound::Message(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_media_decodes_to_s16() {
        let msg = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/wA="}}"#;
        assert_eq!(
            Serializer::Twilio.decode(&Message::Text(msg.into())).unwrap(),
            Inbound::Audio { pcm: vec![0, 0, 0x84, 0x82], rate: 8000, channels: 1 }
        );
        let clear = r#"{"event":"clear","streamSid":"MZ1"}"#;
        assert_eq!(Serializer::Twilio.decode(&Message::Text(clear.into())).unwrap(), Inbound::Interruption);
        assert!(Serializer::Twilio.decode(&Message::Text("{nope".into())).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn protobuf_audio_round_trips() {
        let msg = Serializer::Protobuf.encode_audio(&[1, 0, 2, 0], 16000, "");
        assert_eq!(
            Serializer::Protobuf.decode(&msg).unwrap(),
            Inbound::Audio { pcm: vec![1, 0, 2, 0], rate: 16000, channels: 1 }
        );
    }
}
