// SPDX-License-Identifier: MPL-2.0
//! A real Pipecat bot (`plugins/pipecat/tests/bot/bot.py` on `pipecat-ai`
//! from PyPI, in the workspace's venv) and raw servers for what no real bot
//! sends (garbage, oversized frames, a 401), with the pipelines the Pipecat
//! tests and the `agent_call` tests drive. The caller registers the plugins.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callaudio::g711;
use gst::prelude::*;

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
    /// tests/bot/bot.py: Pipecat's WebSocket server transport with the
    /// serializer `--serializer` names.
    pub fn start(args: &[&str]) -> Bot {
        Bot::start_script("bot.py", args)
    }

    /// tests/bot/runner_bot.py: an echo bot behind Pipecat's development
    /// runner, which tells the provider from the client's handshake.
    pub fn start_runner() -> Bot {
        Bot::start_script("runner_bot.py", &[])
    }

    fn start_script(script: &str, args: &[&str]) -> Bot {
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
            .arg(root.join("plugins/pipecat/tests/bot").join(script))
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
    /// When each buffer arrived.
    pub arrivals: Vec<Instant>,
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
                let now = Instant::now();
                r.last_arrival = Some(now);
                r.arrivals.push(now);
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

/// The server side of one upgraded WebSocket connection, as `one_bot`
/// hands it over.
pub type BotSide = tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream>;

/// A one-connection WebSocket server: `bot` gets the upgraded connection
/// and the client's address, on a thread of its own. Returns the port.
pub fn one_bot(bot: impl FnOnce(BotSide, std::net::SocketAddr) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, peer) = listener.accept().unwrap();
        bot(
            tokio_tungstenite::tungstenite::accept(stream).unwrap(),
            peer,
        );
    });
    port
}

/// A one-connection WebSocket server that sends `messages` and then waits.
pub fn raw_server(messages: Vec<tokio_tungstenite::tungstenite::Message>) -> u16 {
    one_bot(|mut ws, _| {
        for m in messages {
            if ws.send(m).is_err() {
                return;
            }
        }
        // Keep the socket open: the element must fail on the message alone.
        std::thread::sleep(Duration::from_secs(10));
    })
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

/// A WebSocket frame as a server writes it (not masked): for bots that
/// write their bytes by hand.
pub fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend(payload);
    out
}

/// A one-connection WebSocket server that writes `bytes` raw after the
/// upgrade (hand-made frames a well-behaved library would never send).
pub fn raw_bytes_server(bytes: Vec<u8>) -> u16 {
    use std::io::Write;
    one_bot(move |mut ws, _| {
        let _ = ws.get_mut().write_all(&bytes);
        std::thread::sleep(Duration::from_secs(10));
    })
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

/// What the bot's ramp looks like after the wire: exact for protobuf,
/// through mu-law (Pipecat's `audioop.lin2ulaw`) for Twilio.
pub fn over_the_wire(serializer: &str, samples: Vec<i16>) -> Vec<i16> {
    match serializer {
        "twilio" | "telnyx" | "plivo" | "genesys" => samples
            .into_iter()
            .map(|s| g711::ulaw_to_linear(g711::linear_to_ulaw(s)))
            .collect(),
        "telnyx-pcma" => samples
            .into_iter()
            .map(|s| g711::alaw_to_linear(g711::linear_to_alaw(s)))
            .collect(),
        _ => samples,
    }
}

/// The rate a wire carries: what the bot is set to for protobuf.
pub fn serializer_rate(serializer: &str) -> usize {
    match serializer {
        "vonage" => 16000,
        _ => 8000,
    }
}

/// Sends 1 s of a ramp through pipecatwssink to an echo bot at `uri` and
/// checks that pipecatwsrc gets it back sample for sample (through the
/// wire's law), all of it but at most the first `may_lose` samples. Returns
/// the pipeline, stopped, for what else a test reads from its bus.
pub fn echo_round_trip(uri: &str, serializer: &str, extra: &str, may_lose: usize) -> gst::Pipeline {
    echo_round_trip_through("pipecatwsrc", uri, serializer, extra, may_lose)
}

/// `echo_round_trip` with `source` (`pipecatwsrc` or `pipecatwssharedsrc`)
/// sharing the sink's connection.
pub fn echo_round_trip_through(
    source: &str,
    uri: &str,
    serializer: &str,
    extra: &str,
    may_lose: usize,
) -> gst::Pipeline {
    let connection = format!("echo-{serializer}");
    let rate = serializer_rate(serializer);
    let pipeline = launch(&format!(
        "appsrc name=caller is-live=true format=time caps=audio/x-raw,format=S16LE,layout=interleaved,rate={rate},channels=1 \
           ! pipecatwssink connection={connection} serializer={serializer} \
         {source} connection={connection} uri={uri} serializer={serializer} {extra} ! appsink name=sink sync=false"
    ));
    let received = record(&pipeline, "sink");
    pipeline.set_state(gst::State::Playing).unwrap();
    let caller = pipeline
        .by_name("caller")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    // 1 s of a ramp that starts at 1, so its first sample is easy to find.
    let sent: Vec<i16> = (0..rate).map(|k| 1 + (k % 20000) as i16).collect();
    for (i, chunk) in sent.chunks(rate / 50).enumerate() {
        let mut buffer = gst::Buffer::from_mut_slice(
            chunk
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(20 * i as u64));
        caller.push_buffer(buffer).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected = over_the_wire(serializer, sent);
    // Where in what was sent the echo starts: the first sample the wire
    // leaves non-zero (mu-law rounds the smallest ramp values to 0), found
    // with the 40 samples after it (a window fits one place of the ramp).
    let align = |samples: &[i16]| -> Option<(usize, usize)> {
        let got = samples.iter().position(|&s| s != 0)?;
        let window = samples.get(got..got + 40)?;
        let sent_at = expected.windows(40).position(|w| w == window)?;
        let lead = expected[..sent_at]
            .iter()
            .rev()
            .take_while(|&&s| s == 0)
            .count();
        Some((got.checked_sub(lead)?, sent_at - lead))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = received.lock().unwrap();
        if align(&r.samples)
            .is_some_and(|(got, sent_at)| r.samples.len() >= got + expected.len() - sent_at)
        {
            break;
        }
        drop(r);
        std::thread::sleep(Duration::from_millis(50));
    }
    let errors = std::iter::from_fn(|| {
        pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
    })
    .count();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(errors, 0);
    let r = received.lock().unwrap();
    let (got, sent_at) = align(&r.samples).expect("nothing of what was sent came back");
    assert!(
        sent_at <= may_lose,
        "the first {sent_at} samples sent never came back (at most {may_lose} may)"
    );
    let expected = &expected[sent_at..];
    let back = &r.samples[got..(got + expected.len()).min(r.samples.len())];
    assert_eq!(
        back.len(),
        expected.len(),
        "only {} of {} samples came back",
        back.len(),
        expected.len()
    );
    assert_eq!(back, expected, "the echo differs from what was sent");
    drop(r);
    pipeline
}

/// Keys from the `send-dtmf` signal and from a `dtmf-event` (as
/// `rtpdtmfdepay` posts it) reach the bot as `InputDTMFFrame`s, in order.
pub fn send_dtmf_through_the_sink(uri: &str, serializer: &str, bot: &Bot) {
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true wave=silence samplesperbuffer=160 \
           ! audio/x-raw,rate={},channels=1 ! pipecatwssink name=sink uri={uri} serializer={serializer}",
        serializer_rate(serializer)
    ));
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(sink.emit_by_name::<bool>("send-dtmf", &[&"12"]));
    // A-D are valid RFC 2833 keys that no Pipecat serializer takes.
    assert!(!sink.emit_by_name::<bool>("send-dtmf", &[&"A"]));
    for (number, start) in [(11, true), (11, false), (10, true)] {
        let event = gst::Structure::builder("dtmf-event")
            .field("type", 1i32)
            .field("number", number)
            .field("volume", 25i32)
            .field("start", start)
            .build();
        sink.static_pad("sink")
            .unwrap()
            .send_event(gst::event::CustomDownstream::new(event));
    }
    let mut keys = String::new();
    while keys.len() < 4 {
        let Some(line) = bot.line("DTMF", Duration::from_secs(10)) else {
            break;
        };
        keys.push_str(line.trim_start_matches("DTMF "));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(keys, "12#*", "{serializer}: the bot got other keys");
}
