//! The few messages of Pipecat's `frames.proto` this plugin speaks, with a
//! hand-written codec: proto3 wire format is small, and a generated codec
//! would need `protoc` at build time.
//!
//! `Frame` is a oneof: text = 1, audio = 2, transcription = 3, message = 4,
//! interruption = 5. `AudioRawFrame`: audio = 3 (bytes), sample_rate = 4,
//! num_channels = 5.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Audio {
        audio: Vec<u8>,
        sample_rate: u32,
        num_channels: u32,
    },
    Transcription {
        text: String,
        user_id: String,
        timestamp: String,
    },
    Message(String),
    Interruption,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates the fields of one message: (field number, value).
struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .data
                .split_first()
                .ok_or_else(|| DecodeError("truncated varint".into()))?;
            self.data = rest;
            value |= ((byte & 0x7F) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.data.len() {
            return Err(DecodeError(format!(
                "field of {n} bytes with only {} left",
                self.data.len()
            )));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Option<Result<(u64, Value<'a>), DecodeError>> {
        if self.data.is_empty() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Fixed
                }
                2 => {
                    let len = self.varint()? as usize;
                    Value::Bytes(self.take(len)?)
                }
                5 => {
                    self.take(4)?;
                    Value::Fixed
                }
                wire => return Err(DecodeError(format!("unsupported wire type {wire}"))),
            };
            Ok((key >> 3, value))
        })())
    }
}

fn fields(data: &[u8]) -> Fields<'_> {
    Fields { data }
}

fn string(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("string field is not UTF-8".into()))
}

/// Reads the string fields `wanted` of a sub-message, in that order.
fn strings<const N: usize>(data: &[u8], wanted: [u64; N]) -> Result<[String; N], DecodeError> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    let mut it = fields(data);
    while let Some(field) = it.next_field() {
        if let (number, Value::Bytes(b)) = field?
            && let Some(i) = wanted.iter().position(|&w| w == number)
        {
            out[i] = string(b)?;
        }
    }
    Ok(out)
}

impl Frame {
    pub fn decode(data: &[u8]) -> Result<Frame, DecodeError> {
        let mut frame = None;
        let mut it = fields(data);
        while let Some(field) = it.next_field() {
            let (number, value) = field?;
            let Value::Bytes(body) = value else { continue };
            frame = Some(match number {
                1 => Frame::Text(strings(body, [3])?.into_iter().next().unwrap()),
                2 => decode_audio(body)?,
                3 => {
                    let [text, user_id, timestamp] = strings(body, [3, 4, 5])?;
                    Frame::Transcription {
                        text,
                        user_id,
                        timestamp,
                    }
                }
                4 => Frame::Message(strings(body, [1])?.into_iter().next().unwrap()),
                5 => Frame::Interruption,
                _ => continue,
            });
        }
        frame.ok_or_else(|| {
            DecodeError(format!(
                "no known frame in a message of {} bytes",
                data.len()
            ))
        })
    }

    /// Encodes an audio frame, the only kind this plugin sends.
    /// A `MessageFrame` (JSON text; Pipecat reads it as an
    /// `InputTransportMessageFrame`).
    pub fn encode_message(json: &str) -> Vec<u8> {
        let mut inner = Vec::with_capacity(json.len() + 4);
        put_bytes(&mut inner, 1, json.as_bytes());
        let mut out = Vec::with_capacity(inner.len() + 6);
        put_bytes(&mut out, 4, &inner);
        out
    }

    /// A `TextFrame`.
    pub fn encode_text(text: &str) -> Vec<u8> {
        let mut inner = Vec::with_capacity(text.len() + 4);
        put_bytes(&mut inner, 3, text.as_bytes());
        let mut out = Vec::with_capacity(inner.len() + 6);
        put_bytes(&mut out, 1, &inner);
        out
    }

    pub fn encode_audio(audio: &[u8], sample_rate: u32, num_channels: u32) -> Vec<u8> {
        let mut inner = Vec::with_capacity(audio.len() + 16);
        put_bytes(&mut inner, 3, audio);
        put_varint_field(&mut inner, 4, sample_rate as u64);
        put_varint_field(&mut inner, 5, num_channels as u64);
        let mut out = Vec::with_capacity(inner.len() + 6);
        put_bytes(&mut out, 2, &inner);
        out
    }
}

fn decode_audio(body: &[u8]) -> Result<Frame, DecodeError> {
    let (mut audio, mut sample_rate, mut num_channels) = (Vec::new(), 0, 0);
    let mut it = fields(body);
    while let Some(field) = it.next_field() {
        match field? {
            (3, Value::Bytes(b)) => audio = b.to_vec(),
            (4, Value::Varint(v)) => sample_rate = v as u32,
            (5, Value::Varint(v)) => num_channels = v as u32,
            _ => {}
        }
    }
    if sample_rate == 0 || num_channels == 0 {
        return Err(DecodeError(format!(
            "audio frame with sample_rate {sample_rate}, num_channels {num_channels}"
        )));
    }
    Ok(Frame::Audio {
        audio,
        sample_rate,
        num_channels,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, number: u64, v: u64) {
    put_varint(out, number << 3);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_texts_round_trip() {
        assert_eq!(
            Frame::decode(&Frame::encode_message(r#"{"a":1}"#)).unwrap(),
            Frame::Message(r#"{"a":1}"#.into())
        );
        assert_eq!(
            Frame::decode(&Frame::encode_text("héllo")).unwrap(),
            Frame::Text("héllo".into())
        );
    }

    #[test]
    fn audio_round_trips() {
        let audio: Vec<u8> = (0..=255).collect();
        let bytes = Frame::encode_audio(&audio, 24000, 1);
        assert_eq!(
            Frame::decode(&bytes).unwrap(),
            Frame::Audio {
                audio,
                sample_rate: 24000,
                num_channels: 1
            }
        );
    }

    #[test]
    fn decodes_what_python_protobuf_writes() {
        // frames_pb2.Frame(text=TextFrame(id=7, name="t", text="hi")).SerializeToString()
        let text = [
            0x0a, 0x09, 0x08, 0x07, 0x12, 0x01, b't', 0x1a, 0x02, b'h', b'i',
        ];
        assert_eq!(Frame::decode(&text).unwrap(), Frame::Text("hi".into()));
        // Frame(interruption=InterruptionFrame())
        assert_eq!(Frame::decode(&[0x2a, 0x00]).unwrap(), Frame::Interruption);
        // Frame(message=MessageFrame(data='{"a":1}'))
        let msg = [
            0x22, 0x09, 0x0a, 0x07, b'{', b'"', b'a', b'"', b':', b'1', b'}',
        ];
        assert_eq!(
            Frame::decode(&msg).unwrap(),
            Frame::Message("{\"a\":1}".into())
        );
    }

    #[test]
    fn garbage_is_an_error_that_says_why() {
        assert!(Frame::decode(b"").unwrap_err().0.contains("no known frame"));
        assert!(
            Frame::decode(&[0x12, 0x50, 0x01])
                .unwrap_err()
                .0
                .contains("bytes with only")
        );
        assert!(Frame::decode(&[0x0f]).unwrap_err().0.contains("wire type"));
        assert!(
            Frame::decode(&[0x12, 0x02, 0x20, 0x00])
                .unwrap_err()
                .0
                .contains("sample_rate 0")
        );
    }
}
