// SPDX-License-Identifier: MPL-2.0
//! Pipecat's `frames.proto` (as `pipecat-ai` 1.14 ships it), as `prost`
//! messages. The derives need no `protoc` at build time; the field numbers
//! below are the `.proto`'s, and the golden-byte tests hold them to what
//! Python's protobuf writes.
//!
//! Decoding is bounded by the message itself: a length prefix larger than
//! what is left is an error before anything is allocated for it, nesting is
//! limited by prost's recursion limit, and unknown fields are skipped.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct TextFrame {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub text: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct AudioRawFrame {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    /// A slice of the message it came in, not a copy.
    #[prost(bytes = "bytes", tag = "3")]
    pub audio: bytes::Bytes,
    #[prost(uint32, tag = "4")]
    pub sample_rate: u32,
    #[prost(uint32, tag = "5")]
    pub num_channels: u32,
    #[prost(uint64, optional, tag = "6")]
    pub pts: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TranscriptionFrame {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub text: String,
    #[prost(string, tag = "4")]
    pub user_id: String,
    #[prost(string, tag = "5")]
    pub timestamp: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct MessageFrame {
    #[prost(string, tag = "1")]
    pub data: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct InterruptionFrame {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
}

/// `Frame`: a oneof of the frames above.
#[derive(Clone, PartialEq, Message)]
pub struct Frame {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5")]
    pub frame: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(message, tag = "1")]
    Text(TextFrame),
    #[prost(message, tag = "2")]
    Audio(AudioRawFrame),
    #[prost(message, tag = "3")]
    Transcription(TranscriptionFrame),
    #[prost(message, tag = "4")]
    Message(MessageFrame),
    #[prost(message, tag = "5")]
    Interruption(InterruptionFrame),
}

/// Reads one `Frame`: the frame it holds, or why there is none.
pub fn decode(data: &[u8]) -> Result<Kind, String> {
    decode_buf(data)
}

/// As `decode`, but the audio shares `data` instead of being copied (the
/// read path: one allocation and copy less per message).
pub fn decode_shared(data: bytes::Bytes) -> Result<Kind, String> {
    decode_buf(data)
}

fn decode_buf(data: impl bytes::Buf) -> Result<Kind, String> {
    let len = data.remaining();
    Frame::decode(data)
        .map_err(|e| {
            // prost's words for a length prefix past the end of the message.
            let hint = if e.to_string().contains("buffer underflow") {
                "; a field claims more bytes than the message has"
            } else {
                ""
            };
            format!("not a Pipecat protobuf frame ({} bytes): {e}{hint}", len)
        })?
        .frame
        .ok_or_else(|| format!("no known frame in a message of {} bytes", len))
}

fn encode(kind: Kind) -> Vec<u8> {
    Frame { frame: Some(kind) }.encode_to_vec()
}

/// A `MessageFrame` (JSON text; Pipecat reads it as an
/// `InputTransportMessageFrame`).
pub fn encode_message(json: &str) -> Vec<u8> {
    encode(Kind::Message(MessageFrame { data: json.into() }))
}

/// A `TextFrame`.
pub fn encode_text(text: &str) -> Vec<u8> {
    encode(Kind::Text(TextFrame {
        text: text.into(),
        ..Default::default()
    }))
}

/// An `AudioRawFrame`: interleaved S16LE. Every buffer the sink sends is
/// one, so the audio is copied once, straight into the message, rather
/// than into an `AudioRawFrame` first; the bytes are the derive's (tested).
pub fn encode_audio(audio: &[u8], sample_rate: u32, num_channels: u32) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, uint32};
    let numbers = |out: &mut Vec<u8>| {
        // proto3: a zero is not written.
        if sample_rate != 0 {
            uint32::encode(4, &sample_rate, out);
        }
        if num_channels != 0 {
            uint32::encode(5, &num_channels, out);
        }
    };
    let mut tail = Vec::with_capacity(12);
    numbers(&mut tail);
    let audio_len = if audio.is_empty() {
        0
    } else {
        1 + encoded_len_varint(audio.len() as u64) + audio.len()
    };
    let inner = audio_len + tail.len();
    let mut out = Vec::with_capacity(1 + encoded_len_varint(inner as u64) + inner);
    encode_key(2, WireType::LengthDelimited, &mut out);
    encode_varint(inner as u64, &mut out);
    if !audio.is_empty() {
        encode_key(3, WireType::LengthDelimited, &mut out);
        encode_varint(audio.len() as u64, &mut out);
        out.extend_from_slice(audio);
    }
    out.extend_from_slice(&tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str) -> Kind {
        Kind::Text(TextFrame {
            text: text.into(),
            ..Default::default()
        })
    }

    #[test]
    fn messages_and_texts_round_trip() {
        assert_eq!(
            decode(&encode_message(r#"{"a":1}"#)).unwrap(),
            Kind::Message(MessageFrame {
                data: r#"{"a":1}"#.into()
            })
        );
        assert_eq!(decode(&encode_text("héllo")).unwrap(), text("héllo"));
    }

    #[test]
    fn audio_round_trips() {
        let audio: Vec<u8> = (0..=255).collect();
        let bytes = encode_audio(&audio, 24000, 1);
        let Kind::Audio(frame) = decode(&bytes).unwrap() else {
            panic!("not audio");
        };
        assert_eq!(
            (frame.audio, frame.sample_rate, frame.num_channels),
            (audio.into(), 24000, 1)
        );
    }

    #[test]
    fn decodes_what_python_protobuf_writes() {
        // frames_pb2.Frame(text=TextFrame(id=7, name="t", text="hi")).SerializeToString()
        let bytes = [
            0x0a, 0x09, 0x08, 0x07, 0x12, 0x01, b't', 0x1a, 0x02, b'h', b'i',
        ];
        assert_eq!(
            decode(&bytes).unwrap(),
            Kind::Text(TextFrame {
                id: 7,
                name: "t".into(),
                text: "hi".into()
            })
        );
        // Frame(interruption=InterruptionFrame())
        assert_eq!(
            decode(&[0x2a, 0x00]).unwrap(),
            Kind::Interruption(InterruptionFrame::default())
        );
        // Frame(message=MessageFrame(data='{"a":1}'))
        let msg = [
            0x22, 0x09, 0x0a, 0x07, b'{', b'"', b'a', b'"', b':', b'1', b'}',
        ];
        assert_eq!(
            decode(&msg).unwrap(),
            Kind::Message(MessageFrame {
                data: "{\"a\":1}".into()
            })
        );
    }

    #[test]
    fn writes_what_python_protobuf_writes() {
        // Frame(message=MessageFrame(data='{"a":1}')).SerializeToString()
        assert_eq!(
            encode_message(r#"{"a":1}"#),
            [
                0x22, 0x09, 0x0a, 0x07, b'{', b'"', b'a', b'"', b':', b'1', b'}'
            ]
        );
        // Frame(text=TextFrame(text="hi")): defaults are not written.
        assert_eq!(encode_text("hi"), [0x0a, 0x04, 0x1a, 0x02, b'h', b'i']);
        // Frame(audio=AudioRawFrame(audio=b"\x01\x02", sample_rate=16000, num_channels=1))
        assert_eq!(
            encode_audio(&[1, 2], 16000, 1),
            [
                0x12, 0x09, 0x1a, 0x02, 0x01, 0x02, 0x20, 0x80, 0x7d, 0x28, 0x01
            ]
        );
    }

    #[test]
    fn the_audio_fast_path_writes_what_the_derive_writes() {
        for (len, rate, channels) in [
            (0, 16000, 1),
            (2, 0, 0),
            (320, 8000, 2),
            (70_000, 48_000, 8),
        ] {
            let audio: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let derived = encode(Kind::Audio(AudioRawFrame {
                audio: audio.clone().into(),
                sample_rate: rate,
                num_channels: channels,
                ..Default::default()
            }));
            assert_eq!(
                encode_audio(&audio, rate, channels),
                derived,
                "{len} {rate} {channels}"
            );
        }
    }

    #[test]
    fn shared_decoding_hands_out_the_audio_without_a_copy() {
        let audio: Vec<u8> = (0..=255).collect();
        let message = bytes::Bytes::from(encode_audio(&audio, 16000, 1));
        let Kind::Audio(frame) = decode_shared(message.clone()).unwrap() else {
            panic!("not audio");
        };
        assert_eq!(frame.audio, audio);
        assert!(
            message.as_ptr_range().contains(&frame.audio.as_ptr()),
            "the audio was copied out of the message"
        );
    }

    #[test]
    fn garbage_is_an_error_that_says_why() {
        assert!(decode(b"").unwrap_err().contains("no known frame"));
        // A length prefix of 80 bytes with one left: refused, not allocated.
        let short = decode(&[0x12, 0x50, 0x01]).unwrap_err();
        assert!(
            short.contains("not a Pipecat protobuf frame (3 bytes)"),
            "{short}"
        );
        let wire = decode(&[0x0f]).unwrap_err();
        assert!(wire.contains("wire type"), "{wire}");
        let utf8 = decode(&[0x0a, 0x03, 0x1a, 0x01, 0xff]).unwrap_err();
        assert!(utf8.contains("UTF-8"), "{utf8}");
    }
}
