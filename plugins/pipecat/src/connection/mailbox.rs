// SPDX-License-Identifier: MPL-2.0
//! What arrives for the source: the mailbox that holds it, and its
//! delivery, to a waiting `pipecatwsrc` or to `pipecatwssharedsrc`'s pusher.

use super::*;

pub enum Next {
    Audio(Chunk),
    End(End),
    Flushing,
    TimedOut,
}

pub(super) struct Mailbox {
    pub(super) inbox: Inbox,
    pub(super) end: Option<End>,
    /// The source is flushing: `next` returns at once.
    pub(super) flushing: bool,
    /// The sink is flushing: `wait_connected` returns at once.
    pub(super) send_flushing: bool,
    /// The socket is open and its writer runs.
    pub(super) connected: bool,
    /// How many threads sleep on `cond` now: the reader signals only then
    /// (a signal is a system call, and a thousand bots send 50 000 messages
    /// a second).
    pub(super) sleepers: usize,
    /// A source that takes what arrives on the reader's own thread
    /// (`pipecatwssharedsrc`) instead of waiting on `cond`: called, with no
    /// lock held, after audio or the end arrived.
    pub(super) pusher: Option<Pusher>,
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
    pub(super) fn call(&self, conn: &Connection) {
        (self.push)(&self.pad, conn)
    }
}

impl Connection {
    pub(super) fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
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

    pub(super) fn src(&self) -> Option<gst::Element> {
        lock(&self.src).as_ref().and_then(|w| w.upgrade())
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

    pub(super) fn take(mailbox: &mut Mailbox) -> Option<(Next, Dropped)> {
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

    /// Hands on what the bot said, which arrived at `arrival`.
    pub(super) fn deliver(&self, inbound: Inbound, arrival: std::time::Instant) {
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

    pub(super) fn post(
        &self,
        name: &str,
        fields: impl FnOnce(gst::structure::Builder) -> gst::structure::Builder,
    ) {
        if let Some(src) = self.src() {
            let s = fields(gst::Structure::builder(name)).build();
            callaudio::message::post_element_message(&src, s);
        }
    }
}
