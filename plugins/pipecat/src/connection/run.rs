// SPDX-License-Identifier: MPL-2.0
//! One connect-and-read of a connection, as tasks on the runtime: the
//! reader (pings, decoding, the end of the socket) and the writer of
//! what the socket did not take at once.

use super::*;

pub(super) fn failure(shown: &str, secrets: &[String], cause: String, debug: String) -> End {
    End::Failed {
        text: redact::scrub(
            &format!("Could not connect to the Pipecat bot at {shown}: {cause}"),
            secrets,
        ),
        debug: redact::scrub(&debug, secrets),
    }
}

/// One connect-and-read of a connection, as a task on the runtime.
pub(super) struct Run {
    /// For the keepalive pings and protocol answers, in order with the
    /// elements' messages.
    pub(super) outbox: Arc<Outbox>,
    pub(super) session: Arc<Session>,
    pub(super) conn: Arc<Connection>,
    pub(super) generation: u64,
    pub(super) shown: String,
    pub(super) secrets: Vec<String>,
    /// The bot asked to end the session (AudioHook `disconnect`) and was
    /// answered; the read loop then waits `CLOSED_GRACE` for its `closed`.
    pub(super) hang_up_asked: std::sync::atomic::AtomicBool,
}

/// How long a bot that asked to end the session (AudioHook `disconnect`)
/// has to confirm it (`closed`) or close the socket; then the call ends
/// cleanly all the same, instead of staying open for good.
pub(super) const CLOSED_GRACE: Duration = Duration::from_secs(2);

impl Run {
    pub(super) async fn run(self, request: dial::Request, cfg: ConnectConfig) {
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
        crate::runtime::spawn(write_loop(self.outbox.clone().write(write), reader_gone));
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

    pub(super) fn end(&self, end: End) {
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
    pub(super) async fn read_loop(
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
    pub(super) fn take_in(
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
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs `writer` (`Outbox::write`) until the close frame is out, or for
/// `CLOSE_GRACE` once the reader is gone.
pub(super) async fn write_loop(
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
