// SPDX-License-Identifier: MPL-2.0
//! Many bot legs in one process: N `pipecatwsrc ! fakesink sync=false`
//! pipelines, each on its own WebSocket, fed by a server in a separate
//! process (this same binary, started with `--server`) that sends every
//! connection one 20 ms protobuf audio frame (16 kHz mono, 640 bytes) every
//! 20 ms; then the same with `pipecatwssharedsrc`, which pushes from the
//! shared WebSocket thread instead of a streaming thread per source.
//!
//!     cargo bench -p gst-plugin-pipecat --bench connections -- 100 300 1000
//!
//! Each measurement runs in a process of its own (what one leaves behind,
//! lingering threads or heap, would count in the next). Per N, over a 5 s
//! window after a 2 s warm-up: CPU of this process (share of all cores)
//! and per message, threads, fds and RSS per connection, buffers received
//! (fakesink's own count) against sent, and the latency added between the
//! server's send and the buffer leaving the source (CLOCK_MONOTONIC, shared
//! by both processes, stamped in the frame's first 8 bytes), measured by a
//! probe on one leg in ten so the probes cost little of what is measured.
//!
//! Then the same the other way: N `pipecatwssink` legs, fed 20 ms buffers
//! in real time by one thread that pushes into each leg's pad at its own
//! phase of the 20 ms (no thread per leg), each sending to its own connection of a server that counts what
//! arrives and measures the latency from the buffer's push to the message's
//! arrival; beside the same feeder into N `fakesink`s, the harness's floor.
//!
//! Each source row prints the ACKs our sockets sent per message (TCP_INFO);
//! `delayed-ack=true` halves them. With `BENCH_NAGLE=1` the server leaves
//! Nagle's algorithm on, which Pipecat's does not: what such a bot's audio
//! would suffer under `delayed-ack=true` shows in the latency.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callaudio_testkit::process::{Usage, cores};
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Each thread per source as it comes, then on the shared threads, then
/// that with TCP's delayed ACKs (at its own phases only: the bursts'
/// segments are acknowledged in pairs anyway).
const SOURCES: [&str; 2] = ["pipecatwsrc", "pipecatwssharedsrc"];
const DELAYED_ACK: &str = "pipecatwssharedsrc delayed-ack=true";
const FRAME: Duration = Duration::from_millis(20);
const SAMPLES: usize = 320;
const WARM_UP: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(5);

/// Segments this process's TCP sockets have sent (for a source's legs,
/// the ACKs of the bot's messages: they send nothing else).
fn segments_out() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|fd| {
            // SAFETY: zeroes are a valid tcp_info.
            let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            // SAFETY: writes at most `len` bytes into `info`; a descriptor
            // that is not a TCP socket (or no longer open) is an error.
            let ok = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_INFO,
                    (&mut info as *mut libc::tcp_info).cast(),
                    &mut len,
                )
            } == 0;
            ok.then_some(info.tcpi_segs_out as u64)
        })
        .sum()
}

/// Whether the bots disable Nagle's algorithm, as Pipecat's asyncio server
/// does; `BENCH_NAGLE=1` shows what a bot that does not would see.
fn nodelay() -> bool {
    std::env::var_os("BENCH_NAGLE").is_none()
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The server: accepts `n` connections on `port`, then sends every one a
/// frame each 20 ms until stdin closes; prints the total sent.
type BotSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A bot server in its own runtime: listens on `port`, says READY, then
/// hands each of `n` upgraded connections to `each`.
fn serve_bots<F, Fut>(port: u16, n: usize, each: F) -> tokio::runtime::Runtime
where
    F: Fn(BotSocket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        println!("READY");
        for _ in 0..n {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(nodelay());
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            tokio::spawn(each(ws));
        }
    });
    runtime
}

/// The `p` quantile of sorted values (0 when there are none).
fn percentile(sorted: &[u32], p: f64) -> u32 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p) as usize)
        .copied()
        .unwrap_or(0)
}

/// The sink's bot: reads every connection; between two lines on stdin it
/// measures, then prints how many audio messages arrived and their added
/// latency.
fn receiving_server(port: u16, n: usize) {
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (l, m) = (latencies.clone(), measuring.clone());
    let _runtime = serve_bots(port, n, move |mut ws| {
        let (l, m) = (l.clone(), m.clone());
        async move {
            use futures_util::StreamExt;
            while let Some(Ok(msg)) = ws.next().await {
                if !m.load(Ordering::Relaxed) {
                    continue;
                }
                if let Message::Binary(data) = msg
                    && let Ok(gstpipecat::protobuf::Kind::Audio(
                        gstpipecat::protobuf::AudioRawFrame { audio, .. },
                    )) = gstpipecat::protobuf::decode(&data)
                    && audio.len() >= 8
                {
                    let sent = u64::from_le_bytes(audio[..8].try_into().unwrap());
                    let added = monotonic_ns().saturating_sub(sent) / 1000;
                    l.lock().unwrap().push(added.min(u32::MAX as u64) as u32);
                }
            }
        }
    });
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    measuring.store(true, Ordering::Relaxed);
    line.clear();
    let _ = std::io::stdin().read_line(&mut line);
    measuring.store(false, Ordering::Relaxed);
    let mut all = latencies.lock().unwrap().clone();
    all.sort_unstable();
    println!(
        "RECEIVED {} {} {}",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
}

/// How the bots' frames are spread over each 20 ms.
#[derive(Clone, Copy, PartialEq)]
enum Phases {
    /// Each connection at its own phase, as independent bots are.
    Own,
    /// A tokio timer per connection: tokio rounds them to the millisecond,
    /// so frames come in bursts of N/20 (and a reader wakes once a burst).
    Bursts,
}

impl Phases {
    fn name(self) -> &'static str {
        match self {
            Phases::Own => "own",
            Phases::Bursts => "bursts",
        }
    }

    fn parse(s: &str) -> Phases {
        if s == "bursts" {
            Phases::Bursts
        } else {
            Phases::Own
        }
    }
}

/// The source's bot with its frames in bursts (see `Phases::Bursts`).
fn bursty_server(port: u16, n: usize) {
    let sent = Arc::new(AtomicU64::new(0));
    let s = sent.clone();
    let _runtime = serve_bots(port, n, move |mut ws| {
        let sent = s.clone();
        async move {
            use futures_util::SinkExt;
            let mut tick = tokio::time::interval(FRAME);
            let mut audio = vec![1u8; 2 * SAMPLES];
            loop {
                tick.tick().await;
                audio[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
                let frame = gstpipecat::protobuf::encode_audio(&audio, 16000, 1);
                if ws.send(Message::Binary(frame.into())).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    println!("SENT {}", sent.load(Ordering::Relaxed));
}

/// The source's bot: sends every connection a frame each 20 ms until stdin
/// closes; prints the total sent. Each connection has its own phase in the
/// 20 ms (see `Phases::Own`): one thread sends them in turn.
fn server(port: u16, n: usize) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let s = sent.clone();
    std::thread::spawn(move || {
        let mut bots = Vec::with_capacity(n);
        for _ in 0..n {
            let (stream, _) = listener.accept().unwrap();
            let _ = stream.set_nodelay(nodelay());
            if let Ok(ws) = tokio_tungstenite::tungstenite::accept(stream) {
                bots.push(Some(ws));
            }
        }
        let step = FRAME / bots.len().max(1) as u32;
        let start = std::time::Instant::now();
        let mut audio = vec![1u8; 2 * SAMPLES];
        for k in 0u64.. {
            let due = start + step * k as u32;
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            let slot = (k % bots.len() as u64) as usize;
            let Some(ws) = &mut bots[slot] else {
                continue;
            };
            audio[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
            let frame = gstpipecat::protobuf::encode_audio(&audio, 16000, 1);
            if ws.send(Message::Binary(frame.into())).is_ok() {
                s.fetch_add(1, Ordering::Relaxed);
            } else {
                bots[slot] = None;
            }
        }
    });
    // The client says when to stop (and to report) by closing stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    println!("SENT {}", sent.load(Ordering::Relaxed));
}

struct Leg {
    pipeline: gst::Pipeline,
    sink: gst::Element,
    /// Added latency (µs) of every buffer while measuring, on the legs
    /// that measure it.
    latencies: Arc<Mutex<Vec<u32>>>,
}

/// One leg in this many measures latency: a probe on every source would
/// add its own cost to what is measured.
const LATENCY_EVERY: usize = 10;

impl Leg {
    /// Buffers the sink has rendered so far (its own count, no probe).
    fn rendered(&self) -> u64 {
        let stats = self.sink.property::<gst::Structure>("stats");
        stats.get::<u64>("rendered").unwrap_or(0)
    }
}

fn leg(
    source: &str,
    port: u16,
    index: usize,
    measuring: &Arc<std::sync::atomic::AtomicBool>,
) -> Leg {
    let pipeline = gst::parse::launch(&format!(
        "{source} name=src uri=ws://127.0.0.1:{port}/ ! fakesink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (l, m) = (latencies.clone(), measuring.clone());
    if index.is_multiple_of(LATENCY_EVERY) {
        pipeline
            .by_name("src")
            .unwrap()
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if !m.load(Ordering::Relaxed) {
                    return gst::PadProbeReturn::Ok;
                }
                if let Some(gst::PadProbeData::Buffer(b)) = &info.data
                    && let Ok(map) = b.map_readable()
                    && map.len() >= 8
                {
                    let sent = u64::from_le_bytes(map[..8].try_into().unwrap());
                    let added = monotonic_ns().saturating_sub(sent) / 1000;
                    l.lock().unwrap().push(added.min(u32::MAX as u64) as u32);
                }
                gst::PadProbeReturn::Ok
            });
    }
    Leg {
        sink: pipeline.by_name("sink").unwrap(),
        pipeline,
        latencies,
    }
}

/// Starts this binary as the server (`mode`) for `n` connections on a free
/// port, once it listens.
fn start_server(
    mode: &str,
    n: usize,
) -> (
    u16,
    std::process::Child,
    BufReader<std::process::ChildStdout>,
) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args([mode, &port.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY");
    (port, server, out)
}

fn measure(source: &str, n: usize, phases: Phases) {
    let mode = match phases {
        Phases::Own => "--server",
        Phases::Bursts => "--bursty-server",
    };
    let (port, mut server, mut out) = start_server(mode, n);
    let mut line = String::new();

    let rest = Usage::now();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let legs: Vec<Leg> = (0..n).map(|i| leg(source, port, i, &measuring)).collect();
    for leg in &legs {
        leg.pipeline.set_state(gst::State::Playing).unwrap();
    }
    std::thread::sleep(WARM_UP);
    callaudio_testkit::process::say_window_starts();
    let rendered = |legs: &[Leg]| legs.iter().map(Leg::rendered).sum::<u64>();
    let before = rendered(&legs);
    let acks_before = segments_out();
    let start = Usage::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(WINDOW);
    measuring.store(false, Ordering::Relaxed);
    let end = Usage::now();
    let received = rendered(&legs) - before;
    let acks = segments_out().saturating_sub(acks_before);
    let mut all: Vec<u32> = legs
        .iter()
        .flat_map(|l| l.latencies.lock().unwrap().clone())
        .collect();
    for leg in &legs {
        leg.pipeline.set_state(gst::State::Null).unwrap();
    }
    drop(server.stdin.take());
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = server.wait();
    let sent_total: u64 = line.trim().strip_prefix("SENT ").unwrap().parse().unwrap();

    all.sort_unstable();
    let expected = n as f64 * WINDOW.as_secs_f64() / FRAME.as_secs_f64();
    println!(
        "{source:>18}, frames at {:>6} phases, {}; \
         buffers/s per conn {:.1} of {:.1} (server sent {sent_total} in all), ACKs per message {:.2}; added latency p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us",
        phases.name(),
        usage_figures(n, &rest, &start, &end, received),
        received as f64 / n as f64 / WINDOW.as_secs_f64(),
        expected / n as f64 / WINDOW.as_secs_f64(),
        acks as f64 / received.max(1) as f64,
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().copied().unwrap_or(0),
    );
}

/// What N legs cost between `start` and `end` (at rest: `rest`), over
/// `messages` messages.
fn usage_figures(n: usize, rest: &Usage, start: &Usage, end: &Usage, messages: u64) -> String {
    let per_conn = |after: u64, before: u64| (after as f64 - before as f64) / n as f64;
    format!(
        "N={n:>5}: CPU {:5.1}% of {} cores, {:5.1} us per message; threads {} (+{:.2}/conn), fds +{:.2}/conn, RSS +{:.0} KB/conn",
        end.cpu_share_since(start),
        cores(),
        (end.cpu_seconds - start.cpu_seconds) * 1e6 / messages.max(1) as f64,
        end.threads,
        per_conn(end.threads, rest.threads),
        per_conn(end.fds, rest.fds),
        per_conn(end.rss_kb, rest.rss_kb),
    )
}

/// A source pad owned by the application that tells downstream it is live,
/// as a media server's demuxer hands on caller audio.
fn live_source_pad() -> gst::Pad {
    gst::Pad::builder(gst::PadDirection::Src)
        .query_function(|pad, parent, query| match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                q.set(
                    true,
                    gst::ClockTime::from_mseconds(20),
                    gst::ClockTime::NONE,
                );
                true
            }
            _ => gst::Pad::query_default(pad, parent, query),
        })
        .build()
}

/// N `pipecatwssink` legs sending to a receiving server (or, as the floor,
/// N `fakesink`s), fed 20 ms buffers in real time by one thread that pushes
/// into each leg's pad itself, with no thread per leg: what each costs
/// beyond that feeder is the sink's own.
fn measure_sinks(n: usize, sink: &str) {
    use std::io::Write;
    let to_bot = sink == "pipecatwssink";
    let mut server = to_bot.then(|| start_server("--receiving-server", n));
    let rest = Usage::now();
    let caps = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .rate(16000)
        .channels(1)
        .build();
    let legs: Vec<(gst::Pipeline, gst::Pad)> = (0..n)
        .map(|_| {
            let desc = match &server {
                Some((port, _, _)) => format!("pipecatwssink uri=ws://127.0.0.1:{port}/"),
                None => "fakesink sync=false async=false".into(),
            };
            let pipeline = gst::Pipeline::new();
            let element = gst::parse::bin_from_description(&desc, true).unwrap();
            pipeline.add(&element).unwrap();
            let input = live_source_pad();
            input.link(&element.static_pad("sink").unwrap()).unwrap();
            pipeline.set_state(gst::State::Playing).unwrap();
            input.set_active(true).unwrap();
            input.push_event(gst::event::StreamStart::new("caller"));
            input.push_event(gst::event::Caps::new(&caps));
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            input.push_event(gst::event::Segment::new(&segment));
            (pipeline, input)
        })
        .collect();
    // One feeder thread, in real time, each leg at its own phase of the
    // 20 ms, as calls are.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let inputs: Vec<gst::Pad> = legs.iter().map(|(_, s)| s.clone()).collect();
    let (st, pu) = (stop.clone(), pushed.clone());
    let feeder = std::thread::spawn(move || {
        let step = FRAME / inputs.len() as u32;
        let start = std::time::Instant::now();
        for k in 0u32.. {
            if st.load(Ordering::Relaxed) {
                break;
            }
            if let Some(wait) = (start + step * k).checked_duration_since(std::time::Instant::now())
            {
                std::thread::sleep(wait);
            }
            let round = k / inputs.len() as u32;
            let mut audio = vec![1u8; 2 * SAMPLES];
            audio[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
            let mut buffer = gst::Buffer::from_mut_slice(audio);
            {
                let b = buffer.get_mut().unwrap();
                b.set_pts(gst::ClockTime::from_nseconds(
                    (FRAME * round).as_nanos() as u64
                ));
                b.set_duration(gst::ClockTime::from_nseconds(FRAME.as_nanos() as u64));
            }
            let _ = inputs[k as usize % inputs.len()].push(buffer);
            pu.fetch_add(1, Ordering::Relaxed);
        }
    });
    std::thread::sleep(WARM_UP);
    let say = |server: &mut Option<(
        u16,
        std::process::Child,
        BufReader<std::process::ChildStdout>,
    )>| {
        if let Some((_, child, _)) = server {
            writeln!(child.stdin.as_mut().unwrap()).unwrap();
        }
    };
    say(&mut server);
    let (start, pushed0) = (Usage::now(), pushed.load(Ordering::Relaxed));
    std::thread::sleep(WINDOW);
    say(&mut server);
    let end = Usage::now();
    let pushed_window = pushed.load(Ordering::Relaxed) - pushed0;
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    for (p, _) in &legs {
        p.set_state(gst::State::Null).unwrap();
    }
    let figures = usage_figures(n, &rest, &start, &end, pushed_window);
    let Some((_, mut child, mut out)) = server else {
        println!("{:>18} {figures} (the feeder alone)", "fakesink");
        return;
    };
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    drop(child.stdin.take());
    let _ = child.wait();
    let fields: Vec<u64> = line
        .trim()
        .strip_prefix("RECEIVED ")
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    println!(
        "{:>18} {figures}; messages/s per conn received {:.1} of {:.1} pushed; \
         added latency p50 {} us, p99 {} us",
        "pipecatwssink",
        fields[0] as f64 / n as f64 / WINDOW.as_secs_f64(),
        pushed_window as f64 / n as f64 / WINDOW.as_secs_f64(),
        fields[1],
        fields[2],
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--bursty-server") {
        return bursty_server(args[1].parse().unwrap(), args[2].parse().unwrap());
    }
    if args.first().map(String::as_str) == Some("--server") {
        return server(args[1].parse().unwrap(), args[2].parse().unwrap());
    }
    if args.first().map(String::as_str) == Some("--receiving-server") {
        return receiving_server(args[1].parse().unwrap(), args[2].parse().unwrap());
    }
    gst::init().unwrap();
    gstpipecat::plugin_register_static().unwrap();
    // One measurement per process: what a setup leaves behind (threads
    // that linger, heap kept by the allocator) must not count in the next.
    match args.first().map(String::as_str) {
        Some("--one") => {
            return measure(&args[1], args[2].parse().unwrap(), Phases::parse(&args[3]));
        }
        Some("--one-sinks") => return measure_sinks(args[1].parse().unwrap(), &args[2]),
        _ => {}
    }
    let counts: Vec<usize> = if args.is_empty() {
        vec![100, 300, 1000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    let run = |what: &[&str]| {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(what)
            .status()
            .unwrap();
        assert!(status.success(), "{what:?} failed: {status}");
    };
    for &n in &counts {
        for phases in [Phases::Own, Phases::Bursts] {
            for source in SOURCES {
                run(&["--one", source, &n.to_string(), phases.name()]);
            }
            if phases == Phases::Own {
                run(&["--one", DELAYED_ACK, &n.to_string(), phases.name()]);
            }
        }
    }
    for &n in &counts {
        for sink in ["pipecatwssink", "fakesink"] {
            run(&["--one-sinks", &n.to_string(), sink]);
        }
    }
}
