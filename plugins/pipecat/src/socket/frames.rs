// SPDX-License-Identifier: MPL-2.0
//! WebSocket frames (RFC 6455, the client's side): the bot's, read out of a
//! buffer of our own, and ours, framed and masked for the bot.
//!
//! tokio-tungstenite reads through five layers per message (its stream,
//! the split's lock, waker proxies, the frame codec, and a sniffer beneath
//! for close codes it would rewrite), zero-fills its read buffer before
//! every read, and lets that buffer shrink until a message takes two
//! reads. At a thousand bot legs, each of those layers is a cache miss per
//! 20 ms message. Here the socket is read straight into the spare room of a
//! block of our own (`READ_ROOM` kept free, never zeroed), and a message
//! that arrives whole is handed on as a slice of it, not copied.
//!
//! What a server may not send is refused with a reason, as tungstenite
//! refuses it: masked frames, reserved bits or opcodes, fragmented or
//! oversized control frames, continuations of nothing, text that is not
//! UTF-8, and any message over `max-message-size`, which also bounds what
//! is buffered for one message. The close frame's payload is kept as sent,
//! so the bot's code is reported even when it is not valid on the wire.

use bytes::{Buf, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The spare room the buffer has before each read: six 20 ms messages at
/// 16 kHz mono (640 bytes of audio each), one at 48 kHz stereo (3,840), so
/// one read takes what arrived; a larger message is read whole, in steps.
pub const READ_ROOM: usize = 4 * 1024;
/// What is allocated when the block read into is full and downstream still
/// holds audio out of it: room for about eighteen 16 kHz messages past the
/// room kept free. Against a bot that sends as fast as it can (`--bench
/// latency`), the shared source read 377,000–761,000 frames/s with this
/// (4 runs, 3 of them over 700,000) and 359,000–602,000 with 8 KiB blocks
/// and 2 KiB of room (5 runs, 4 under 380,000), which cost 16 KB less per
/// connection and no less CPU at a thousand connections.
const READ_BLOCK: usize = 16 * 1024;

/// A whole thing the bot sent.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// A data message, a ping or a pong.
    Message(Message),
    /// A close frame's payload, as sent: the code (2 bytes), then the
    /// reason; empty when it has no code.
    Close(Bytes),
}

/// Why the bot's bytes are not a WebSocket a client can accept.
#[derive(Debug, PartialEq)]
pub enum FrameError {
    Protocol(String),
    TooLong { size: u64, max: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Protocol(why) => write!(f, "WebSocket protocol error ({why})"),
            FrameError::TooLong { size, max } => write!(
                f,
                "a message over max-message-size ({size} bytes, more than {max})"
            ),
        }
    }
}

fn protocol<T>(why: impl Into<String>) -> Result<T, FrameError> {
    Err(FrameError::Protocol(why.into()))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Binary,
}

/// Frames out of bytes as they arrive.
pub struct FrameReader {
    buffer: BytesMut,
    /// A fragmented message so far: its kind and its bytes.
    partial: Option<(Kind, BytesMut)>,
    max_message: usize,
    /// Blocks allocated by `room`, for the tests.
    #[cfg(test)]
    blocks: usize,
}

impl FrameReader {
    /// `already`: what was read past the upgrade's answer.
    pub fn new(already: BytesMut, max_message: usize) -> Self {
        FrameReader {
            buffer: already,
            partial: None,
            max_message,
            #[cfg(test)]
            blocks: 0,
        }
    }

    /// The buffer to read into, with at least `READ_ROOM` spare.
    pub fn room(&mut self) -> &mut BytesMut {
        if self.buffer.capacity() - self.buffer.len() < READ_ROOM
            && !self.buffer.try_reclaim(READ_ROOM)
        {
            // Downstream still holds audio sliced out of this block (a
            // sink's last buffer, a queue): a new block, and the old one
            // goes with the last of that audio. A block at a time, not a
            // message: `reserve` would allocate just the room asked for,
            // once per message.
            let mut block = BytesMut::with_capacity(READ_BLOCK.max(self.buffer.len() + READ_ROOM));
            block.extend_from_slice(&self.buffer);
            self.buffer = block;
            #[cfg(test)]
            {
                self.blocks += 1;
            }
        }
        &mut self.buffer
    }

    /// The next whole thing the bot sent, if the buffer holds one.
    pub fn next(&mut self) -> Result<Option<Received>, FrameError> {
        loop {
            let Some(frame) = self.frame()? else {
                return Ok(None);
            };
            if let Some(received) = self.assemble(frame)? {
                return Ok(Some(received));
            }
        }
    }

    /// The next whole frame in the buffer, checked before its payload is
    /// waited for, so a frame that can never be taken fails at its header.
    fn frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let b = &self.buffer[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0F);
        if b[0] & 0x70 != 0 {
            return protocol("reserved bits set, but no extension was agreed");
        }
        if b[1] & 0x80 != 0 {
            return protocol("the server masked a frame");
        }
        let (header, length) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as u64),
            127 if b.len() >= 10 => (10, u64::from_be_bytes(b[2..10].try_into().unwrap())),
            126 | 127 => return Ok(None),
            short => (2, short as u64),
        };
        match opcode {
            0x8..=0xA if !fin => return protocol("a fragmented control frame"),
            0x8..=0xA if length > 125 => return protocol("a control frame over 125 bytes"),
            0x8..=0xA => {}
            0x0..=0x2 => {
                let so_far = self.partial.as_ref().map_or(0, |(_, b)| b.len()) as u64;
                let size = so_far.saturating_add(length);
                if size > self.max_message as u64 {
                    return Err(FrameError::TooLong {
                        size,
                        max: self.max_message,
                    });
                }
            }
            other => return protocol(format!("opcode {other:#x}, which is reserved")),
        }
        // Room for the whole frame at once (a large message is not copied
        // block to block as it arrives), bounded above: a data frame by
        // max-message-size, a control frame by 125.
        let length = length as usize;
        if self.buffer.len() < header + length {
            self.buffer.reserve(header + length - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(header);
        let payload = self.buffer.split_to(length);
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }

    /// What `frame` completes, if anything.
    fn assemble(&mut self, frame: Frame) -> Result<Option<Received>, FrameError> {
        let Frame {
            fin,
            opcode,
            payload,
        } = frame;
        let (kind, payload) = match (opcode, self.partial.take()) {
            (0x8, _) => {
                if payload.len() == 1 {
                    return protocol("a close frame of one byte");
                }
                return Ok(Some(Received::Close(payload.freeze())));
            }
            (0x9, partial) => {
                self.partial = partial;
                return Ok(Some(Received::Message(Message::Ping(payload.freeze()))));
            }
            (0xA, partial) => {
                self.partial = partial;
                return Ok(Some(Received::Message(Message::Pong(payload.freeze()))));
            }
            (0x0, None) => return protocol("a continuation frame with nothing to continue"),
            (0x0, Some((kind, mut so_far))) => {
                so_far.extend_from_slice(&payload);
                (kind, so_far)
            }
            (_, Some(_)) => return protocol("a new message before the last one ended"),
            (0x1, None) => (Kind::Text, payload),
            (_, None) => (Kind::Binary, payload),
        };
        if !fin {
            self.partial = Some((kind, payload));
            return Ok(None);
        }
        let message = match kind {
            Kind::Binary => Message::Binary(payload.freeze()),
            Kind::Text => match Utf8Bytes::try_from(payload.freeze()) {
                Ok(text) => Message::Text(text),
                Err(_) => return protocol("a text message that is not UTF-8"),
            },
        };
        Ok(Some(Received::Message(message)))
    }
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

/// `msg` as a client sends it: one frame, masked with a fresh random key
/// (RFC 6455 5.3: unpredictable, so that a proxy cannot be fed bytes of
/// the sender's choosing). `None` for a raw frame, which nobody here sends.
pub fn client_frame(msg: &Message) -> Option<Vec<u8>> {
    let close;
    let (opcode, payload): (u8, &[u8]) = match msg {
        Message::Text(text) => (0x1, text.as_bytes()),
        Message::Binary(data) => (0x2, data),
        Message::Ping(data) => (0x9, data),
        Message::Pong(data) => (0xA, data),
        Message::Close(frame) => {
            close = frame.as_ref().map_or_else(Vec::new, |f| {
                let mut p = u16::from(f.code).to_be_bytes().to_vec();
                p.extend_from_slice(f.reason.as_bytes());
                p
            });
            (0x8, &close)
        }
        Message::Frame(_) => return None,
    };
    let mut out = Vec::with_capacity(14 + payload.len());
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask: [u8; 4] = rand::random();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use callaudio_testkit::pipecat::server_frame as frame;

    /// Everything `wire` holds, fed in pieces cut at `cuts`.
    pub fn read_all(
        wire: &[u8],
        cuts: &[usize],
        max: usize,
    ) -> (Vec<Received>, Option<FrameError>) {
        let mut reader = FrameReader::new(BytesMut::new(), max);
        let mut out = Vec::new();
        let mut at = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.sort();
        for cut in cuts.into_iter().chain([wire.len()]) {
            reader.room().extend_from_slice(&wire[at..cut.max(at)]);
            at = cut.max(at);
            loop {
                match reader.next() {
                    Ok(Some(received)) => out.push(received),
                    Ok(None) => break,
                    Err(err) => return (out, Some(err)),
                }
            }
        }
        (out, None)
    }

    fn binary(data: &[u8]) -> Received {
        Received::Message(Message::Binary(Bytes::copy_from_slice(data)))
    }

    #[test]
    fn messages_come_out_whole_however_the_bytes_are_cut() {
        let mut wire = frame(true, 0x2, &[7; 300]);
        wire.extend(frame(true, 0x9, b"hi"));
        wire.extend(frame(false, 0x1, "hé".as_bytes()));
        wire.extend(frame(true, 0xA, b""));
        wire.extend(frame(true, 0x0, "llo".as_bytes()));
        wire.extend(frame(true, 0x8, &[0x03, 0xE7, b'b', b'y', b'e']));
        let expected = vec![
            binary(&[7; 300]),
            Received::Message(Message::Ping(Bytes::from_static(b"hi"))),
            Received::Message(Message::Pong(Bytes::new())),
            Received::Message(Message::Text("héllo".into())),
            Received::Close(Bytes::from_static(&[0x03, 0xE7, b'b', b'y', b'e'])),
        ];
        assert_eq!(read_all(&wire, &[], 1 << 20), (expected, None));
        for cut in 0..wire.len() {
            let (out, err) = read_all(&wire, &[cut], 1 << 20);
            assert_eq!(err, None);
            assert_eq!(out.len(), 5, "cut at {cut}");
        }
        let every_byte: Vec<usize> = (0..wire.len()).collect();
        assert_eq!(read_all(&wire, &every_byte, 1 << 20).0.len(), 5);
    }

    #[test]
    fn a_whole_message_is_a_slice_of_what_was_read() {
        let wire = frame(true, 0x2, &[1; 640]);
        let mut reader = FrameReader::new(BytesMut::new(), 1 << 20);
        reader.room().extend_from_slice(&wire);
        let start = reader.buffer.as_ptr() as usize;
        let Some(Received::Message(Message::Binary(data))) = reader.next().unwrap() else {
            panic!("no message");
        };
        assert_eq!(data.as_ptr() as usize, start + 4);
    }

    #[test]
    fn a_block_is_renewed_only_when_it_is_full_of_audio_held_downstream() {
        let message = frame(true, 0x2, &[1; 640]);
        let read = |reader: &mut FrameReader| {
            let room = reader.room();
            assert!(room.capacity() - room.len() >= READ_ROOM);
            room.extend_from_slice(&message);
            let Ok(Some(Received::Message(Message::Binary(audio)))) = reader.next() else {
                panic!("no message");
            };
            audio
        };
        // Audio let go at once: one block, for good.
        let mut reader = FrameReader::new(BytesMut::new(), 1 << 20);
        for _ in 0..1000 {
            drop(read(&mut reader));
        }
        assert_eq!(reader.blocks, 1);
        // The last message held, as a sink's last buffer is: a new block
        // once the old one is full, not per message.
        let mut reader = FrameReader::new(BytesMut::new(), 1 << 20);
        let mut held = read(&mut reader);
        for _ in 0..1000 {
            held = read(&mut reader);
        }
        drop(held);
        let per_block = (READ_BLOCK - READ_ROOM) / message.len();
        assert!(reader.blocks <= 1000 / per_block + 2, "{}", reader.blocks);
        assert!(reader.buffer.capacity() <= READ_BLOCK);
    }

    #[test]
    fn what_a_server_may_not_send_is_refused_with_its_reason() {
        let cases: [(Vec<u8>, &str); 9] = [
            (vec![0x82 | 0x40, 0], "reserved bits"),
            (vec![0x82, 0x80 | 1, 1, 2, 3, 4, 5], "masked"),
            (vec![0x83, 0], "opcode 0x3"),
            (vec![0x8B, 0], "opcode 0xb"),
            (frame(false, 0x9, b""), "fragmented control"),
            (frame(true, 0x9, &[0; 126]), "over 125"),
            (frame(true, 0x0, b"x"), "nothing to continue"),
            (
                [frame(false, 0x2, b"x"), frame(true, 0x1, b"y")].concat(),
                "before the last one ended",
            ),
            (frame(true, 0x1, &[0xFF]), "not UTF-8"),
        ];
        for (wire, why) in cases {
            let (_, err) = read_all(&wire, &[], 1 << 20);
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains(why), "{wire:02x?}: {text:?}");
        }
        let (_, err) = read_all(&frame(true, 0x8, &[3]), &[], 1 << 20);
        assert!(err.is_some_and(|e| e.to_string().contains("one byte")));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_at_its_header_not_buffered() {
        // Claims 2^62 bytes and sends 4: refused before any wait.
        let mut wire = vec![0x82, 127];
        wire.extend((1u64 << 62).to_be_bytes());
        wire.extend([0; 4]);
        let (_, err) = read_all(&wire, &[], 1000);
        assert_eq!(
            err,
            Some(FrameError::TooLong {
                size: 1 << 62,
                max: 1000
            })
        );
        // In fragments, the sum counts.
        let wire = [frame(false, 0x2, &[0; 600]), frame(true, 0x0, &[0; 600])].concat();
        let (out, err) = read_all(&wire, &[], 1000);
        assert!(out.is_empty());
        assert_eq!(
            err,
            Some(FrameError::TooLong {
                size: 1200,
                max: 1000
            })
        );
        let text = FrameError::TooLong {
            size: 1200,
            max: 1000,
        }
        .to_string();
        assert!(text.contains("max-message-size"), "{text}");
    }

    #[test]
    fn our_frames_are_masked_and_read_back_as_sent() {
        use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, coding::CloseCode};
        let messages = [
            Message::Binary(Bytes::from(vec![7u8; 300])),
            Message::Binary(Bytes::from(vec![9u8; 70_000])),
            Message::Text("héllo".into()),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Pong(Bytes::new()),
            Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })),
            Message::Close(None),
        ];
        for msg in messages {
            let frame = client_frame(&msg).unwrap();
            assert_eq!(frame[1] & 0x80, 0x80, "not masked: {msg:?}");
            // A server's reader (tungstenite's) unmasks it to what was sent.
            let mut server = tokio_tungstenite::tungstenite::protocol::WebSocket::from_raw_socket(
                std::io::Cursor::new(frame),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            );
            assert_eq!(server.read().unwrap(), msg);
        }
        // Fresh keys: two frames of the same message differ.
        let msg = Message::Binary(Bytes::from_static(b"same"));
        assert_ne!(client_frame(&msg), client_frame(&msg));
    }

    #[test]
    fn control_frames_may_come_between_fragments() {
        let wire = [
            frame(false, 0x2, b"ab"),
            frame(true, 0x9, b"p"),
            frame(true, 0x0, b"cd"),
        ]
        .concat();
        let (out, err) = read_all(&wire, &[], 1 << 20);
        assert_eq!(err, None);
        assert_eq!(
            out,
            vec![
                Received::Message(Message::Ping(Bytes::from_static(b"p"))),
                binary(b"abcd"),
            ]
        );
    }
}
