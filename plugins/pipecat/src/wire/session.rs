// SPDX-License-Identifier: MPL-2.0
//! The client's side of one call: what it says to the bot, as the provider
//! it stands in for (Twilio, Telnyx, ..., or a Pipecat client) says it.
//!
//! Pipecat's development runner (`pipecat/runner/utils.py`) reads the first
//! two messages of a telephony socket to tell the provider and the call's
//! ids, so each wire's handshake carries exactly the fields it looks for.
//! Shared by the sink's streaming thread, the application's signals and
//! the reader (AudioHook's `close`): its counters are atomics, no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::wire::protobuf;
use crate::wire::serializer::{Serializer, TELEPHONY_RATE, VONAGE_RATE};
use callaudio::g711;

/// The keys a DTMF event may carry: the ones Pipecat's `KeypadEntry` takes
/// (A-D are refused by every Pipecat serializer, so they are not sent).
pub const DTMF_KEYS: &str = "0123456789*#";

/// The RFC 2833/4733 event number of a key (`dtmf-event`'s `number`).
pub fn dtmf_key_of_event(number: i32) -> Option<char> {
    match number {
        0..=9 => char::from_digit(number as u32, 10),
        10 => Some('*'),
        11 => Some('#'),
        _ => None,
    }
}

/// The call's ids, as the properties `stream-sid` and `call-sid` give them.
#[derive(Debug, Clone, Default)]
pub struct CallIds {
    pub stream_sid: String,
    pub call_sid: String,
}

pub struct Session {
    serializer: Serializer,
    ids: CallIds,
    /// Numbers the client's AudioHook messages, and RTVI message ids.
    seq: AtomicU64,
    /// Frames sent at the wire rate: AudioHook's `position`.
    frames_sent: AtomicU64,
}

impl Session {
    pub fn new(serializer: Serializer, ids: CallIds) -> Self {
        Session {
            serializer,
            ids,
            seq: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
        }
    }

    pub fn serializer(&self) -> Serializer {
        self.serializer
    }

    fn text(json: Value) -> Message {
        Message::Text(json.to_string().into())
    }

    /// What the client says first, before any audio.
    pub fn handshake(&self) -> Vec<Message> {
        let CallIds {
            stream_sid,
            call_sid,
        } = &self.ids;
        let rate = TELEPHONY_RATE;
        match self.serializer {
            Serializer::Protobuf => vec![],
            Serializer::Twilio => vec![
                Self::text(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})),
                Self::text(json!({
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": stream_sid,
                    "start": {
                        "streamSid": stream_sid,
                        "callSid": call_sid,
                        "accountSid": "",
                        "tracks": ["inbound"],
                        "customParameters": {},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": rate, "channels": 1},
                    },
                })),
            ],
            Serializer::Telnyx | Serializer::TelnyxPcma => {
                let encoding = if self.serializer == Serializer::Telnyx {
                    "PCMU"
                } else {
                    "PCMA"
                };
                vec![
                    Self::text(json!({"event": "connected", "version": "1.0.0"})),
                    Self::text(json!({
                        "event": "start",
                        "sequence_number": "1",
                        "stream_id": stream_sid,
                        "start": {
                            "call_control_id": call_sid,
                            "client_state": "",
                            "from": "",
                            "to": "",
                            "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1},
                        },
                    })),
                ]
            }
            // Plivo says only `start` first, but Pipecat's runner reads two
            // messages before it starts the bot and drops the second: an
            // empty media event (which every Plivo serializer ignores) takes
            // that place, so the caller's first audio or key is not lost.
            Serializer::Plivo => vec![
                Self::text(json!({
                    "event": "start",
                    "sequenceNumber": 1,
                    "start": {
                        "streamId": stream_sid,
                        "callId": call_sid,
                        "accountId": "",
                        "tracks": ["inbound"],
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": rate},
                    },
                    "extra_headers": "{}",
                })),
                self.event("media", "media", json!({"track": "inbound", "payload": ""})),
            ],
            Serializer::Exotel => vec![
                Self::text(json!({"event": "connected"})),
                Self::text(json!({
                    "event": "start",
                    "sequence_number": 1,
                    "stream_sid": stream_sid,
                    "start": {
                        "stream_sid": stream_sid,
                        "call_sid": call_sid,
                        "account_sid": "",
                        "from": "",
                        "to": "",
                        "custom_parameters": {},
                        "media_format": {"encoding": "base64", "sample_rate": rate.to_string(), "bit_rate": "128kbps"},
                    },
                })),
            ],
            Serializer::Vonage => vec![Self::text(json!({
                "event": "websocket:connected",
                "content-type": format!("audio/l16;rate={VONAGE_RATE}"),
            }))],
            Serializer::Genesys => vec![self.audiohook(
                "open",
                json!({
                    "organizationId": "",
                    "conversationId": call_sid,
                    "participant": {"id": "", "ani": "", "aniName": "", "dnis": ""},
                    "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": rate}],
                    "language": "en-US",
                }),
            )],
        }
    }

    /// An AudioHook message of the client's: numbered, at the position of
    /// the audio sent so far.
    fn audiohook(&self, kind: &str, parameters: Value) -> Message {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let frames = self.frames_sent.load(Ordering::Relaxed);
        let position = format!(
            "PT{}.{:03}S",
            frames / TELEPHONY_RATE as u64,
            frames % TELEPHONY_RATE as u64 * 1000 / TELEPHONY_RATE as u64
        );
        Self::text(json!({
            "version": "2",
            "id": self.ids.stream_sid,
            "type": kind,
            "seq": seq,
            "serverseq": 0,
            "position": position,
            "parameters": parameters,
        }))
    }

    /// A JSON event that names the stream the way the provider does.
    fn event(&self, event: &str, body_key: &str, body: Value) -> Message {
        let mut msg = json!({ "event": event, body_key: body });
        let sid = &self.ids.stream_sid;
        match self.serializer {
            Serializer::Twilio => msg["streamSid"] = sid.as_str().into(),
            Serializer::Telnyx | Serializer::TelnyxPcma => msg["stream_id"] = sid.as_str().into(),
            Serializer::Plivo => msg["streamId"] = sid.as_str().into(),
            Serializer::Exotel => msg["stream_sid"] = sid.as_str().into(),
            _ => {}
        }
        Self::text(msg)
    }

    /// Caller audio (mono S16LE at `rate`) as the bot expects it. A wire
    /// with a fixed rate gets it at that rate: the sink's caps see to it.
    pub fn audio(&self, pcm: &[u8], rate: u32) -> Message {
        if self.serializer == Serializer::Protobuf {
            return Message::Binary(protobuf::encode_audio(pcm, rate, 1).into());
        }
        let coded = match self.serializer.law() {
            Some(law) => g711::encode_law(law, pcm),
            None => pcm.to_vec(),
        };
        match self.serializer {
            Serializer::Vonage => Message::Binary(coded.into()),
            Serializer::Genesys => {
                self.frames_sent
                    .fetch_add(coded.len() as u64, Ordering::Relaxed);
                Message::Binary(coded.into())
            }
            _ => {
                let payload = base64::engine::general_purpose::STANDARD.encode(coded);
                self.event("media", "media", json!({ "payload": payload }))
            }
        }
    }

    /// One key pressed by the caller (one of `DTMF_KEYS`), as the provider
    /// reports it; on protobuf, the RTVI `dtmf` client message, which the
    /// bot's RTVI processor turns into the same `InputDTMFFrame`.
    pub fn dtmf(&self, key: char) -> Message {
        let digit = key.to_string();
        match self.serializer {
            Serializer::Protobuf => {
                let id = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
                let rtvi = json!({
                    "label": "rtvi-ai",
                    "type": "dtmf",
                    "id": format!("dtmf-{id}"),
                    "data": {"buttons": [digit]},
                });
                Message::Binary(protobuf::encode_message(&rtvi.to_string()).into())
            }
            Serializer::Twilio => self.event(
                "dtmf",
                "dtmf",
                json!({"track": "inbound_track", "digit": digit}),
            ),
            Serializer::Vonage => Self::text(json!({"event": "websocket:dtmf", "digit": digit})),
            Serializer::Genesys => self.audiohook("dtmf", json!({ "digit": digit })),
            _ => self.event("dtmf", "dtmf", json!({ "digit": digit })),
        }
    }

    /// A JSON message for the bot, where the wire has a way to carry one
    /// (protobuf's `MessageFrame`); `None` where it has none.
    pub fn message(&self, json: &str) -> Option<Message> {
        (self.serializer == Serializer::Protobuf)
            .then(|| Message::Binary(protobuf::encode_message(json).into()))
    }

    /// Text for the bot (protobuf's `TextFrame`); `None` where the wire
    /// has no way to carry it.
    pub fn text_frame(&self, text: &str) -> Option<Message> {
        (self.serializer == Serializer::Protobuf)
            .then(|| Message::Binary(protobuf::encode_text(text).into()))
    }

    /// The client's answer to a bot that asks to end the session
    /// (AudioHook's `close`, which the bot answers with `closed`).
    pub fn close(&self) -> Option<Message> {
        (self.serializer == Serializer::Genesys)
            .then(|| self.audiohook("close", json!({"reason": "end"})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::serializer::{ALL, Inbound, WireAudio};

    fn json_of(msg: &Message) -> Value {
        match msg {
            Message::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("not text: {other:?}"),
        }
    }

    fn session(serializer: Serializer) -> Session {
        Session::new(
            serializer,
            CallIds {
                stream_sid: "S1".into(),
                call_sid: "C1".into(),
            },
        )
    }

    /// The fields `pipecat/runner/utils.py` looks for to tell the provider.
    #[test]
    fn handshakes_carry_what_pipecats_runner_detects() {
        let start = |s| {
            let hs = session(s).handshake();
            json_of(hs.last().unwrap())
        };
        let twilio = start(Serializer::Twilio);
        assert_eq!(twilio["event"], "start");
        assert_eq!(twilio["start"]["streamSid"], "S1");
        assert_eq!(twilio["start"]["callSid"], "C1");
        for s in [Serializer::Telnyx, Serializer::TelnyxPcma] {
            let telnyx = start(s);
            assert_eq!(telnyx["stream_id"], "S1");
            assert_eq!(telnyx["start"]["call_control_id"], "C1");
        }
        assert_eq!(
            start(Serializer::TelnyxPcma)["start"]["media_format"]["encoding"],
            "PCMA"
        );
        let plivo = json_of(&session(Serializer::Plivo).handshake()[0]);
        assert_eq!(plivo["start"]["streamId"], "S1");
        assert_eq!(plivo["start"]["callId"], "C1");
        let exotel = start(Serializer::Exotel);
        assert_eq!(exotel["event"], "start");
        assert_eq!(exotel["start"]["stream_sid"], "S1");
        assert_eq!(exotel["start"]["call_sid"], "C1");
        assert!(exotel["start"].get("account_sid").is_some());
        let genesys = start(Serializer::Genesys);
        assert_eq!(genesys["type"], "open");
        assert_eq!(genesys["seq"], 1);
        assert_eq!(genesys["parameters"]["media"][0]["format"], "PCMU");
        assert!(session(Serializer::Protobuf).handshake().is_empty());
    }

    /// What the client sends is what Pipecat's serializer for that wire
    /// reads: the bot side decodes our audio with the same rules.
    #[test]
    fn caller_audio_is_in_the_wires_own_format() {
        let pcm: Vec<u8> = [0i16, 1000, -1000, 32767]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        for s in ALL {
            let msg = session(s).audio(&pcm, s.fixed_rate().unwrap_or(16000));
            let carried = match (&msg, s) {
                (Message::Binary(b), Serializer::Protobuf) => match protobuf::decode(b).unwrap() {
                    protobuf::Kind::Audio(frame) => frame.audio.to_vec(),
                    other => panic!("{other:?}"),
                },
                (Message::Binary(b), _) => b.to_vec(),
                (Message::Text(_), _) => {
                    let payload = json_of(&msg)["media"]["payload"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    base64::engine::general_purpose::STANDARD
                        .decode(payload)
                        .unwrap()
                }
                other => panic!("{other:?}"),
            };
            let decoded = WireAudio {
                data: carried.into(),
                rate: 8000,
                channels: 1,
                law: s.law(),
            }
            .into_s16le();
            let expected = match s.law() {
                Some(law) => g711::decode_law(law, &g711::encode_law(law, &pcm)),
                None => pcm.clone(),
            };
            assert_eq!(decoded, expected, "{}", s.nick());
        }
    }

    #[test]
    fn dtmf_is_each_providers_event() {
        let twilio = json_of(&session(Serializer::Twilio).dtmf('5'));
        assert_eq!(twilio["event"], "dtmf");
        assert_eq!(twilio["dtmf"]["digit"], "5");
        assert_eq!(twilio["streamSid"], "S1");
        let vonage = json_of(&session(Serializer::Vonage).dtmf('#'));
        assert_eq!(vonage["event"], "websocket:dtmf");
        assert_eq!(vonage["digit"], "#");
        let genesys = session(Serializer::Genesys);
        genesys.handshake();
        let dtmf = json_of(&genesys.dtmf('*'));
        assert_eq!(
            (dtmf["type"].as_str(), dtmf["seq"].as_u64()),
            (Some("dtmf"), Some(2))
        );
        assert_eq!(dtmf["parameters"]["digit"], "*");
        let Message::Binary(proto) = session(Serializer::Protobuf).dtmf('1') else {
            panic!("protobuf is binary")
        };
        let protobuf::Kind::Message(protobuf::MessageFrame { data: rtvi }) =
            protobuf::decode(&proto).unwrap()
        else {
            panic!("a MessageFrame")
        };
        let rtvi: Value = serde_json::from_str(&rtvi).unwrap();
        assert_eq!(rtvi["label"], "rtvi-ai");
        assert_eq!(rtvi["data"]["buttons"][0], "1");
        assert_eq!(dtmf_key_of_event(11), Some('#'));
        assert_eq!(dtmf_key_of_event(12), None);
    }

    #[test]
    fn audiohook_position_follows_the_audio_sent() {
        let s = session(Serializer::Genesys);
        s.audio(&vec![0; 2 * 12000], 8000);
        let close = json_of(&s.close().unwrap());
        assert_eq!(close["type"], "close");
        assert_eq!(close["position"], "PT1.500S");
        assert!(session(Serializer::Twilio).close().is_none());
    }

    #[test]
    fn protobuf_audio_round_trips() {
        let msg = session(Serializer::Protobuf).audio(&[1, 0, 2, 0], 16000);
        assert_eq!(
            Serializer::Protobuf.decode(&msg).unwrap(),
            Inbound::Audio(WireAudio {
                data: vec![1, 0, 2, 0].into(),
                rate: 16000,
                channels: 1,
                law: None
            })
        );
    }
}
