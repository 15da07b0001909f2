//! How a connection ended, in words a person can act on.
//!
//! The bot's close code must be the one the bot sent. tungstenite replaces a
//! code that is not allowed on the wire (999, 1005, ...) with its own 1002
//! before anyone sees it, so the close frames are read off the stream beneath
//! it (`CloseSniffer`, which only walks frame headers and keeps close
//! payloads, at most 125 bytes).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use callaudio::sync::lock;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite;

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The bot hung up: a close frame with 1000, 1001 or no code.
    Closed { code: u16, reason: String },
    /// Anything else; `text` is for people, `debug` has the error chain.
    Failed { text: String, debug: String },
}

/// What the bot's close frame said, read off the wire.
pub type LastClose = Arc<Mutex<Option<Vec<u8>>>>;

/// Where the sniffer is in the server's byte stream.
enum Phase {
    /// The HTTP answer to the upgrade: up to the blank line.
    Http { matched: usize },
    /// A frame header: 2 bytes, then extended length and mask key.
    Header { bytes: [u8; 14], have: usize },
    /// A frame's payload: kept for a close frame, skipped otherwise.
    Payload {
        left: u64,
        close: bool,
        mask: Option<[u8; 4]>,
    },
}

/// An `AsyncRead` that passes bytes through and keeps the payload of the
/// last close frame the server sent.
pub struct CloseSniffer<S> {
    inner: S,
    phase: Phase,
    payload: Vec<u8>,
    last_close: LastClose,
}

impl<S> CloseSniffer<S> {
    pub fn new(inner: S) -> (Self, LastClose) {
        let last_close = LastClose::default();
        (
            CloseSniffer {
                inner,
                phase: Phase::Http { matched: 0 },
                payload: Vec::new(),
                last_close: last_close.clone(),
            },
            last_close,
        )
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.phase {
                Phase::Http { matched } => {
                    const END: &[u8] = b"\r\n\r\n";
                    let b = data[0];
                    data = &data[1..];
                    *matched = if b == END[*matched] {
                        *matched + 1
                    } else if b == END[0] {
                        1
                    } else {
                        0
                    };
                    if *matched == END.len() {
                        self.phase = Phase::Header {
                            bytes: [0; 14],
                            have: 0,
                        };
                    }
                }
                Phase::Header { bytes, have } => {
                    bytes[*have] = data[0];
                    *have += 1;
                    data = &data[1..];
                    if *have < 2 {
                        continue;
                    }
                    let masked = bytes[1] & 0x80 != 0;
                    let ext = match bytes[1] & 0x7F {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    };
                    let need = 2 + ext + if masked { 4 } else { 0 };
                    if *have < need {
                        continue;
                    }
                    let left = match ext {
                        2 => u16::from_be_bytes([bytes[2], bytes[3]]) as u64,
                        8 => u64::from_be_bytes(bytes[2..10].try_into().unwrap()),
                        _ => (bytes[1] & 0x7F) as u64,
                    };
                    let mask = masked.then(|| bytes[2 + ext..6 + ext].try_into().unwrap());
                    let close = bytes[0] & 0x0F == 0x8;
                    self.payload.clear();
                    self.phase = Phase::Payload { left, close, mask };
                    self.end_of_frame_if_empty();
                }
                Phase::Payload { left, close, mask } => {
                    let take = (*left).min(data.len() as u64) as usize;
                    if *close && self.payload.len() < 125 {
                        let room = 125 - self.payload.len();
                        let start = self.payload.len();
                        self.payload.extend_from_slice(&data[..take.min(room)]);
                        if let Some(mask) = mask {
                            for (i, b) in self.payload[start..].iter_mut().enumerate() {
                                *b ^= mask[(start + i) % 4];
                            }
                        }
                    }
                    *left -= take as u64;
                    data = &data[take..];
                    self.end_of_frame_if_empty();
                }
            }
        }
    }

    #[cfg(test)]
    pub fn feed_for_test(&mut self, data: &[u8]) {
        self.feed(data);
    }

    fn end_of_frame_if_empty(&mut self) {
        if let Phase::Payload { left: 0, close, .. } = self.phase {
            if close {
                *lock(&self.last_close) = Some(std::mem::take(&mut self.payload));
            }
            self.phase = Phase::Header {
                bytes: [0; 14],
                have: 0,
            };
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CloseSniffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CloseSniffer<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The end a close frame's payload (as the bot sent it) means.
pub fn end_of_close(payload: &[u8]) -> End {
    if payload.len() < 2 {
        // RFC 6455 7.1.5: no status code; 1005 stands for that.
        return End::Closed {
            code: 1005,
            reason: String::new(),
        };
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
    if matches!(code, 1000 | 1001) {
        return End::Closed { code, reason };
    }
    let meaning = match code {
        1002 => "protocol error",
        1003 => "unsupported data",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "a required extension is missing",
        1011 => "internal error, or no pong to its keepalive ping",
        1012 => "service restart",
        1013 => "server busy, try again later",
        1014 => "bad gateway",
        1004 | 1005 | 1006 | 1015 => "a reserved code that must never be sent",
        4001 | 4003 => "not authorized",
        0..=999 | 1016..=2999 => "not a valid close code",
        _ => "failure",
    };
    let reason_text = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    End::Failed {
        text: format!(
            "Pipecat bot closed the connection with code {code} ({meaning}){reason_text}"
        ),
        debug: format!("close frame code {code} reason {reason:?}, as sent on the wire"),
    }
}

pub fn receive_cause(err: &tungstenite::Error) -> String {
    use std::io::ErrorKind;
    use tungstenite::Error;
    use tungstenite::error::ProtocolError;
    match err {
        Error::Io(e) if e.kind() == ErrorKind::ConnectionReset => "connection reset by peer".into(),
        Error::Io(e) if e.kind() == ErrorKind::UnexpectedEof => {
            "closed without a close frame (1006)".into()
        }
        Error::Io(e) => format!("read error ({e})"),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "closed without a close frame (1006)".into()
        }
        Error::Protocol(p) => format!("WebSocket protocol error ({p})"),
        Error::Capacity(c) => format!("a message over max-message-size ({c})"),
        Error::Tls(t) => format!("TLS error ({t})"),
        other => other.to_string(),
    }
}

pub fn connect_cause(err: &tungstenite::Error) -> String {
    use std::io::ErrorKind;
    use tungstenite::Error;
    match err {
        Error::Http(response) => format!(
            "the server answered the WebSocket upgrade with HTTP {}{}",
            response.status(),
            match response.status().as_u16() {
                401 | 403 => " (authentication refused: check extra-headers or the URI's token)",
                404 => " (no bot at that path)",
                _ => "",
            }
        ),
        Error::Io(e) if e.kind() == ErrorKind::ConnectionRefused => {
            "connection refused (is the bot running?)".into()
        }
        Error::Io(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(why)) => format!(
                "TLS handshake failed: the bot's certificate was refused ({why:?}); tls-verify=false skips the check, for test bots only"
            ),
            Some(tls) => format!("TLS handshake failed ({tls})"),
            None => format!("{e}"),
        },
        Error::Tls(t) => format!("TLS error ({t})"),
        Error::Url(u) => format!("bad URI ({u})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(chunks: &[&[u8]]) -> Option<Vec<u8>> {
        let (mut s, last) = CloseSniffer::new(());
        for c in chunks {
            s.feed(c);
        }
        lock(&last).clone()
    }

    const HTTP: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn finds_the_close_frame_behind_audio_in_any_split() {
        let mut wire = HTTP.to_vec();
        // A binary frame of 300 bytes (16-bit length), then close 999 "bye".
        wire.extend([0x82, 126, 0x01, 0x2C]);
        wire.extend([0x0D; 300]);
        wire.extend([0x88, 5, 0x03, 0xE7, b'b', b'y', b'e']);
        let whole = sniff(&[&wire]);
        assert_eq!(whole.as_deref(), Some(&[0x03, 0xE7, b'b', b'y', b'e'][..]));
        // Byte by byte, as a slow socket would give it.
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(sniff(&bytes), whole);
    }

    #[test]
    fn codes_are_named_as_sent() {
        let End::Failed { text, .. } = end_of_close(&[0x03, 0xE7]) else {
            panic!()
        };
        assert!(
            text.contains("code 999") && text.contains("not a valid"),
            "{text}"
        );
        let End::Failed { text, .. } = end_of_close(&1005u16.to_be_bytes()) else {
            panic!()
        };
        assert!(
            text.contains("code 1005") && text.contains("reserved"),
            "{text}"
        );
        assert_eq!(
            end_of_close(&[]),
            End::Closed {
                code: 1005,
                reason: String::new()
            }
        );
        assert!(matches!(
            end_of_close(&1000u16.to_be_bytes()),
            End::Closed { code: 1000, .. }
        ));
    }

    #[test]
    fn garbage_never_panics_the_sniffer() {
        let mut wire = HTTP.to_vec();
        wire.extend([
            0x88, 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3,
        ]);
        wire.extend([0x89, 0xFE, 0, 4, 1, 2, 3, 4, 9, 9, 9, 9]);
        let _ = sniff(&[&wire]);
    }
}
