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
//! Then the same the other way: N `appsrc ! pipecatwssink` legs, fed 20 ms
//! buffers in real time by one thread, each sending to its own connection
//! of a server that counts what arrives and measures the latency from the
//! buffer's push to the message's arrival.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callaudio_testkit::process::{Usage, cores};
use futures_util::SinkExt;
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Each thread per source as it comes, then on the shared threads.
const SOURCES: [&str; 2] = ["pipecatwsrc", "pipecatwssharedsrc"];
const FRAME: Duration = Duration::from_millis(20);
const SAMPLES: usize = 320;
const WARM_UP: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(5);

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
            let _ = stream.set_nodelay(true);
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

/// The source's bot: sends every connection a frame each 20 ms until stdin
/// closes; prints the total sent.
fn server(port: u16, n: usize) {
    let sent = Arc::new(AtomicU64::new(0));
    let s = sent.clone();
    let _runtime = serve_bots(port, n, move |mut ws| {
        let sent = s.clone();
        async move {
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
    if index % LATENCY_EVERY == 0 {
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

fn measure(source: &str, n: usize) {
    let (port, mut server, mut out) = start_server("--server", n);
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
    let start = Usage::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(WINDOW);
    measuring.store(false, Ordering::Relaxed);
    let end = Usage::now();
    let received = rendered(&legs) - before;
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
    let cpu_seconds = end.cpu_seconds - start.cpu_seconds;
    let expected = n as f64 * WINDOW.as_secs_f64() / FRAME.as_secs_f64();
    println!(
        "{source:>18} N={n:>5}: CPU {:5.1}% of {} cores, {:5.1} us per message; threads {} (+{:.2}/conn), fds +{:.2}/conn, RSS +{:.0} KB/conn; \
         buffers/s per conn {:.1} of {:.1} (server sent {sent_total} in all); added latency p50 {} us, p99 {} us",
        end.cpu_share_since(&start),
        cores(),
        cpu_seconds * 1e6 / received.max(1) as f64,
        end.threads,
        (end.threads as f64 - rest.threads as f64) / n as f64,
        (end.fds as f64 - rest.fds as f64) / n as f64,
        (end.rss_kb as f64 - rest.rss_kb as f64) / n as f64,
        received as f64 / n as f64 / WINDOW.as_secs_f64(),
        expected / n as f64 / WINDOW.as_secs_f64(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
}

/// N `appsrc ! pipecatwssink` legs sending to a receiving server.
fn measure_sinks(n: usize) {
    use std::io::Write;
    let (port, mut server, mut out) = start_server("--receiving-server", n);
    let mut line = String::new();
    let rest = Usage::now();
    let legs: Vec<(gst::Pipeline, gst_app::AppSrc)> = (0..n)
        .map(|_| {
            let p = gst::parse::launch(&format!(
                "appsrc name=src is-live=true format=time \
                 caps=audio/x-raw,format=S16LE,layout=interleaved,rate=16000,channels=1 \
                 ! pipecatwssink uri=ws://127.0.0.1:{port}/"
            ))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
            let src = p
                .by_name("src")
                .unwrap()
                .downcast::<gst_app::AppSrc>()
                .unwrap();
            (p, src)
        })
        .collect();
    for (p, _) in &legs {
        p.set_state(gst::State::Playing).unwrap();
    }
    // One feeder thread, in real time, as a media server hands on caller audio.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let srcs: Vec<gst_app::AppSrc> = legs.iter().map(|(_, s)| s.clone()).collect();
    let (st, pu) = (stop.clone(), pushed.clone());
    let feeder = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut k = 0u32;
        while !st.load(Ordering::Relaxed) {
            if let Some(wait) =
                (start + FRAME * k).checked_duration_since(std::time::Instant::now())
            {
                std::thread::sleep(wait);
            }
            for src in &srcs {
                let mut audio = vec![1u8; 2 * SAMPLES];
                audio[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
                let mut buffer = gst::Buffer::from_mut_slice(audio);
                buffer
                    .get_mut()
                    .unwrap()
                    .set_pts(gst::ClockTime::from_nseconds((FRAME * k).as_nanos() as u64));
                let _ = src.push_buffer(buffer);
                pu.fetch_add(1, Ordering::Relaxed);
            }
            k += 1;
        }
    });
    let mut stdin = server.stdin.take().unwrap();
    std::thread::sleep(WARM_UP);
    writeln!(stdin).unwrap();
    let (start, pushed0) = (Usage::now(), pushed.load(Ordering::Relaxed));
    std::thread::sleep(WINDOW);
    writeln!(stdin).unwrap();
    let end = Usage::now();
    let pushed_window = pushed.load(Ordering::Relaxed) - pushed0;
    line.clear();
    out.read_line(&mut line).unwrap();
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    for (p, _) in &legs {
        p.set_state(gst::State::Null).unwrap();
    }
    drop(stdin);
    let _ = server.wait();
    let fields: Vec<u64> = line
        .trim()
        .strip_prefix("RECEIVED ")
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let cpu_seconds = end.cpu_seconds - start.cpu_seconds;
    println!(
        "sinks N={n:>5}: CPU {:5.1}% of {} cores, {:5.1} us per message; threads {} (+{:.2}/conn), \
         fds +{:.2}/conn, RSS +{:.0} KB/conn; messages/s per conn received {:.1} of {:.1} pushed; \
         added latency p50 {} us, p99 {} us",
        end.cpu_share_since(&start),
        cores(),
        cpu_seconds * 1e6 / pushed_window.max(1) as f64,
        end.threads,
        (end.threads as f64 - rest.threads as f64) / n as f64,
        (end.fds as f64 - rest.fds as f64) / n as f64,
        (end.rss_kb as f64 - rest.rss_kb as f64) / n as f64,
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
        Some("--one") => return measure(&args[1], args[2].parse().unwrap()),
        Some("--one-sinks") => return measure_sinks(args[1].parse().unwrap()),
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
        for source in SOURCES {
            run(&["--one", source, &n.to_string()]);
        }
    }
    for &n in &counts {
        run(&["--one-sinks", &n.to_string()]);
    }
}
