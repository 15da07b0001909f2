// SPDX-License-Identifier: MPL-2.0
//! Opening the WebSocket: TCP, TLS for `wss://`, the HTTP upgrade. Done by
//! hand rather than by `connect_async` so that the bot's frames can be read
//! by `frames`, straight off the socket (TLS beneath), and so the whole of it
//! is one future that stopping the pipeline can drop at any point.
//!
//! tungstenite makes the upgrade, and only that: `frames` reads the bot's
//! frames and frames ours (`outbox` writes them). It never reads past the
//! upgrade's answer: `UpToAnswer` hands it the bytes up to the answer's
//! blank line and keeps the rest (frames the bot sent at once) for the
//! reader.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
pub use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Error};

/// tungstenite allocates a read buffer up front (128 KiB by default) for
/// the WebSocket it makes of the upgrade, which reads no frame.
const UNUSED_READ_BUFFER: usize = 64;

/// An open WebSocket to the bot.
pub struct Dialed {
    pub read: ReadSide,
    pub write: WriteSide,
    /// What the bot sent right behind the upgrade's answer.
    pub already: BytesMut,
}

/// Builds the upgrade request for `uri` with `headers`, or says what is
/// wrong with them.
pub fn request(uri: &str, headers: &[(String, String)]) -> Result<Request, String> {
    let mut request = uri
        .into_client_request()
        .map_err(|_| "the URI is not a ws:// or wss:// URI".to_string())?;
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = tungstenite::http::HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name}"))?;
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

/// Connects to the bot.
pub async fn dial(request: Request, tls_verify: bool) -> Result<Dialed, Error> {
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(Error::Url(
                tungstenite::error::UrlError::UnsupportedUrlScheme,
            ));
        }
    };
    let host = uri
        .host()
        .ok_or(Error::Url(tungstenite::error::UrlError::NoHostName))?;
    // An IPv6 literal comes in brackets.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    let stream = if secure {
        let config = if tls_verify {
            verified_config()
        } else {
            crate::socket::tls::unverified()
        };
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| Error::Tls(tungstenite::error::TlsError::InvalidDnsName))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Stream::Tls(Box::new(tls))
    } else {
        Stream::Plain(tcp)
    };
    // Limits on what the bot sends are `frames`' (`max-message-size`).
    let config = WebSocketConfig::default().read_buffer_size(UNUSED_READ_BUFFER);
    let (mut upgraded, _response) =
        tokio_tungstenite::client_async_with_config(request, UpToAnswer::new(stream), Some(config))
            .await?;
    let (stream, already) = upgraded.get_mut().take();
    let Some(stream) = stream else {
        return Err(Error::AlreadyClosed);
    };
    let (read, write) = match stream {
        Stream::Plain(tcp) => {
            let (read, write) = tcp.into_split();
            (ReadSide::Plain(read), WriteSide::Plain(write))
        }
        Stream::Tls(tls) => {
            let fd = tls.get_ref().0.as_raw_fd();
            let (read, write) = tokio::io::split(*tls);
            (ReadSide::Tls(read, fd), WriteSide::Tls(write))
        }
    };
    Ok(Dialed {
        read,
        write,
        already,
    })
}

/// Verifies the bot's certificate against the webpki roots.
fn verified_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::LazyLock<Arc<rustls::ClientConfig>> =
        std::sync::LazyLock::new(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        });
    CONFIG.clone()
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The socket beneath tungstenite while it makes the upgrade: it passes on
/// the bytes up to the answer's blank line (an answer to an upgrade has no
/// body) and keeps what follows, so that tungstenite never holds a frame.
struct UpToAnswer {
    stream: Option<Stream>,
    end: AnswerEnd,
    answered: bool,
    past: BytesMut,
}

impl UpToAnswer {
    fn new(stream: Stream) -> Self {
        UpToAnswer {
            stream: Some(stream),
            end: AnswerEnd::default(),
            answered: false,
            past: BytesMut::new(),
        }
    }

    /// The socket, and what came after the answer.
    fn take(&mut self) -> (Option<Stream>, BytesMut) {
        (self.stream.take(), std::mem::take(&mut self.past))
    }
}

/// Finds the blank line that ends an HTTP answer, however it is cut.
#[derive(Default)]
struct AnswerEnd {
    /// How much of the blank line (`\r\n\r\n`) the last bytes matched.
    matched: usize,
}

impl AnswerEnd {
    /// Where in `data` (the bytes after those seen before) the answer
    /// ends, if it does.
    fn find(&mut self, data: &[u8]) -> Option<usize> {
        const END: &[u8] = b"\r\n\r\n";
        for (i, &b) in data.iter().enumerate() {
            self.matched = if b == END[self.matched] {
                self.matched + 1
            } else if b == END[0] {
                1
            } else {
                0
            };
            if self.matched == END.len() {
                return Some(i + 1);
            }
        }
        None
    }
}

impl AsyncRead for UpToAnswer {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Past the answer tungstenite has nothing to read: an end of stream
        // would be its error, never a frame lost to it.
        let (Some(stream), false) = (this.stream.as_mut(), this.answered) else {
            return Poll::Ready(Ok(()));
        };
        let before = buf.filled().len();
        let result = match stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = result
            && let Some(end) = this.end.find(&buf.filled()[before..])
        {
            this.answered = true;
            this.past.extend_from_slice(&buf.filled()[before + end..]);
            buf.set_filled(before + end);
        }
        result
    }
}

impl AsyncWrite for UpToAnswer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().stream.as_mut() {
            Some(Stream::Plain(s)) => Pin::new(s).poll_write(cx, buf),
            Some(Stream::Tls(s)) => Pin::new(s.as_mut()).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream.as_mut() {
            Some(Stream::Plain(s)) => Pin::new(s).poll_flush(cx),
            Some(Stream::Tls(s)) => Pin::new(s.as_mut()).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream.as_mut() {
            Some(Stream::Plain(s)) => Pin::new(s).poll_shutdown(cx),
            Some(Stream::Tls(s)) => Pin::new(s.as_mut()).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The bot's side of the socket, read by `frames`.
pub enum ReadSide {
    Plain(OwnedReadHalf),
    /// With the socket's descriptor, which the TLS half does not give out.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>, RawFd),
}

impl ReadSide {
    /// Lets TCP acknowledge what arrives at its delayed pace (an ACK for
    /// every second segment, or within 40 ms) rather than at once, until
    /// the next read. Linux acknowledges at once a read that empties the
    /// socket of a segment the sender pushed, unless the connection is
    /// interactive (it sends too); and it forgets this setting by itself,
    /// so it is set again after each read. A failure leaves ACKs as TCP
    /// sends them anyway.
    pub fn delay_acks(&self) {
        let fd = match self {
            ReadSide::Plain(half) => half.as_ref().as_raw_fd(),
            ReadSide::Tls(_, fd) => *fd,
        };
        // SAFETY: the descriptor is this socket's, open while either half
        // of it is, and this half is.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = socket2::SockRef::from(&fd).set_tcp_quickack(false);
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ReadSide::Tls(s, _) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

/// Our side of the socket, written by `outbox`.
pub enum WriteSide {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delaying_acks_takes_the_socket_out_of_quick_ack_mode() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let quick = |s: &TcpStream| socket2::SockRef::from(s).tcp_quickack().unwrap();
        assert!(quick(&ours), "a new socket acknowledges at once");
        let (read, _write) = ours.into_split();
        let read = ReadSide::Plain(read);
        read.delay_acks();
        let ReadSide::Plain(half) = &read else {
            unreachable!()
        };
        assert!(!quick(half.as_ref()));
    }

    #[test]
    fn the_answer_s_end_is_found_however_the_bytes_are_cut() {
        let wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x82\x01\r";
        let end = wire.len() - 3;
        for cut in 0..=wire.len() {
            let mut finder = AnswerEnd::default();
            let found = match finder.find(&wire[..cut]) {
                Some(at) => at,
                None => cut + finder.find(&wire[cut..]).expect("the end"),
            };
            assert_eq!(found, end, "cut at {cut}");
        }
        // A lone \r\n, or \r\r\n\n, is not the end.
        assert_eq!(AnswerEnd::default().find(b"a\r\nb\r\r\n\nc\n\r\n"), None);
    }
}
