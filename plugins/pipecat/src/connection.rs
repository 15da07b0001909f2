//! One WebSocket to a Pipecat bot, shared by the `pipecatwsrc` and
//! `pipecatwssink` that name the same `connection`.
//!
//! A reader task owns the receive side and never waits on downstream: it
//! answers pings, decodes, and hands audio to an inbox that `create()` waits
//! on with a condition variable. The moment the socket ends, the reader
//! records why and wakes the waiter, so nobody ever blocks on a dead socket.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gst::glib;
use gst::prelude::*;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::redact;
use crate::serializer::{Inbound, Serializer, WireAudio};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "pipecatws",
        gst::DebugColorFlags::empty(),
        Some("Pipecat WebSocket connection"),
    )
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pipecat-ws")
        .enable_all()
        .build()
        .expect("starting the WebSocket runtime")
});

/// Caller audio waiting to be sent while the bot is slow or not connected yet.
const OUTGOING_CAPACITY: usize = 500;

#[derive(Clone)]
pub struct ConnectConfig {
    pub uri: String,
    pub serializer: Serializer,
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    pub max_message_size: usize,
    pub stream_sid: String,
    pub call_sid: String,
    pub tls_verify: bool,
}

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The bot hung up: a close frame with 1000, 1001 or no code.
    Closed { code: u16, reason: String },
    /// Anything else; `text` is for people, `debug` has the error chain.
    Failed { text: String, debug: String },
}

pub struct Chunk {
    pub audio: WireAudio,
    /// Running time of the source when the message arrived.
    pub arrival: Option<gst::ClockTime>,
}

impl Chunk {
    pub fn duration(&self) -> gst::ClockTime {
        self.audio.duration()
    }
}

pub enum Next {
    Audio(Chunk),
    End(End),
    Flushing,
    TimedOut,
}

#[derive(Default)]
struct Inbox {
    audio: VecDeque<Chunk>,
    queued: gst::ClockTime,
    /// Audio dropped for `max-queue` since the source last reported it.
    dropped: gst::ClockTime,
    end: Option<End>,
    flushing: bool,
}

#[derive(Default)]
struct Link {
    connected: bool,
    outgoing: Option<mpsc::Sender<Message>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    dropped_outgoing: u64,
}

pub struct Connection {
    name: String,
    inbox: Mutex<Inbox>,
    cond: Condvar,
    link: Mutex<Link>,
    /// The source element, for bus messages about what the bot says.
    src: Mutex<Option<glib::WeakRef<gst::Element>>>,
    max_queue: Mutex<gst::ClockTime>,
}

static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<Connection>>>> =
    LazyLock::new(Default::default);

impl Connection {
    /// The connection called `name`, shared by every element naming it; an
    /// empty name gives a private one.
    pub fn named(name: &str) -> Arc<Connection> {
        if name.is_empty() {
            return Arc::new(Connection::new(name));
        }
        let mut registry = REGISTRY.lock().unwrap();
        registry.retain(|_, c| c.strong_count() > 0);
        if let Some(existing) = registry.get(name).and_then(Weak::upgrade) {
            return existing;
        }
        let conn = Arc::new(Connection::new(name));
        registry.insert(name.to_owned(), Arc::downgrade(&conn));
        conn
    }

    fn new(name: &str) -> Self {
        Connection {
            name: name.to_owned(),
            inbox: Mutex::new(Inbox::default()),
            cond: Condvar::new(),
            link: Mutex::new(Link::default()),
            src: Mutex::new(None),
            max_queue: Mutex::new(gst::ClockTime::from_seconds(5)),
        }
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap()
    }

    pub fn attach_src(&self, src: &gst::Element, max_queue: gst::ClockTime) {
        *self.src.lock().unwrap() = Some(src.downgrade());
        *self.max_queue.lock().unwrap() = max_queue;
    }

    fn src(&self) -> Option<gst::Element> {
        self.src.lock().unwrap().as_ref().and_then(|w| w.upgrade())
    }

    /// Connects, unless this connection already is. Blocks up to
    /// `connect_timeout`. The error text names the cause, never a secret.
    pub fn connect(self: &Arc<Self>, cfg: &ConnectConfig) -> Result<(), End> {
        let mut link = self.link.lock().unwrap();
        if link.connected {
            return Ok(());
        }
        let secrets = redact::secrets(&cfg.uri, &cfg.headers);
        let shown = redact::redact_uri(&cfg.uri);
        let fail = |cause: String, debug: String| End::Failed {
            text: redact::scrub(
                &format!("Could not connect to the Pipecat bot at {shown}: {cause}"),
                &secrets,
            ),
            debug: redact::scrub(&debug, &secrets),
        };
        let mut request = cfg.uri.as_str().into_client_request().map_err(|e| {
            fail(
                "the URI is not a ws:// or wss:// URI".into(),
                format!("{e:?}"),
            )
        })?;
        for (name, value) in &cfg.headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| fail(format!("invalid header name {name:?}"), format!("{e:?}")))?;
            let value = tungstenite::http::HeaderValue::from_str(value)
                .map_err(|_| fail(format!("invalid value for header {name}"), String::new()))?;
            request.headers_mut().insert(name, value);
        }
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(cfg.max_message_size))
            .max_frame_size(Some(cfg.max_message_size));
        let connector = (!cfg.tls_verify).then(|| {
            gst::warning!(
                CAT,
                "connection '{}': tls-verify=false, the bot's certificate is not checked",
                self.name
            );
            tokio_tungstenite::Connector::Rustls(crate::tls::unverified())
        });
        gst::info!(CAT, "connection '{}': connecting to {shown}", self.name);
        let connected = RUNTIME.block_on(async {
            tokio::time::timeout(
                cfg.connect_timeout,
                tokio_tungstenite::connect_async_tls_with_config(
                    request,
                    Some(ws_config),
                    true,
                    connector,
                ),
            )
            .await
        });
        let stream = match connected {
            Err(_) => {
                return Err(fail(
                    format!(
                        "no answer within connect-timeout ({:?})",
                        cfg.connect_timeout
                    ),
                    String::new(),
                ));
            }
            Ok(Err(err)) => return Err(fail(connect_cause(&err), format!("{err:?}"))),
            Ok(Ok((stream, _response))) => stream,
        };
        let (mut write, read) = stream.split();
        for msg in cfg.serializer.handshake(&cfg.stream_sid, &cfg.call_sid) {
            RUNTIME.block_on(write.send(msg)).map_err(|e| {
                fail(
                    format!("the connection failed during the handshake: {e}"),
                    format!("{e:?}"),
                )
            })?;
        }
        *self.inbox() = Inbox::default();
        let (tx, rx) = mpsc::channel(OUTGOING_CAPACITY);
        RUNTIME.spawn(write_loop(write, rx));
        link.reader = Some(RUNTIME.spawn(read_loop(self.clone(), read, cfg.serializer, secrets)));
        link.outgoing = Some(tx);
        link.connected = true;
        gst::info!(CAT, "connection '{}': connected to {shown}", self.name);
        Ok(())
    }

    /// Queues a message for the bot. Err with how the connection ended, or
    /// `None` when it is not connected at all.
    pub fn send(&self, msg: Message) -> Result<(), Option<End>> {
        if let Some(end) = self.inbox().end.clone() {
            return Err(Some(end));
        }
        let mut link = self.link.lock().unwrap();
        let Some(tx) = link.outgoing.as_ref() else {
            return Err(None);
        };
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The bot does not read fast enough: losing caller audio is
                // better than growing without bound.
                link.dropped_outgoing += 1;
                gst::warning!(
                    CAT,
                    "connection '{}': bot not reading, dropped {} messages",
                    self.name,
                    link.dropped_outgoing
                );
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.inbox().end.clone()),
        }
    }

    /// The next audio, the end, or a wake-up: whatever comes first.
    pub fn next(&self, timeout: Option<Duration>) -> (Next, gst::ClockTime) {
        let mut inbox = self.inbox();
        loop {
            let dropped = std::mem::take(&mut inbox.dropped);
            if inbox.flushing {
                return (Next::Flushing, dropped);
            }
            if let Some(chunk) = inbox.audio.pop_front() {
                inbox.queued = inbox.queued.saturating_sub(chunk.duration());
                return (Next::Audio(chunk), dropped);
            }
            if let Some(end) = inbox.end.clone() {
                return (Next::End(end), dropped);
            }
            inbox.dropped = dropped;
            match timeout {
                None => inbox = self.cond.wait(inbox).unwrap(),
                Some(t) => {
                    let (guard, result) = self.cond.wait_timeout(inbox, t).unwrap();
                    inbox = guard;
                    if result.timed_out()
                        && inbox.audio.is_empty()
                        && inbox.end.is_none()
                        && !inbox.flushing
                    {
                        return (Next::TimedOut, std::mem::take(&mut inbox.dropped));
                    }
                }
            }
        }
    }

    pub fn set_flushing(&self, flushing: bool) {
        self.inbox().flushing = flushing;
        self.cond.notify_all();
    }

    /// Ends the connection from our side: a close frame goes out, the reader
    /// stops, and anyone sending learns it is closed.
    pub fn close(&self) {
        let mut link = self.link.lock().unwrap();
        if let Some(reader) = link.reader.take() {
            reader.abort();
        }
        // Dropping the sender lets the writer send its close frame and stop.
        link.outgoing = None;
        link.connected = false;
        drop(link);
        let mut inbox = self.inbox();
        if inbox.end.is_none() {
            inbox.end = Some(End::Closed {
                code: 1000,
                reason: "closed by the pipeline".into(),
            });
        }
        drop(inbox);
        self.cond.notify_all();
    }

    fn deliver(&self, inbound: Inbound) {
        match inbound {
            Inbound::Audio(audio) => {
                let arrival = self.src().and_then(|s| s.current_running_time());
                let chunk = Chunk { audio, arrival };
                let max_queue = *self.max_queue.lock().unwrap();
                let mut inbox = self.inbox();
                inbox.queued += chunk.duration();
                inbox.audio.push_back(chunk);
                while inbox.queued > max_queue && inbox.audio.len() > 1 {
                    let oldest = inbox.audio.pop_front().unwrap();
                    inbox.queued = inbox.queued.saturating_sub(oldest.duration());
                    inbox.dropped += oldest.duration();
                }
                drop(inbox);
                self.cond.notify_all();
            }
            Inbound::Interruption => {
                let mut inbox = self.inbox();
                let dropped = inbox
                    .audio
                    .drain(..)
                    .map(|c| c.duration())
                    .sum::<gst::ClockTime>();
                inbox.queued = gst::ClockTime::ZERO;
                drop(inbox);
                self.post("pipecat-interrupted", |s| s.field("dropped", dropped));
            }
            Inbound::Text(text) => self.post("pipecat-text", |s| s.field("text", text)),
            Inbound::Transcription {
                text,
                user_id,
                timestamp,
            } => self.post("pipecat-transcription", |s| {
                s.field("text", text)
                    .field("user-id", user_id)
                    .field("timestamp", timestamp)
            }),
            Inbound::Message(data) => self.post("pipecat-message", |s| s.field("data", data)),
            Inbound::Nothing => {}
        }
    }

    fn post(
        &self,
        name: &str,
        fields: impl FnOnce(gst::structure::Builder) -> gst::structure::Builder,
    ) {
        if let Some(src) = self.src() {
            let s = fields(gst::Structure::builder(name)).build();
            let _ = src.post_message(gst::message::Element::builder(s).src(&src).build());
        }
    }

    /// Records how the connection ended and wakes the waiter. A failure goes
    /// on the bus first, so it is the first error an application sees (the
    /// base class adds a generic one once `create()` returns).
    fn finish(&self, end: End) {
        if self.inbox().end.is_some() {
            return;
        }
        self.link.lock().unwrap().connected = false;
        match &end {
            End::Failed { text, debug } => {
                gst::warning!(CAT, "connection '{}': {text}", self.name);
                if let Some(src) = self.src() {
                    gst::element_error!(src, gst::ResourceError::Read, ("{}", text), ["{}", debug]);
                }
            }
            End::Closed { code, reason } => gst::info!(
                CAT,
                "connection '{}': bot closed ({code} {reason})",
                self.name
            ),
        }
        self.inbox().end.get_or_insert(end);
        self.cond.notify_all();
    }
}

async fn read_loop(
    conn: Arc<Connection>,
    mut read: futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    serializer: Serializer,
    secrets: Vec<String>,
) {
    let end = loop {
        match read.next().await {
            Some(Ok(Message::Close(frame))) => break end_of_close(frame),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(msg)) => match serializer.decode(&msg) {
                Ok(inbound) => conn.deliver(inbound),
                Err(why) => {
                    let data = msg.into_data();
                    break End::Failed {
                        text: format!("Pipecat bot sent a frame that does not parse: {why}"),
                        debug: format!(
                            "{} bytes, starting {:02x?}",
                            data.len(),
                            &data[..data.len().min(32)]
                        ),
                    };
                }
            },
            Some(Err(err)) => {
                break End::Failed {
                    text: format!(
                        "Pipecat bot connection lost: {} while receiving audio",
                        receive_cause(&err)
                    ),
                    debug: redact::scrub(&format!("{err:?}"), &secrets),
                };
            }
            None => {
                break End::Failed {
                    text: "Pipecat bot connection lost: closed without a close frame (1006) while receiving audio".into(),
                    debug: "the stream ended with no close frame".into(),
                };
            }
        }
    };
    conn.finish(end);
}

async fn write_loop(
    mut write: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    mut rx: mpsc::Receiver<Message>,
) {
    while let Some(msg) = rx.recv().await {
        if write.send(msg).await.is_err() {
            // The reader sees the same failure and reports it.
            return;
        }
    }
    let _ = write.close().await;
}

fn end_of_close(frame: Option<CloseFrame>) -> End {
    let Some(frame) = frame else {
        return End::Closed {
            code: 1005,
            reason: String::new(),
        };
    };
    let code: u16 = frame.code.into();
    let reason = frame.reason.to_string();
    if matches!(code, 1000 | 1001) {
        return End::Closed { code, reason };
    }
    let meaning = match code {
        1002 => "protocol error",
        1003 => "unsupported data",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "internal error, or no pong to its keepalive ping",
        1012 => "service restart",
        1013 => "server busy, try again later",
        4001 | 4003 => "not authorized",
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
        debug: format!("close frame code {code} reason {reason:?}"),
    }
}

fn receive_cause(err: &tungstenite::Error) -> String {
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

fn connect_cause(err: &tungstenite::Error) -> String {
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
