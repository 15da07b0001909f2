//! A real Pipecat bot (tests/bot/bot.py on pipecat-ai from PyPI) and a raw
//! WebSocket server for what no real bot sends (garbage, oversized, 401).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

pub fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstpipecat::plugin_register_static().unwrap();
    });
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bot process; killed when dropped.
pub struct Bot {
    pub child: Child,
    pub port: u16,
    /// What the bot prints after READY.
    lines: std::sync::mpsc::Receiver<String>,
}

impl Bot {
    pub fn start(args: &[&str]) -> Bot {
        // The workspace root: this helper is shared by crates at different depths.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|d| d.join("Cargo.lock").exists())
            .expect("inside the workspace");
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "no {}: run scripts/setup.sh to install pipecat-ai",
            python.display()
        );
        let port = free_port();
        let mut child = Command::new(python)
            .arg(root.join("plugins/pipecat/tests/bot/bot.py"))
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("READY") => break,
                Ok(_) => continue,
                Err(_) => panic!("the Pipecat bot did not start within 60 s"),
            }
        }
        Bot {
            child,
            port,
            lines: rx,
        }
    }

    /// The next line the bot prints that starts with `prefix`, waiting at
    /// most `timeout`.
    pub fn line(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    pub fn uri(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What reached an appsink: the samples, the caps rate, and when the last
/// buffer came.
#[derive(Default)]
pub struct Received {
    pub samples: Vec<i16>,
    pub rates: Vec<i32>,
    pub last_arrival: Option<Instant>,
    pub pts: Vec<(gst::ClockTime, gst::ClockTime)>,
}

pub fn record(pipeline: &gst::Pipeline, name: &str) -> Arc<Mutex<Received>> {
    let received = Arc::new(Mutex::new(Received::default()));
    let r = received.clone();
    let sink = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let rate = sample
                    .caps()
                    .unwrap()
                    .structure(0)
                    .unwrap()
                    .get::<i32>("rate")
                    .unwrap();
                let buffer = sample.buffer().unwrap();
                let map = buffer.map_readable().unwrap();
                let mut r = r.lock().unwrap();
                r.samples.extend(
                    map.chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]])),
                );
                if r.rates.last() != Some(&rate) {
                    r.rates.push(rate);
                }
                r.pts
                    .push((buffer.pts().unwrap(), buffer.duration().unwrap()));
                r.last_arrival = Some(Instant::now());
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    received
}

pub fn launch(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Pops every message until one of `types` (or the timeout): all of them,
/// and the one that ended the wait with when it came.
pub fn wait_for(
    pipeline: &gst::Pipeline,
    types: &[gst::MessageType],
    timeout: Duration,
) -> (Vec<gst::Message>, Option<(gst::Message, Instant)>) {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else {
            break;
        };
        if types.contains(&msg.type_()) {
            return (seen, Some((msg, Instant::now())));
        }
        seen.push(msg);
    }
    (seen, None)
}

pub fn structures(messages: &[gst::Message]) -> Vec<gst::Structure> {
    messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e.structure().map(|s| s.to_owned()),
            _ => None,
        })
        .collect()
}

pub fn error_of(msg: &gst::Message) -> Option<(String, String)> {
    match msg.view() {
        gst::MessageView::Error(e) => Some((
            e.error().to_string(),
            e.debug().map(|d| d.to_string()).unwrap_or_default(),
        )),
        _ => None,
    }
}

/// The bot's ramp: sample k is k % 20000.
pub fn ramp(n: usize) -> Vec<i16> {
    (0..n).map(|k| (k % 20000) as i16).collect()
}

/// A one-connection WebSocket server that sends `messages` and then waits.
pub fn raw_server(messages: Vec<tokio_tungstenite::tungstenite::Message>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tokio_tungstenite::tungstenite::accept(stream).unwrap();
        for m in messages {
            if ws.send(m).is_err() {
                return;
            }
        }
        // Keep the socket open: the element must fail on the message alone.
        std::thread::sleep(Duration::from_secs(10));
    });
    port
}

/// A server that answers the upgrade with a plain HTTP status; the request it
/// got comes back through the receiver.
pub fn http_server(status: &'static str) -> u16 {
    http_server_seeing(status).0
}

pub fn http_server_seeing(status: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    });
    (port, rx)
}

/// A one-connection WebSocket server that writes `bytes` raw after the
/// upgrade (hand-made frames a well-behaved library would never send).
pub fn raw_bytes_server(bytes: Vec<u8>) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tokio_tungstenite::tungstenite::accept(stream).unwrap();
        let _ = ws.get_mut().write_all(&bytes);
        std::thread::sleep(Duration::from_secs(10));
    });
    port
}

/// A server that accepts TCP connections and never answers anything.
pub fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    port
}

/// Starts `desc`, which must fail to start; the text of its ERROR.
pub fn start_error(desc: &str) -> String {
    let pipeline = launch(desc);
    assert!(
        pipeline.set_state(gst::State::Playing).is_err(),
        "{desc} started"
    );
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(2),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    error_of(&end.expect("an ERROR").0).unwrap().0
}
