// SPDX-License-Identifier: MPL-2.0
//! The `agent_call` example driven as a user runs it: a real RTP caller
//! (GStreamer's own `rtppcmupay ! udpsink`), a real Pipecat bot, the
//! recording read back with `hound`. One test per way a call ends.

use callaudio_testkit::pipecat as bot;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

const RATE: usize = 8000;

fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| gst::init().unwrap());
}

/// The example binary cargo built beside this test.
fn example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/agent_call");
    assert!(
        path.exists(),
        "{} not built: run cargo build --examples",
        path.display()
    );
    path
}

/// A running call: the example process and its stdout lines with arrival times.
struct Call {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    output: std::path::PathBuf,
}

impl Call {
    fn start(bot_uri: &str, rtp_in: u16, rtp_out: u16, test: &str) -> Call {
        let dir = std::env::temp_dir().join(format!("agent-call-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let output = dir.join("call.wav");
        let mut child = Command::new(example())
            .args(["--bot-uri", bot_uri, "--rtp-in", &rtp_in.to_string()])
            .args([
                "--rtp-out",
                &format!("127.0.0.1:{rtp_out}"),
                "--no-media-timeout",
                "1",
            ])
            // Loopback has no network jitter to absorb.
            .args(["--jitter-latency", "0"])
            .arg("--output")
            .arg(&output)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().unwrap().push((Instant::now(), line));
            }
        });
        let call = Call {
            child,
            lines,
            output,
        };
        call.wait_for_line("call started", Duration::from_secs(30));
        call
    }

    fn wait_for_line(&self, prefix: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| l.starts_with(prefix))
            {
                return *at;
            }
            assert!(
                Instant::now() < deadline,
                "no '{prefix}' from agent_call; said: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn text(&self) -> String {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("agent_call was killed by a signal");
            }
            assert!(
                Instant::now() < deadline,
                "agent_call did not exit; said: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The caller: beeps (`beep` of 440 Hz in every `period`) as PCMU over RTP,
/// paced in real time. Returns when each beep started.
fn send_rtp(port: u16, period: Duration, beep: Duration, count: usize) -> Vec<Instant> {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src is-live=true format=time caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 \
         ! mulawenc ! rtppcmupay ! udpsink host=127.0.0.1 port={port} sync=false"
    ))
    .unwrap();
    let src = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let frames_per_buffer = RATE / 50;
    let buffers_per_period = (period.as_millis() / 20) as usize;
    let beep_buffers = (beep.as_millis() / 20) as usize;
    let start = Instant::now();
    let mut onsets = Vec::new();
    for b in 0..count * buffers_per_period {
        let in_beep = b % buffers_per_period < beep_buffers;
        if in_beep && b % buffers_per_period == 0 {
            onsets.push(Instant::now());
        }
        let samples: Vec<u8> = (0..frames_per_buffer)
            .map(|i| {
                let k = b * frames_per_buffer + i;
                if in_beep {
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * k as f64 / RATE as f64).sin())
                        as i16
                } else {
                    0
                }
            })
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(samples);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(20 * b as u64));
        src.push_buffer(buffer).unwrap();
        let due = start + Duration::from_millis(20 * (b as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    onsets
}

/// The caller's phone: what comes back over RTP, with when loud parts begin.
fn receive_rtp(port: u16) -> (gst::Element, Arc<Mutex<Vec<Instant>>>) {
    let pipeline = gst::parse::launch(&format!(
        "udpsrc port={port} caps=\"application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0\" \
         ! rtppcmudepay ! mulawdec ! appsink name=sink sync=false"
    ))
    .unwrap();
    let onsets = Arc::new(Mutex::new(Vec::new()));
    let o = onsets.clone();
    let sink = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    // A beep starts after a real pause (beeps are 100 ms in 400 ms): a short
    // dropout inside a beep must not count as a new one.
    let last_loud = Arc::new(Mutex::new(None::<Instant>));
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let map = sample.buffer().unwrap().map_readable().unwrap();
                let peak = map
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]).unsigned_abs())
                    .max()
                    .unwrap_or(0);
                if peak > 2000 {
                    let now = Instant::now();
                    let mut last = last_loud.lock().unwrap();
                    if last.is_none_or(|l| now.duration_since(l) > Duration::from_millis(150)) {
                        o.lock().unwrap().push(now);
                    }
                    *last = Some(now);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, onsets)
}

/// Samples of channel `c` of a stereo recording, read by hound.
fn channels(path: &std::path::Path) -> Vec<Vec<i16>> {
    let mut reader = hound::WavReader::open(path).unwrap();
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.spec().sample_rate, RATE as u32);
    let all: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    (0..2)
        .map(|c| all.iter().skip(c).step_by(2).copied().collect())
        .collect()
}

/// Where loud stretches begin in a channel (in samples).
fn onsets(samples: &[i16]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut quiet_for = usize::MAX;
    for (i, s) in samples.iter().enumerate() {
        if s.unsigned_abs() > 2000 {
            // A new beep only after a real pause (beeps: 100 ms in 400 ms).
            if quiet_for > RATE * 15 / 100 {
                out.push(i);
            }
            quiet_for = 0;
        } else {
            quiet_for = quiet_for.saturating_add(1);
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The bot's own round trip, with no GStreamer in the path: a plain
/// WebSocket client sends the same beeps as protobuf audio frames and times
/// the echo. Returns the sorted round trips.
fn bot_alone_round_trips(beeps: usize) -> Vec<Duration> {
    use gstpipecat::protobuf;
    use tokio_tungstenite::tungstenite::{self, Message};
    let echo = bot::Bot::start(&["--mode", "echo", "--rate", "8000"]);
    let (mut ws, _) = tungstenite::connect(echo.uri()).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_mut() {
        tcp.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        tcp.set_nodelay(true).unwrap();
    }
    let start = Instant::now();
    let (mut sent, mut heard, mut loud) = (Vec::new(), Vec::new(), false);
    let total = beeps * 20;
    let mut next = 0;
    while start.elapsed() < Duration::from_millis(20 * total as u64 + 1000) {
        if next < total && start.elapsed() >= Duration::from_millis(20 * next as u64) {
            let in_beep = next % 20 < 5;
            if in_beep && next % 20 == 0 {
                sent.push(Instant::now());
            }
            let pcm: Vec<u8> = (0..160)
                .map(|i| {
                    if in_beep {
                        (8000.0 * (i as f64 * 0.3454).sin()) as i16
                    } else {
                        0
                    }
                })
                .flat_map(|s: i16| s.to_le_bytes())
                .collect();
            ws.send(Message::Binary(
                protobuf::encode_audio(&pcm, 8000, 1).into(),
            ))
            .unwrap();
            next += 1;
        }
        match ws.read() {
            Ok(Message::Binary(data)) => {
                if let Ok(protobuf::Kind::Audio(protobuf::AudioRawFrame { audio, .. })) =
                    protobuf::decode(&data)
                {
                    let peak = audio
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]).unsigned_abs())
                        .max()
                        .unwrap_or(0);
                    if peak > 2000 && !loud {
                        heard.push(Instant::now());
                    }
                    loud = peak > 2000;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("bot connection: {e}"),
        }
    }
    let mut trips: Vec<Duration> = sent
        .iter()
        .zip(&heard)
        .map(|(s, h)| h.duration_since(*s))
        .collect();
    trips.sort();
    trips
}

#[test]
fn caller_goes_quiet_ends_the_call_with_both_legs_recorded() {
    init();
    let alone = bot_alone_round_trips(12);
    let echo = bot::Bot::start(&["--mode", "echo", "--rate", "8000"]);
    let (rtp_in, rtp_out) = (bot::free_port(), bot::free_port());
    let (receiver, heard) = receive_rtp(rtp_out);
    let mut call = Call::start(&echo.uri(), rtp_in, rtp_out, "quiet");
    let beeps = 12;
    let sent = send_rtp(
        rtp_in,
        Duration::from_millis(400),
        Duration::from_millis(100),
        beeps,
    );
    let ending = call.wait_for_line("call ending", Duration::from_secs(10));
    assert_eq!(call.wait(Duration::from_secs(10)), 0, "{}", call.text());
    receiver.set_state(gst::State::Null).unwrap();
    let said = call.text();
    println!("{said}");
    assert!(
        said.contains("call ending: the caller went silent"),
        "{said}"
    );
    assert!(said.contains("recording finalized"), "{said}");
    // Words for a person, not Rust's debug formatting.
    assert!(!said.contains("Some(") && !said.contains("None"), "{said}");

    // Round trip, caller RTP out -> bot -> RTP back, per beep.
    let heard = heard.lock().unwrap().clone();
    assert_eq!(
        heard.len(),
        beeps,
        "the caller heard {} of {beeps} echoed beeps, at {:?} after the first sent; the call said:\n{said}",
        heard.len(),
        heard
            .iter()
            .map(|h| h.duration_since(sent[0]).as_millis())
            .collect::<Vec<_>>()
    );
    let mut trips: Vec<Duration> = sent
        .iter()
        .zip(&heard)
        .map(|(s, h)| h.duration_since(*s))
        .collect();
    println!(
        "round trips in call order (ms): {:?}",
        trips.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
    );
    // The first beeps meet the call starting up (negotiation, first RTP
    // into the jitterbuffer); the rest is the steady state.
    let mut steady = trips[2..].to_vec();
    steady.sort();
    trips.sort();
    println!(
        "round trip caller RTP -> bot -> caller RTP: p50 {:?}, p99 {:?} ({} beeps); \
         the bot alone over its WebSocket: p50 {:?}, p99 {:?}; the set adds p50 {:.1} ms",
        percentile(&trips, 0.5),
        percentile(&trips, 0.99),
        trips.len(),
        percentile(&alone, 0.5),
        percentile(&alone, 0.99),
        (percentile(&trips, 0.5).as_secs_f64() - percentile(&alone, 0.5).as_secs_f64()) * 1000.0,
    );
    println!(
        "steady state (beeps 3..): p50 {:?}, p99 {:?}; the set adds p50 {:.1} ms, p99 {:.1} ms over the bot",
        percentile(&steady, 0.5),
        percentile(&steady, 0.99),
        (percentile(&steady, 0.5).as_secs_f64() - percentile(&alone, 0.5).as_secs_f64()) * 1000.0,
        (percentile(&steady, 0.99).as_secs_f64() - percentile(&alone, 0.99).as_secs_f64()) * 1000.0,
    );

    // The recording: both legs, same length, the echo behind the caller.
    let data = channels(&call.output);
    assert_eq!(data[0].len(), data[1].len());
    let (caller, agent) = (onsets(&data[0]), onsets(&data[1]));
    assert_eq!(caller.len(), beeps, "caller channel beeps");
    assert_eq!(agent.len(), beeps, "bot channel beeps");
    for (c, a) in caller.iter().zip(&agent) {
        let delay = (*a as f64 - *c as f64) / RATE as f64;
        assert!(
            (0.0..0.5).contains(&delay),
            "the echo is {delay:.3} s from the caller's beep"
        );
    }
    // As long as the call lasted: first beep sent to the end of the call.
    let recorded = data[0].len() as f64 / RATE as f64;
    let wall = ending.duration_since(sent[0]).as_secs_f64();
    println!("recorded {recorded:.3} s, wall time first beep -> call end {wall:.3} s");
    assert!(
        (recorded - wall).abs() < 0.1,
        "recorded {recorded:.3} s of a {wall:.3} s call"
    );
}

#[test]
fn bot_hanging_up_ends_the_call() {
    init();
    let bot = bot::Bot::start(&[
        "--mode",
        "ramp",
        "--rate",
        "8000",
        "--seconds",
        "1",
        "--hangup",
    ]);
    let (rtp_in, rtp_out) = (bot::free_port(), bot::free_port());
    let mut call = Call::start(&bot.uri(), rtp_in, rtp_out, "hangup");
    // The caller talks on; pipecat ends the call after 1 s + its 2 s of end silence.
    let caller = std::thread::spawn(move || {
        send_rtp(
            rtp_in,
            Duration::from_millis(200),
            Duration::from_millis(200),
            25,
        )
    });
    assert_eq!(call.wait(Duration::from_secs(15)), 0, "{}", call.text());
    let said = call.text();
    println!("{said}");
    assert!(said.contains("call ending: the bot hung up"), "{said}");
    let data = channels(&call.output);
    assert_eq!(data[0].len(), data[1].len());
    assert!(
        data[1].iter().any(|&s| s > 7000),
        "the bot's ramp (up to 7999) is in the right channel"
    );
    assert!(
        data[0].iter().any(|&s| s.unsigned_abs() > 2000),
        "the caller is in the left channel"
    );
    drop(caller);
}

#[test]
fn sigterm_stops_the_call_and_keeps_the_recording() {
    init();
    let echo = bot::Bot::start(&["--mode", "echo", "--rate", "8000"]);
    let (rtp_in, rtp_out) = (bot::free_port(), bot::free_port());
    let mut call = Call::start(&echo.uri(), rtp_in, rtp_out, "sigterm");
    let caller = std::thread::spawn(move || {
        send_rtp(
            rtp_in,
            Duration::from_millis(200),
            Duration::from_millis(200),
            20,
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(call.child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    assert_eq!(call.wait(Duration::from_secs(5)), 0, "{}", call.text());
    println!("SIGTERM -> exit in {:?}", t.elapsed());
    let said = call.text();
    assert!(said.contains("call ending: a signal"), "{said}");
    assert!(said.contains("recording finalized"), "{said}");
    let data = channels(&call.output);
    assert_eq!(data[0].len(), data[1].len());
    assert!(data[0].len() > RATE, "only {} frames", data[0].len());
    let _ = caller.join();
}

#[test]
fn help_prints_the_options_and_bad_values_are_refused() {
    let help = std::process::Command::new(example())
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--bot-uri",
        "--serializer",
        "--rtp-in",
        "--output",
        "--no-media-timeout",
    ] {
        assert!(
            text.contains(option),
            "{option} missing from --help:\n{text}"
        );
    }
    // A negative duration used to panic; now it is a usage error (exit 2).
    let bad = std::process::Command::new(example())
        .args(["--bot-uri", "ws://127.0.0.1:9/", "--no-media-timeout", "-1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a duration"));
}

/// RFC 2833 keys on the caller's RTP (GStreamer's own `rtpdtmfsrc`, muxed
/// with the audio by `rtpdtmfmux`, payload type 101) reach the bot as
/// `InputDTMFFrame`s, in the order pressed, while the audio goes on.
#[test]
fn caller_keys_reach_the_bot_in_order() {
    init();
    let bot = bot::Bot::start(&["--mode", "echo", "--rate", "8000", "--log-input"]);
    let (rtp_in, rtp_out) = (bot::free_port(), bot::free_port());
    let (receiver, echoed) = receive_rtp(rtp_out);
    let mut call = Call::start(&bot.uri(), rtp_in, rtp_out, "dtmf");
    let caller = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=sine volume=0.2 samplesperbuffer=160 \
           ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt=0 ! rtpdtmfmux name=mux \
           ! udpsink host=127.0.0.1 port={rtp_in} sync=false \
         rtpdtmfsrc name=keys pt=101 clock-rate=8000 ! mux.priority_sink_0"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    caller.set_state(gst::State::Playing).unwrap();
    call.wait_for_line("call started", Duration::from_secs(10));
    bot.line("CLIENT CONNECTED", Duration::from_secs(10))
        .expect("the call connected to the bot");
    // Keys come once the caller's audio flows: its echo is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while echoed.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the caller's audio never came back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Each key held 120 ms, as a caller presses it.
    let pressed = [1, 2, 3, 11, 0, 10];
    for number in pressed {
        for start in [true, false] {
            let mut event = gst::Structure::builder("dtmf-event")
                .field("type", 1i32)
                .field("method", 1i32)
                .field("number", number)
                .field("start", start);
            if start {
                event = event.field("volume", 25i32);
            }
            // As rtpdtmfsrc's documentation has it: sent to the pipeline,
            // it travels upstream from the sink to the source.
            assert!(caller.send_event(gst::event::CustomUpstream::new(event.build())));
            std::thread::sleep(Duration::from_millis(120));
        }
    }
    let mut heard = String::new();
    while heard.len() < pressed.len() {
        let Some(line) = bot.line("DTMF", Duration::from_secs(5)) else {
            break;
        };
        heard.push_str(line.trim_start_matches("DTMF "));
    }
    caller.set_state(gst::State::Null).unwrap();
    assert_eq!(call.wait(Duration::from_secs(10)), 0, "{}", call.text());
    receiver.set_state(gst::State::Null).unwrap();
    assert_eq!(
        heard,
        "123#0*",
        "the bot heard other keys; the call said:\n{}",
        call.text()
    );
    let said = call.text();
    assert!(said.contains("caller pressed key 11"), "{said}");
    assert!(said.contains("recording finalized"), "{said}");
}

/// A caller that never sends any RTP (not even keys): the call still ends
/// at `--no-media-timeout`, with nothing recorded, so it fails closed
/// (exit status 1), and never waits for ever.
#[test]
fn a_caller_that_never_speaks_ends_the_call_and_fails_closed() {
    init();
    let bot = bot::Bot::start(&["--mode", "echo", "--rate", "8000"]);
    let (rtp_in, rtp_out) = (bot::free_port(), bot::free_port());
    let mut call = Call::start(&bot.uri(), rtp_in, rtp_out, "never");
    assert_eq!(call.wait(Duration::from_secs(15)), 1, "{}", call.text());
    let said = call.text();
    assert!(
        said.contains("call ending: the caller went silent"),
        "{said}"
    );
    assert!(
        !call.output.exists(),
        "a recording of nothing was published"
    );
}
