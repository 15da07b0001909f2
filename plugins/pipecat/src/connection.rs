// SPDX-License-Identifier: MPL-2.0
//! One WebSocket to a Pipecat bot, shared by the source (`pipecatwsrc` or
//! `pipecatwssharedsrc`) and `pipecatwssink` of one pipeline that name the
//! same `connection`.
//!
//! - A connection is found by (pipeline, name): two calls in one process
//!   that both say `connection=call1` never share a socket. Within a
//!   pipeline, elements that name different bots under one name are refused.
//! - Each element holds a `Use`; the last one dropped closes the socket.
//! - Connecting is a task on the runtime, never a wait in a state change:
//!   stopping the pipeline while the bot does not answer drops it at once.
//! - A reader task owns the receive side: it answers pings, decodes, and
//!   hands audio to the mailbox that `pipecatwsrc`'s `create()` waits on,
//!   never waiting on downstream itself; or, for `pipecatwssharedsrc`, calls
//!   its pusher, which queues the element for a shared pushing thread
//!   (`pipecatwssharedsrc/pushers.rs`). The moment the socket ends,
//!   the reader records why and wakes the waiter, so nobody ever blocks on
//!   a dead socket.
//! - What the elements send goes through the connection's `Outbox`: written
//!   from the sender's thread when nothing waits before it, else by a
//!   writer task.
//!
//! Lock order: `link`, then `mailbox`, then the outbox's; `src` and the
//! registry are taken alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use callaudio::sync::{lock, wait, wait_timeout};
use gst::glib;
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub use crate::close::End;
use crate::close::{connect_cause, end_of_close, read_cause};
use crate::dial::{self, Dialed, ReadSide};
use crate::frames::{FrameReader, Received};
use crate::inbox::{Chunk, Dropped, Inbox, Limits};
use crate::outbox::{Outbox, Sent};
use crate::redact;
use crate::serializer::{Inbound, Serializer};
use crate::session::{CallIds, Session};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "pipecatws",
        gst::DebugColorFlags::empty(),
        Some("Pipecat WebSocket connection"),
    )
});

/// Runs `f` on the WebSocket runtime's thread after `after`.
pub fn spawn_after(
    after: Duration,
    f: impl FnOnce() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    spawn(async move {
        tokio::time::sleep(after).await;
        f()
    })
}

/// Runs `task` on the WebSocket runtime.
pub fn spawn(
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    RUNTIME.spawn(task)
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_park(crate::nap::before_sleep)
        .on_thread_unpark(crate::nap::after_sleep)
        .thread_name("pipecat-ws")
        .enable_all()
        .build()
        .expect("starting the WebSocket runtime")
});

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
    /// ACK the bot's messages at TCP's delayed pace (`delayed-ack`).
    pub delayed_ack: bool,
    /// (ping every, answer within), or `None` for no pings of ours.
    pub keepalive: Option<(Duration, Duration)>,
}

/// Why a message for the bot was not queued.
pub enum Unsent {
    /// The sink is flushing.
    Flushing,
    /// The connection ended, this way.
    Ended(End),
    /// Nobody opened this connection.
    NotConnected,
}

pub enum Next {
    Audio(Chunk),
    End(End),
    Flushing,
    TimedOut,
}

struct Mailbox {
    inbox: Inbox,
    end: Option<End>,
    /// The source is flushing: `next` returns at once.
    flushing: bool,
    /// The sink is flushing: `wait_connected` returns at once.
    send_flushing: bool,
    /// The socket is open and its writer runs.
    connected: bool,
    /// How many threads sleep on `cond` now: the reader signals only then
    /// (a signal is a system call, and a thousand bots send 50 000 messages
    /// a second).
    sleepers: usize,
    /// A source that takes what arrives on the reader's own thread
    /// (`pipecatwssharedsrc`) instead of waiting on `cond`: called, with no
    /// lock held, after audio or the end arrived.
    pusher: Option<Pusher>,
}

/// Who takes what arrives, on the WebSocket runtime's thread: `push(pad,
/// connection)` is called when there is something to take from the
/// connection. Kept in the mailbox itself, not behind a pointer of its own:
/// at a thousand connections every pointer followed per message is a cache
/// miss.
#[derive(Clone)]
pub struct Pusher {
    pub pad: gst::Pad,
    pub push: fn(&gst::Pad, &Connection),
}

impl Pusher {
    fn call(&self, conn: &Connection) {
        (self.push)(&self.pad, conn)
    }
}

/// Which bot a connection is for, as the first element naming one said.
struct Peer {
    uri: String,
    serializer: Serializer,
}

#[derive(Default)]
struct Link {
    peer: Option<Peer>,
    /// Connecting or connected: `connect` does nothing more.
    started: bool,
    /// Counts connects, so a reader of an earlier socket cannot touch this one.
    generation: u64,
    outgoing: Option<Arc<Outbox>>,
    /// What the client says on this socket, from the config that opened it.
    session: Option<Arc<Session>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

type Key = (usize, String);

pub struct Connection {
    key: Option<Key>,
    /// The pipeline `key` names: an address a new pipeline may take once
    /// this one is freed, so a registry entry is only this pipeline's
    /// while this still upgrades to it.
    scope: Option<glib::WeakRef<gst::Object>>,
    /// Unique in the process, never reused (an address may be).
    id: u64,
    name: String,
    mailbox: Mutex<Mailbox>,
    cond: Condvar,
    link: Mutex<Link>,
    /// The source element, for bus messages about what the bot says.
    src: Mutex<Option<glib::WeakRef<gst::Element>>>,
    users: AtomicUsize,
}

static REGISTRY: LazyLock<Mutex<HashMap<Key, Weak<Connection>>>> = LazyLock::new(Default::default);

/// An element's hold on a connection; the last one let go closes it.
pub struct Use(Arc<Connection>);

impl std::ops::Deref for Use {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl Use {
    /// Starts connecting, unless this connection already is or has (see
    /// `Connection::start`).
    pub fn connect(&self, cfg: &ConnectConfig) -> Result<(), End> {
        self.0.start(cfg)
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        // Under the registry's lock, as `acquire` counts a new user: the
        // last user leaves it, and a connection it found is never closed
        // under it.
        let registry = self.0.key.as_ref().map(|_| lock(&REGISTRY));
        let last = self.0.users.fetch_sub(1, Ordering::AcqRel) == 1;
        if let (true, Some(mut registry)) = (last, registry) {
            self.0.leave_registry(&mut registry);
        }
        if last {
            self.0.close();
        }
    }
}

/// The pipeline (topmost bin) `element` is in.
fn scope_of(element: &gst::Element) -> gst::Object {
    let mut top: gst::Object = element.clone().upcast();
    while let Some(parent) = top.parent() {
        top = parent;
    }
    top
}

impl Connection {
    /// The connection `name` of `element`'s pipeline (a private one for an
    /// empty name). `peer` is the bot the element names, if it names one;
    /// a different bot under the same name is refused.
    pub fn acquire(
        element: &gst::Element,
        name: &str,
        peer: Option<(&str, Serializer)>,
    ) -> Result<Use, String> {
        let conn = if name.is_empty() {
            Arc::new(Connection::new(None, None, name))
        } else {
            let scope = scope_of(element);
            let key = (scope.as_ptr() as usize, name.to_owned());
            let mut registry = lock(&REGISTRY);
            registry.retain(|_, c| c.strong_count() > 0);
            // An entry of a freed pipeline at the same address is not ours.
            let existing = registry
                .get(&key)
                .and_then(Weak::upgrade)
                .filter(|c| c.scope.as_ref().and_then(|s| s.upgrade()).as_ref() == Some(&scope));
            let conn = match existing {
                Some(existing) => existing,
                None => {
                    let conn = Arc::new(Connection::new(Some(key.clone()), Some(&scope), name));
                    registry.insert(key, Arc::downgrade(&conn));
                    conn
                }
            };
            // Counted under the registry's lock: see `Use::drop`.
            conn.users.fetch_add(1, Ordering::AcqRel);
            conn
        };
        if name.is_empty() {
            conn.users.fetch_add(1, Ordering::AcqRel);
        }
        // From here on, an early return lets go of the use it counted.
        let conn = Use(conn);
        if let Some((uri, serializer)) = peer {
            let mut link = lock(&conn.link);
            match &link.peer {
                Some(p) if p.uri != uri || p.serializer != serializer => {
                    return Err(format!(
                        "connection '{name}' is already used in this pipeline for the bot at {} \
                         ({}); this element names {} ({}): give each bot its own connection name",
                        redact::redact_uri(&p.uri),
                        p.serializer.nick(),
                        redact::redact_uri(uri),
                        serializer.nick(),
                    ));
                }
                Some(_) => {}
                None => {
                    link.peer = Some(Peer {
                        uri: uri.to_owned(),
                        serializer,
                    })
                }
            }
        }
        Ok(conn)
    }

    fn new(key: Option<Key>, scope: Option<&gst::Object>, name: &str) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Connection {
            key,
            scope: scope.map(|s| s.downgrade()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.to_owned(),
            mailbox: Mutex::new(Mailbox {
                inbox: Inbox::new(Limits {
                    duration: gst::ClockTime::from_seconds(5),
                    bytes: usize::MAX,
                }),
                end: None,
                flushing: false,
                send_flushing: false,
                connected: false,
                sleepers: 0,
                pusher: None,
            }),
            cond: Condvar::new(),
            link: Mutex::new(Link::default()),
            src: Mutex::new(None),
            users: AtomicUsize::new(0),
        }
    }

    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        lock(&self.mailbox)
    }

    pub fn attach_src(&self, src: &gst::Element, limits: Limits) {
        *lock(&self.src) = Some(src.downgrade());
        self.mailbox().inbox.set_limits(limits);
    }

    /// Makes `pusher` the one who takes what arrives (see `Mailbox::pusher`),
    /// or nobody.
    pub fn set_pusher(&self, pusher: Option<Pusher>) {
        self.mailbox().pusher = pusher;
    }

    fn src(&self) -> Option<gst::Element> {
        lock(&self.src).as_ref().and_then(|w| w.upgrade())
    }

    /// Starts connecting, unless this connection already is or has. Returns
    /// at once; how it goes reaches the source through the mailbox. Only a
    /// request that can never work (a bad URI or header) is an error here.
    /// Error texts name the cause, never a secret.
    fn start(self: &Arc<Self>, cfg: &ConnectConfig) -> Result<(), End> {
        let mut link = lock(&self.link);
        if link.started {
            return Ok(());
        }
        let secrets = redact::secrets(&cfg.uri, &cfg.headers);
        let shown = redact::redact_uri(&cfg.uri);
        let request = dial::request(&cfg.uri, &cfg.headers)
            .map_err(|cause| failure(&shown, &secrets, cause, String::new()))?;
        let outbox = Arc::new(Outbox::default());
        let session = Arc::new(Session::new(
            cfg.serializer,
            CallIds {
                stream_sid: cfg.stream_sid.clone(),
                call_sid: cfg.call_sid.clone(),
            },
        ));
        // What the client says first goes first, before any audio.
        for msg in session.handshake() {
            outbox.send(msg);
        }
        {
            let mut mailbox = self.mailbox();
            mailbox.inbox.clear();
            mailbox.inbox.take_dropped();
            mailbox.end = None;
            mailbox.connected = false;
        }
        link.generation += 1;
        link.started = true;
        link.outgoing = Some(outbox.clone());
        link.session = Some(session.clone());
        gst::info!(CAT, "connection '{}': connecting to {shown}", self.name);
        let run = Run {
            outbox,
            session,
            conn: self.clone(),
            generation: link.generation,
            shown,
            secrets,
            hang_up_asked: Default::default(),
        };
        if !cfg.tls_verify {
            gst::warning!(
                CAT,
                "connection '{}': tls-verify=false, the bot's certificate is not checked",
                self.name
            );
        }
        let cfg = cfg.clone();
        link.task = Some(RUNTIME.spawn(run.run(request, cfg)));
        Ok(())
    }

    /// What the client says on this connection, once it is started.
    pub fn session(&self) -> Option<Arc<Session>> {
        lock(&self.link).session.clone()
    }

    /// Queues a message for the bot.
    pub fn send(&self, msg: Message) -> Result<(), Unsent> {
        self.send_with(|_| msg)
    }

    /// Queues what `make` builds with the connection's session: one lock
    /// of `link` per message (the sink's per-buffer path).
    pub fn send_with(&self, make: impl FnOnce(&Session) -> Message) -> Result<(), Unsent> {
        let link = lock(&self.link);
        if let Some(end) = self.mailbox().end.clone() {
            return Err(Unsent::Ended(end));
        }
        let (Some(outbox), Some(session)) = (link.outgoing.as_ref(), link.session.as_ref()) else {
            return Err(Unsent::NotConnected);
        };
        match outbox.send(make(session)) {
            Sent::Yes => Ok(()),
            Sent::Dropped(dropped) => {
                // The bot does not read fast enough: losing caller audio is
                // better than growing without bound.
                gst::warning!(
                    CAT,
                    "connection '{}': bot not reading, dropped {dropped} messages",
                    self.name,
                );
                Ok(())
            }
            Sent::Closed => match self.mailbox().end.clone() {
                Some(end) => Err(Unsent::Ended(end)),
                // The writer stopped on a failure the reader is about to
                // record: this message is lost with the connection, and
                // the next one learns why.
                None => {
                    gst::debug!(
                        CAT,
                        "connection '{}': the writer stopped; the reader says why",
                        self.name
                    );
                    Ok(())
                }
            },
        }
    }

    /// Everything there is to take now, in one lock (a lock per message
    /// is a cache miss per message at a thousand connections): the audio
    /// into `audio`, then what follows it, if anything (the end, or
    /// flushing, which comes with no audio), and what the inbox dropped.
    pub fn take_all(&self, audio: &mut Vec<Chunk>) -> (Option<Next>, Dropped) {
        let mut mailbox = self.mailbox();
        if mailbox.flushing {
            return (Some(Next::Flushing), mailbox.inbox.take_dropped());
        }
        while let Some(chunk) = mailbox.inbox.pop() {
            audio.push(chunk);
        }
        let after = mailbox.end.clone().map(Next::End);
        (after, mailbox.inbox.take_dropped())
    }

    fn take(mailbox: &mut Mailbox) -> Option<(Next, Dropped)> {
        let next = if mailbox.flushing {
            Next::Flushing
        } else if let Some(chunk) = mailbox.inbox.pop() {
            Next::Audio(chunk)
        } else {
            Next::End(mailbox.end.clone()?)
        };
        Some((next, mailbox.inbox.take_dropped()))
    }

    /// The next audio, the end, or a wake-up: whatever comes first, with
    /// what the inbox dropped to make room (only ever alongside audio).
    pub fn next(&self, timeout: Option<Duration>) -> (Next, Dropped) {
        let mut mailbox = self.mailbox();
        loop {
            if let Some(taken) = Self::take(&mut mailbox) {
                return taken;
            }
            match timeout {
                None => {
                    mailbox.sleepers += 1;
                    mailbox = wait(&self.cond, mailbox);
                    mailbox.sleepers -= 1;
                }
                Some(t) => {
                    mailbox.sleepers += 1;
                    let (guard, result) = wait_timeout(&self.cond, mailbox, t);
                    mailbox = guard;
                    mailbox.sleepers -= 1;
                    if result.timed_out()
                        && mailbox.inbox.is_empty()
                        && mailbox.end.is_none()
                        && !mailbox.flushing
                    {
                        return (Next::TimedOut, Dropped::default());
                    }
                }
            }
        }
    }

    pub fn set_flushing(&self, flushing: bool) {
        self.mailbox().flushing = flushing;
        self.cond.notify_all();
    }

    /// Waits until the socket is open, so what is sent next reaches the bot
    /// (a sink's buffer is not rendered before it can be).
    pub fn wait_connected(&self) -> Result<(), Unsent> {
        if !lock(&self.link).started {
            return Err(match self.mailbox().end.clone() {
                Some(end) => Unsent::Ended(end),
                None => Unsent::NotConnected,
            });
        }
        let mut mailbox = self.mailbox();
        loop {
            if mailbox.connected {
                return Ok(());
            }
            if let Some(end) = mailbox.end.clone() {
                return Err(Unsent::Ended(end));
            }
            if mailbox.send_flushing {
                return Err(Unsent::Flushing);
            }
            mailbox.sleepers += 1;
            mailbox = wait(&self.cond, mailbox);
            mailbox.sleepers -= 1;
        }
    }

    pub fn set_send_flushing(&self, flushing: bool) {
        self.mailbox().send_flushing = flushing;
        self.cond.notify_all();
    }

    fn set_connected(&self, generation: u64) -> bool {
        let link = lock(&self.link);
        if link.generation != generation || !link.started {
            return false;
        }
        self.mailbox().connected = true;
        self.cond.notify_all();
        true
    }

    /// Ends the connection from our side: a connect in progress is dropped,
    /// a close frame goes out, the reader stops, and anyone sending learns
    /// it is closed.
    fn close(&self) {
        let mut link = lock(&self.link);
        if let Some(task) = link.task.take() {
            task.abort();
        }
        // The writer sends what is queued, the close frame, and stops.
        if let Some(outbox) = link.outgoing.take() {
            outbox.close();
        }
        link.session = None;
        link.started = false;
        link.peer = None;
        drop(link);
        let mut mailbox = self.mailbox();
        if mailbox.end.is_none() {
            mailbox.end = Some(End::Closed {
                code: 1000,
                reason: "closed by the pipeline".into(),
            });
        }
        drop(mailbox);
        self.cond.notify_all();
        if self.key.is_some() {
            self.leave_registry(&mut lock(&REGISTRY));
        }
    }

    /// Unique in the process, never reused.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Takes this connection's entry out of the registry, if it is its.
    fn leave_registry(&self, registry: &mut HashMap<Key, Weak<Connection>>) {
        if let Some(key) = &self.key
            && registry
                .get(key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
        {
            registry.remove(key);
        }
    }

    /// Hands on what the bot said, which arrived at `arrival`.
    fn deliver(&self, inbound: Inbound, arrival: std::time::Instant) {
        match inbound {
            // Nothing to play; and nothing to let pile up.
            Inbound::Audio(audio) if audio.data.is_empty() => {}
            Inbound::Audio(audio) => {
                let mut mailbox = self.mailbox();
                mailbox.inbox.push(Chunk { audio, arrival });
                let sleepers = mailbox.sleepers > 0;
                let pusher = mailbox.pusher.clone();
                // Woken after the lock is released: a sleeper woken under
                // it would only block again on the lock (a second futex
                // round trip per message). A sleeper counted here is in its
                // wait already, so the wake-up cannot be lost.
                drop(mailbox);
                if sleepers {
                    self.cond.notify_all();
                }
                if let Some(pusher) = pusher {
                    pusher.call(self);
                }
            }
            Inbound::Interruption => {
                let dropped = self.mailbox().inbox.clear();
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
            // The read loop answers these itself.
            Inbound::HangUpRequested | Inbound::SessionClosed | Inbound::Nothing => {}
        }
    }

    fn post(
        &self,
        name: &str,
        fields: impl FnOnce(gst::structure::Builder) -> gst::structure::Builder,
    ) {
        if let Some(src) = self.src() {
            let s = fields(gst::Structure::builder(name)).build();
            callaudio::message::post_element_message(&src, s);
        }
    }

    /// Records how the connection ended and wakes the waiter. A failure goes
    /// on the bus first, so it is the first error an application sees (the
    /// base class adds a generic one once `create()` returns).
    fn finish(&self, generation: u64, end: End) {
        {
            let link = lock(&self.link);
            if link.generation != generation || self.mailbox().end.is_some() {
                return;
            }
        }
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
        // The end is recorded before the sender goes, in one hold of both
        // locks: a sender that finds no way to send finds why, never a
        // connection that looks as if it was never opened.
        let pusher = {
            let mut link = lock(&self.link);
            if link.generation != generation {
                return;
            }
            let mut mailbox = self.mailbox();
            mailbox.end.get_or_insert(end);
            mailbox.connected = false;
            // The run that reported this closes the outbox as it ends.
            link.outgoing = None;
            mailbox.pusher.clone()
        };
        self.cond.notify_all();
        if let Some(pusher) = pusher {
            pusher.call(self);
        }
    }
}

fn failure(shown: &str, secrets: &[String], cause: String, debug: String) -> End {
    End::Failed {
        text: redact::scrub(
            &format!("Could not connect to the Pipecat bot at {shown}: {cause}"),
            secrets,
        ),
        debug: redact::scrub(&debug, secrets),
    }
}

/// One connect-and-read of a connection, as a task on the runtime.
struct Run {
    /// For the keepalive pings and protocol answers, in order with the
    /// elements' messages.
    outbox: Arc<Outbox>,
    session: Arc<Session>,
    conn: Arc<Connection>,
    generation: u64,
    shown: String,
    secrets: Vec<String>,
    /// The bot asked to end the session (AudioHook `disconnect`) and was
    /// answered; the read loop then waits `CLOSED_GRACE` for its `closed`.
    hang_up_asked: std::sync::atomic::AtomicBool,
}

/// How long a bot that asked to end the session (AudioHook `disconnect`)
/// has to confirm it (`closed`) or close the socket; then the call ends
/// cleanly all the same, instead of staying open for good.
const CLOSED_GRACE: Duration = Duration::from_secs(2);

impl Run {
    async fn run(self, request: dial::Request, cfg: ConnectConfig) {
        let dialed =
            tokio::time::timeout(cfg.connect_timeout, dial::dial(request, cfg.tls_verify)).await;
        let Dialed {
            read,
            write,
            already,
        } = match dialed {
            Err(_) => {
                let cause = format!(
                    "no answer within connect-timeout ({:?})",
                    cfg.connect_timeout
                );
                return self.end(failure(&self.shown, &self.secrets, cause, String::new()));
            }
            Ok(Err(err)) => {
                let end = failure(
                    &self.shown,
                    &self.secrets,
                    connect_cause(&err),
                    format!("{err:?}"),
                );
                return self.end(end);
            }
            Ok(Ok(dialed)) => dialed,
        };
        // Dropped with this future, however it ends (aborted included): the
        // writer then has `CLOSE_GRACE` left.
        let (_reader_alive, reader_gone) = tokio::sync::oneshot::channel::<()>();
        RUNTIME.spawn(write_loop(self.outbox.clone().write(write), reader_gone));
        if !self.conn.set_connected(self.generation) {
            return;
        }
        gst::info!(
            CAT,
            "connection '{}': connected to {}",
            self.conn.name,
            self.shown
        );
        let frames = FrameReader::new(already, cfg.max_message_size);
        let end = self.read_loop(read, frames, &cfg).await;
        self.end(end);
    }

    fn end(&self, end: End) {
        self.conn.finish(self.generation, end);
    }
}

/// However the run ends (aborted included), its writer sends the close
/// frame after what is queued, and stops.
impl Drop for Run {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

impl Run {
    /// Reads until the connection ends. With `keepalive`, a ping goes out
    /// whenever the bot has been quiet for the interval; a bot that then
    /// sends nothing at all, not even the pong, within the timeout is frozen
    /// (stopped, or its host gone without closing TCP) and the call ends.
    async fn read_loop(
        &self,
        mut read: ReadSide,
        mut frames: FrameReader,
        cfg: &ConnectConfig,
    ) -> End {
        use std::task::Poll;
        use tokio::io::AsyncReadExt;
        use tokio::time::{Instant, sleep_until};
        let far = Duration::from_secs(365 * 24 * 3600);
        let (every, within) = cfg.keepalive.unwrap_or((far, far));
        // One timer for the whole read, moved only when it fires: re-arming
        // it per message put a timer-wheel insert and removal on every
        // message of every connection. Once polled, it wakes this task when
        // due, so it is polled again only then (or once after a move), not
        // each time the socket runs dry.
        let mut last_heard = Instant::now();
        let timer = sleep_until(last_heard + every);
        tokio::pin!(timer);
        let mut timer_polled = false;
        let mut pong_due = false;
        // Set once the bot asked to end the session: the latest the timer
        // may fire at from then on.
        let mut closed_by: Option<Instant> = None;
        loop {
            // What was read is taken in before more is read.
            match frames.next() {
                Ok(Some(received)) => {
                    if let Some(end) = self.take_in(received, cfg.serializer, last_heard.into_std())
                    {
                        return end;
                    }
                    if closed_by.is_none() && self.hang_up_asked.load(Ordering::Relaxed) {
                        let by = Instant::now() + CLOSED_GRACE;
                        closed_by = Some(by);
                        if timer.deadline() > by {
                            timer.as_mut().reset(by);
                            timer_polled = false;
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(err) => {
                    return End::Failed {
                        text: format!("Pipecat bot connection lost: {err} while receiving audio"),
                        debug: format!("{err:?}"),
                    };
                }
            }
            let read_or_timer = std::future::poll_fn(|cx| {
                if let Poll::Ready(read) = std::pin::pin!(read.read_buf(frames.room())).poll(cx) {
                    return Poll::Ready(Some(read));
                }
                if !timer_polled || Instant::now() >= timer.deadline() {
                    timer_polled = true;
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            })
            .await;
            match read_or_timer {
                None if closed_by.is_some_and(|by| Instant::now() >= by) => {
                    return End::Closed {
                        code: 1000,
                        reason: format!(
                            "the bot asked to end the session and did not confirm it (closed) within {CLOSED_GRACE:?}"
                        ),
                    };
                }
                None => {
                    let quiet_until = last_heard + every;
                    if pong_due {
                        return End::Failed {
                            text: format!(
                                "Pipecat bot connection lost: the bot did not answer a ping for {within:?} (frozen, or its host is gone)"
                            ),
                            debug: format!(
                                "keepalive-interval {every:?}, keepalive-timeout {within:?}: nothing received after the ping"
                            ),
                        };
                    }
                    timer_polled = false;
                    if Instant::now() < quiet_until {
                        // Heard from since it was armed: not quiet yet.
                        timer
                            .as_mut()
                            .reset(closed_by.map_or(quiet_until, |by| by.min(quiet_until)));
                        continue;
                    }
                    self.outbox.send(Message::Ping(Vec::new().into()));
                    pong_due = true;
                    let next = Instant::now() + within;
                    timer
                        .as_mut()
                        .reset(closed_by.map_or(next, |by| by.min(next)));
                }
                Some(Ok(0)) => {
                    return End::Failed {
                        text: "Pipecat bot connection lost: closed without a close frame (1006) while receiving audio".into(),
                        debug: "the stream ended with no close frame".into(),
                    };
                }
                Some(Ok(_)) => {
                    if cfg.delayed_ack {
                        read.delay_acks();
                    }
                    // Anything from the bot shows it is alive.
                    last_heard = Instant::now();
                    if std::mem::take(&mut pong_due) {
                        let next = last_heard + every;
                        timer
                            .as_mut()
                            .reset(closed_by.map_or(next, |by| by.min(next)));
                        timer_polled = false;
                    }
                }
                Some(Err(err)) => {
                    return End::Failed {
                        text: format!(
                            "Pipecat bot connection lost: {} while receiving audio",
                            read_cause(&err)
                        ),
                        debug: redact::scrub(&format!("{err:?}"), &self.secrets),
                    };
                }
            }
        }
    }

    /// Takes in one whole thing the bot sent, which arrived at `arrival`;
    /// returns how the connection ended, if it did.
    fn take_in(
        &self,
        received: Received,
        serializer: Serializer,
        arrival: std::time::Instant,
    ) -> Option<End> {
        let msg = match received {
            Received::Close(payload) => {
                // The answer a client owes (RFC 6455 5.5.1): the bot's code
                // back, or 1002 for one that may not be sent.
                let answer = (payload.len() >= 2).then(|| {
                    let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
                    CloseFrame {
                        code: if code.is_allowed() {
                            code
                        } else {
                            CloseCode::Protocol
                        },
                        reason: Default::default(),
                    }
                });
                self.outbox.send(Message::Close(answer));
                return Some(end_of_close(&payload));
            }
            Received::Message(Message::Ping(data)) => {
                self.outbox.send(Message::Pong(data));
                return None;
            }
            // It has done its work: the read loop heard from the bot.
            Received::Message(Message::Pong(_)) => return None,
            Received::Message(msg) => msg,
        };
        match serializer.decode(&msg) {
            Ok(Inbound::HangUpRequested) => {
                gst::info!(
                    CAT,
                    "connection '{}': the bot ends the session",
                    self.conn.name
                );
                if let Some(close) = self.session.close() {
                    self.outbox.send(close);
                }
                self.hang_up_asked.store(true, Ordering::Relaxed);
                None
            }
            Ok(Inbound::SessionClosed) => Some(End::Closed {
                code: 1000,
                reason: "the bot closed the session".into(),
            }),
            Ok(inbound) => {
                self.conn.deliver(inbound, arrival);
                None
            }
            Err(why) => {
                let data = msg.into_data();
                Some(End::Failed {
                    text: format!("Pipecat bot sent a frame that does not parse: {why}"),
                    debug: format!(
                        "{} bytes, starting {:02x?}",
                        data.len(),
                        &data[..data.len().min(32)]
                    ),
                })
            }
        }
    }
}

/// How long the writer may still take, once the reader is gone (the bot's
/// end, or the pipeline let go), to send what is queued and the close
/// frame. A bot that stopped reading would otherwise hold the writer on a
/// full socket for good, and with it the socket: one fd and one task per
/// frozen bot for the life of the process.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs `writer` (`Outbox::write`) until the close frame is out, or for
/// `CLOSE_GRACE` once the reader is gone.
async fn write_loop(
    writer: impl std::future::Future<Output = ()>,
    reader_gone: tokio::sync::oneshot::Receiver<()>,
) {
    tokio::pin!(writer);
    tokio::select! {
        () = &mut writer => return,
        _ = reader_gone => {}
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serializer::WireAudio;

    fn audio(first: u8) -> Inbound {
        Inbound::Audio(WireAudio {
            data: vec![first, 0, 0, 0].into(),
            rate: 8000,
            channels: 1,
            law: None,
        })
    }

    fn firsts(batch: &[Chunk]) -> Vec<u8> {
        batch.iter().map(|c| c.audio.data[0]).collect()
    }

    fn closed(conn: &Connection) -> bool {
        conn.mailbox().end.is_some()
    }

    /// Two users of one named connection coming and going on two threads:
    /// a connection handed out is never one its last user is closing.
    #[test]
    fn a_connection_handed_out_is_never_closed_by_a_racing_last_release() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let element = gst::ElementFactory::make("identity").build().unwrap();
        pipeline.add(&element).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (element, stop) = (element.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut handed_out_closed = 0;
                    let deadline = std::time::Instant::now() + Duration::from_millis(500);
                    while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                        let conn = Connection::acquire(&element, "race", None).unwrap();
                        if closed(&conn) {
                            handed_out_closed += 1;
                        }
                        drop(conn);
                    }
                    handed_out_closed
                })
            })
            .collect();
        let closed_ones: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(closed_ones, 0, "uses handed a closed connection");
    }

    /// A pipeline freed while an element of it still holds its connection:
    /// a new pipeline, whatever address it gets, never joins that entry.
    #[test]
    fn a_new_pipeline_never_joins_a_freed_ones_connection() {
        gst::init().unwrap();
        let held = {
            let pipeline = gst::Pipeline::new();
            let element = gst::ElementFactory::make("identity").build().unwrap();
            pipeline.add(&element).unwrap();
            let held = Connection::acquire(&element, "stale", None).unwrap();
            pipeline.remove(&element).unwrap();
            held
        };
        // Many new pipelines: the allocator hands one the freed address.
        for _ in 0..200 {
            let pipeline = gst::Pipeline::new();
            let element = gst::ElementFactory::make("identity").build().unwrap();
            pipeline.add(&element).unwrap();
            let conn = Connection::acquire(&element, "stale", None).unwrap();
            assert_ne!(conn.id(), held.id(), "joined a freed pipeline's connection");
        }
    }

    #[test]
    fn take_all_hands_over_everything_in_order_then_the_end() {
        let conn = Connection::new(None, None, "test");
        let arrival = std::time::Instant::now();
        for i in 0..3 {
            conn.deliver(audio(i), arrival);
        }
        conn.mailbox().end = Some(End::Closed {
            code: 1000,
            reason: "bye".into(),
        });
        let mut batch = Vec::new();
        let (after, dropped) = conn.take_all(&mut batch);
        assert_eq!(firsts(&batch), [0, 1, 2]);
        assert!(batch.iter().all(|c| c.arrival == arrival));
        assert!(matches!(
            after,
            Some(Next::End(End::Closed { code: 1000, .. }))
        ));
        assert!(dropped.is_empty());

        // Taken means gone; while flushing, only that.
        batch.clear();
        conn.deliver(audio(7), arrival);
        conn.set_flushing(true);
        let (after, _) = conn.take_all(&mut batch);
        assert!(batch.is_empty());
        assert!(matches!(after, Some(Next::Flushing)));
    }

    #[test]
    fn a_sender_learns_why_the_connection_ended_never_that_it_was_not_opened() {
        let conn = Connection::new(None, None, "test");
        let outbox = Arc::new(Outbox::default());
        {
            let mut link = lock(&conn.link);
            link.outgoing = Some(outbox.clone());
            link.session = Some(Arc::new(Session::new(
                Serializer::Protobuf,
                CallIds::default(),
            )));
        }
        // The writer stopped on a failure the reader has not recorded yet.
        outbox.close();
        assert!(conn.send(Message::Text("lost".into())).is_ok());
        // The reader records it; whoever sends next learns it.
        conn.finish(
            0,
            End::Failed {
                text: "the bot is gone".into(),
                debug: String::new(),
            },
        );
        assert!(lock(&conn.link).outgoing.is_none());
        match conn.send(Message::Text("late".into())) {
            Err(Unsent::Ended(End::Failed { text, .. })) => assert_eq!(text, "the bot is gone"),
            Err(Unsent::NotConnected) => panic!("not connected, instead of why it ended"),
            _ => panic!("sent on an ended connection"),
        }
    }

    #[test]
    fn the_pusher_is_called_with_its_connection_after_the_audio_is_queued() {
        type Seen = Vec<(String, usize, Vec<u8>)>;
        static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
        gst::init().unwrap();
        let conn = Arc::new(Connection::new(None, None, "test"));
        conn.set_pusher(Some(Pusher {
            pad: gst::Pad::builder(gst::PadDirection::Src)
                .name("the-pad")
                .build(),
            push: |pad, c| {
                let mut batch = Vec::new();
                c.take_all(&mut batch);
                let address = c as *const Connection as usize;
                lock(&SEEN).push((pad.name().to_string(), address, firsts(&batch)));
            },
        }));
        conn.deliver(audio(5), std::time::Instant::now());
        let address = Arc::as_ptr(&conn) as usize;
        assert_eq!(*lock(&SEEN), [("the-pad".to_string(), address, vec![5])]);
    }
}
