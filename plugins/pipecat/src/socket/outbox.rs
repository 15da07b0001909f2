// SPDX-License-Identifier: MPL-2.0
//! What goes to the bot, in order: each message is framed (and masked, as
//! a client's frames must be) by whoever sends it, and written from that
//! thread at once when nothing waits before it and the socket takes it
//! (plain TCP). Otherwise it is queued for the connection's writer task,
//! which waits for the socket.
//!
//! Handing every message to the writer task cost a wake-up of the
//! WebSocket runtime's thread and two thread switches per 20 ms of caller
//! audio: at a thousand sink legs, more than the sinks' own work. Written
//! from the streaming thread, a message costs the system call it needs
//! anyway, and the runtime's thread sleeps.
//!
//! The queue holds at most `CAPACITY` messages: a bot that does not read
//! loses the newest caller audio, never the process its memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use callaudio::sync::lock;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::socket::dial::WriteSide;
use crate::socket::frames::client_frame;

/// Messages waiting while the bot is slow or not connected yet.
pub const CAPACITY: usize = 500;

/// What became of a message.
#[derive(Debug, PartialEq)]
pub enum Sent {
    /// Written, or queued to be.
    Yes,
    /// The queue was full: dropped, the `n`th so far.
    Dropped(u64),
    /// The connection is closing: nothing more goes out.
    Closed,
}

#[derive(Default)]
struct State {
    /// Framed messages (or what is left of one) in order.
    queue: VecDeque<Bytes>,
    /// The writer task has taken frames out of `queue` and writes them:
    /// what is sent meanwhile is queued behind them.
    writing: bool,
    /// The socket, for writes from the sender's thread (plain TCP only).
    direct: Option<Arc<OwnedWriteHalf>>,
    /// A close frame is queued, or the writer is gone.
    closed: bool,
    dropped: u64,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Something was queued while the writer task waited.
    queued: Notify,
}

/// What the writer is to do next.
enum Next {
    Write(VecDeque<Bytes>),
    Wait,
    Stop,
}

impl Outbox {
    /// Frames `msg` and writes or queues it.
    pub fn send(&self, msg: Message) -> Sent {
        let close = matches!(msg, Message::Close(_));
        let Some(frame) = client_frame(&msg) else {
            return Sent::Yes;
        };
        let mut state = lock(&self.state);
        if state.closed {
            return Sent::Closed;
        }
        // A close frame goes out whatever is queued: it ends the queue.
        if state.queue.len() >= CAPACITY && !close {
            state.dropped += 1;
            return Sent::Dropped(state.dropped);
        }
        state.closed = close;
        let mut failed = false;
        let mut rest = Bytes::from(frame);
        if !state.writing
            && state.queue.is_empty()
            && let Some(socket) = &state.direct
        {
            match socket.try_write(&rest) {
                Ok(n) if n == rest.len() => rest.clear(),
                Ok(n) => {
                    let _ = rest.split_to(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The reader sees the same failure and reports it.
                Err(_) => {
                    state.closed = true;
                    failed = true;
                    rest.clear();
                }
            }
        }
        if !rest.is_empty() {
            state.queue.push_back(rest);
        }
        // The writer waits only with nothing queued and the queue open.
        if !state.writing && (!state.queue.is_empty() || state.closed) {
            self.queued.notify_one();
        }
        if failed { Sent::Closed } else { Sent::Yes }
    }

    /// Nothing more is sent but the close frame (with no code), after what
    /// is queued; unless a close frame went already.
    pub fn close(&self) {
        let _ = self.send(Message::Close(None));
    }

    /// For the writer: the frames queued now, which it writes before anyone
    /// else writes; or to wait for some; or to stop, once the queue is
    /// closed and empty.
    fn next(&self) -> Next {
        let mut state = lock(&self.state);
        state.writing = !state.queue.is_empty();
        if state.writing {
            Next::Write(std::mem::take(&mut state.queue))
        } else if state.closed {
            Next::Stop
        } else {
            Next::Wait
        }
    }

    /// The writer task: writes what is queued until the close frame is out
    /// (or the socket fails). Plain TCP is shared with the senders' direct
    /// writes; a TLS stream is written here alone.
    pub async fn write(self: Arc<Self>, socket: WriteSide) {
        let mut socket = match socket {
            WriteSide::Plain(half) => {
                let half = Arc::new(half);
                lock(&self.state).direct = Some(half.clone());
                Writer::Plain(half)
            }
            WriteSide::Tls(half) => Writer::Tls(half),
        };
        // However this ends (the grace after the reader went included),
        // the socket is not kept for senders.
        let _done = Done(&self);
        loop {
            match self.next() {
                Next::Write(frames) => {
                    for frame in frames {
                        if socket.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                }
                Next::Wait => self.queued.notified().await,
                Next::Stop => break,
            }
        }
        socket.shutdown().await;
    }
}

/// Ends the outbox when the writer ends.
struct Done<'a>(&'a Outbox);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.closed = true;
        state.writing = false;
        state.queue.clear();
        state.direct = None;
    }
}

/// The writer task's side of the socket.
enum Writer {
    Plain(Arc<OwnedWriteHalf>),
    Tls(tokio::io::WriteHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl Writer {
    async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Plain(half) => {
                while !data.is_empty() {
                    match half.try_write(data) {
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            half.writable().await?
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Writer::Tls(half) => {
                half.write_all(data).await?;
                half.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        if let Writer::Tls(half) = self {
            let _ = half.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};

    /// An outbox on a loopback socket, its writer running, and the bot's
    /// end of that socket.
    fn connected(rt: &tokio::runtime::Runtime) -> (Arc<Outbox>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ours = rt.block_on(tokio::net::TcpStream::connect(addr)).unwrap();
        let (bot, _) = listener.accept().unwrap();

        let (_read, write) = ours.into_split();
        let outbox = Arc::new(Outbox::default());
        rt.spawn(outbox.clone().write(WriteSide::Plain(write)));
        (outbox, bot)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    fn message(i: usize) -> Message {
        Message::Binary(Bytes::from(vec![i as u8; 64 * 1024]))
    }

    /// A bot that reads slowly, 16 kB at a time.
    struct SlowBot(std::net::TcpStream);

    impl std::io::Read for SlowBot {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(1));
            let n = buf.len().min(16 * 1024);
            self.0.read(&mut buf[..n])
        }
    }

    impl std::io::Write for SlowBot {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }

    #[test]
    fn what_is_sent_arrives_whole_and_in_order_while_the_socket_fills() {
        let rt = runtime();
        let (outbox, bot) = connected(&rt);
        // 19 MB to a bot slower than the sender: the socket fills and
        // empties while messages keep coming, so they go out whole from the
        // sender's thread, in pieces, and from the writer's queue.
        let bot = std::thread::spawn(move || {
            let mut bot = WebSocket::from_raw_socket(SlowBot(bot), Role::Server, None);
            (0..300).all(|i| bot.read().unwrap() == message(i))
                && bot.read().unwrap() == Message::Close(None)
        });
        for i in 0..300 {
            assert_eq!(outbox.send(message(i)), Sent::Yes);
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        outbox.close();
        assert_eq!(outbox.send(message(0)), Sent::Closed);
        assert!(bot.join().unwrap(), "out of order, or not whole");
    }

    #[test]
    fn a_bot_that_does_not_read_costs_at_most_the_queue() {
        let rt = runtime();
        let (outbox, bot) = connected(&rt);
        let mut sent = 0;
        let dropped = loop {
            match outbox.send(message(sent)) {
                Sent::Yes => sent += 1,
                Sent::Dropped(n) => break n,
                Sent::Closed => panic!("closed"),
            }
            assert!(sent < 10_000, "never full");
        };
        assert_eq!(dropped, 1);
        assert!(lock(&outbox.state).queue.len() <= CAPACITY);
        // The close frame still goes, after everything queued.
        outbox.close();
        let mut bot = WebSocket::from_raw_socket(bot, Role::Server, None);
        for i in 0..sent {
            assert_eq!(bot.read().unwrap(), message(i), "message {i}");
        }
        assert_eq!(bot.read().unwrap(), Message::Close(None));
    }
}
