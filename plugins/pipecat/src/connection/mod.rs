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

use crate::inbox::{Chunk, Dropped, Inbox, Limits};
pub use crate::socket::close::End;
use crate::socket::close::{connect_cause, end_of_close, read_cause};
use crate::socket::dial::{self, Dialed, ReadSide};
use crate::socket::frames::{FrameReader, Received};
use crate::socket::outbox::{Outbox, Sent};
use crate::wire::redact;
use crate::wire::serializer::{Inbound, Serializer};
use crate::wire::session::{CallIds, Session};

mod mailbox;
mod registry;
mod run;
#[cfg(test)]
mod tests;

use mailbox::Mailbox;
pub use mailbox::{Next, Pusher};
pub use registry::Use;
use registry::{Key, REGISTRY};
use run::{Run, failure};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "pipecatws",
        gst::DebugColorFlags::empty(),
        Some("Pipecat WebSocket connection"),
    )
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

impl Connection {
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
        link.task = Some(crate::runtime::spawn(run.run(request, cfg)));
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
