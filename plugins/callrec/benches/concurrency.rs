// SPDX-License-Identifier: MPL-2.0
//! How many real-time stereo 8 kHz recordings one process holds, and at what
//! CPU cost, on this machine, beside the stock elements fed the same way:
//!
//!     cargo bench -p gst-plugin-callrec --bench concurrency [-- N...]
//!
//! Each call has two live tracks, 8 kHz S16LE mono in 20 ms buffers, pushed
//! in real time by the application (two feeder threads for all calls), the
//! way a media server hands demuxed call audio to its recorder. The feeder's
//! pads answer LATENCY as a live 20 ms source, so `stallfiller` inside
//! `callrecsink` keeps its stall deadlines armed exactly as in production.
//!
//! Per N, and per setup, it prints the CPU of the whole process over 5 s
//! (user+system, as a share of all cores); what each call adds in RSS,
//! threads and fds; how late the feeders ever were and how many stalls
//! stallfiller filled (a recorder that falls behind shows as both); and the
//! time to set up all N calls (build, PLAYING) and to tear them all down
//! (EOS on every track, which finalizes and publishes each recording, then
//! NULL; from 8 threads, as a server ends calls from many). Each N is torn
//! down completely before the next. The setups:
//! - `callrecsink`: one stereo file per call;
//! - `wavenc ! filesink` per track: the stock floor (two mono files per
//!   call, no shared timeline, no stall filling, no finalization guarantees);
//! - the feeder alone into `fakesink`: what producing the audio costs.
//!
//! Then callrecsink's own cost (its CPU over the feeder's) as a ratio to
//! `wavenc ! filesink`'s own cost. Every setup runs `--rounds=R` times
//! (default 2 for this comparison, 1 otherwise), in turn, and the ratio is that of the means: the machine's
//! own drift over minutes is as large as the difference measured. Each track's segment starts when the
//! feeder starts feeding it, as a call's audio starts when the call does,
//! so a stall counted here is a real one.
//!
//! `-- --callrecsink-only N` skips the comparisons (for profiling).
//! `-- --formats N` compares callrecsink's formats instead: WAV, FLAC, Ogg
//! Opus and MP3 (32 kbit/s) per call, beside the feeder alone.
//! `-- --encrypted N` compares callrecsink's WAV plain and encrypted
//! (`recipients`, one age X25519 key), beside the feeder alone, and gives
//! the encrypted one's own cost as a ratio to the plain one's.
//! `-- --testsrc N` instead runs each track from its own live
//! `audiotestsrc` (a thread and a clock wait per buffer per track), beside
//! the same sources into `fakesink`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callaudio_testkit::process::{Usage, cores, cpu_seconds};
use gst::prelude::*;

const RATE: u32 = 8000;
const FRAME: gst::ClockTime = gst::ClockTime::from_mseconds(20);
const SAMPLES_PER_FRAME: usize = 160;
const FEEDERS: usize = 2;
/// Calls join over the first second of the warm-up.
const RAMP: Duration = Duration::from_secs(1);
const WARMUP: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_secs(5);
/// `Recorder::CallRecSink(SEALED)`: WAV encrypted to `recipient()`.
const SEALED: &str = "wav+age";

/// One age X25519 public key, made for this run.
#[allow(deprecated)] // the classic keys Debian 12's age reads
fn recipient() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| age::x25519::Identity::generate().to_public().to_string())
}

/// One call as the benchmark drives it: a pipeline and the pads its two
/// tracks are pushed into.
struct Call {
    pipeline: gst::Pipeline,
    inputs: Vec<gst::Pad>,
}

#[derive(Clone, Copy, PartialEq)]
enum Recorder {
    /// With its `format`.
    CallRecSink(&'static str),
    WavencPerTrack,
    FakeSink,
}

impl Recorder {
    fn label(self) -> &'static str {
        match self {
            Recorder::CallRecSink("wav") => "callrecsink",
            Recorder::CallRecSink("flac") => "callrecsink format=flac",
            Recorder::CallRecSink("mp3") => "callrecsink format=mp3",
            Recorder::CallRecSink(SEALED) => "callrecsink recipients=age1...",
            Recorder::CallRecSink(_) => "callrecsink format=opus",
            Recorder::WavencPerTrack => "wavenc ! filesink per track",
            Recorder::FakeSink => "feeder alone (fakesink)",
        }
    }

    fn build(self, i: usize, dir: &std::path::Path) -> Call {
        let pipeline = gst::Pipeline::new();
        let sinkpads: Vec<gst::Pad> = match self {
            Recorder::CallRecSink(format) => {
                let (format, recipients) = match format {
                    SEALED => ("wav", Some(recipient())),
                    format => (format, None),
                };
                // Starting a thousand calls takes longer than the default
                // start-timeout; the feeders only begin once all are up.
                let rec = gst::ElementFactory::make("callrecsink")
                    .property("location", dir.join(format!("call{i}.{format}")).to_str())
                    .property_from_str("format", format)
                    .property("start-timeout", 60 * gst::ClockTime::SECOND.nseconds())
                    .property("recipients", recipients)
                    .build()
                    .unwrap();
                rec.connect("finished", false, |args| {
                    if let Ok(outcome) = args[1].get::<gst::Structure>() {
                        count_kept(&outcome);
                    }
                    None
                });
                pipeline.add(&rec).unwrap();
                (0..2)
                    .map(|_| rec.request_pad_simple("sink_%u").unwrap())
                    .collect()
            }
            Recorder::WavencPerTrack => (0..2)
                .map(|t| {
                    let enc = gst::ElementFactory::make("wavenc").build().unwrap();
                    let sink = gst::ElementFactory::make("filesink")
                        .property("location", dir.join(format!("call{i}-{t}.wav")).to_str())
                        .property("sync", false)
                        .property("async", false)
                        .build()
                        .unwrap();
                    pipeline.add_many([&enc, &sink]).unwrap();
                    enc.link(&sink).unwrap();
                    enc.static_pad("sink").unwrap()
                })
                .collect(),
            Recorder::FakeSink => (0..2)
                .map(|_| {
                    let sink = gst::ElementFactory::make("fakesink")
                        .property("sync", false)
                        .property("async", false)
                        .build()
                        .unwrap();
                    pipeline.add(&sink).unwrap();
                    sink.static_pad("sink").unwrap()
                })
                .collect(),
        };
        let inputs = sinkpads
            .iter()
            .map(|sinkpad| {
                let pad = live_source_pad();
                pad.link(sinkpad).unwrap();
                pad
            })
            .collect();
        Call { pipeline, inputs }
    }
}

/// A source pad owned by the application that tells downstream it is live.
fn live_source_pad() -> gst::Pad {
    gst::Pad::builder(gst::PadDirection::Src)
        .query_function(|pad, parent, query| match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                q.set(true, FRAME, gst::ClockTime::NONE);
                true
            }
            _ => gst::Pad::query_default(pad, parent, query),
        })
        .build()
}

fn start(call: &Call, track_base: usize) -> Result<(), gst::StateChangeError> {
    call.pipeline.set_state(gst::State::Playing)?;
    let caps = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .rate(RATE as i32)
        .channels(1)
        .build();
    for (t, pad) in call.inputs.iter().enumerate() {
        pad.set_active(true).unwrap();
        pad.push_event(gst::event::StreamStart::new(&format!(
            "track{}",
            track_base + t
        )));
        pad.push_event(gst::event::Caps::new(&caps));
    }
    Ok(())
}

/// The segment of a track that starts at `running_time`: its timestamps are
/// running times.
fn segment_from(running_time: gst::ClockTime) -> gst::Event {
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(running_time);
    segment.set_base(running_time);
    segment.set_time(running_time);
    gst::event::Segment::new(&segment)
}

/// What one setup cost at N calls.
struct Figures {
    /// % of all cores over the window.
    cpu: f64,
    errors: usize,
    stalls: usize,
    /// Running times of the stalls (when each call's stall began), sorted.
    stall_times: Vec<gst::ClockTime>,
    /// Real audio pushed that did not reach the files (trimmed after
    /// silence filled for it), over every track: what a spurious stall costs.
    dropped: u64,
    /// How far behind schedule a feeder ever started a round.
    late: Duration,
    setup: Duration,
    teardown: Duration,
    /// Added per call, against the process before the calls.
    rss_kb: f64,
    threads: f64,
    fds: f64,
}

/// Builds and starts N calls, feeds them in real time from `FEEDERS`
/// threads, measures over `WINDOW`, then tears every call down.
fn measure(n: usize, recorder: Recorder, dir: &std::path::Path) -> Option<Figures> {
    let rest = Usage::now();
    PUSHED.store(0, Ordering::Relaxed);
    KEPT.store(0, Ordering::Relaxed);
    let t = Instant::now();
    let calls: Vec<Call> = (0..n).map(|i| recorder.build(i, dir)).collect();
    for (i, call) in calls.iter().enumerate() {
        if start(call, 2 * i).is_err() {
            let usage = Usage::now();
            println!(
                "  {:<28} could not start call {i}: set_state failed with {} fds open (this process may open {})",
                recorder.label(),
                usage.fds,
                open_files_limit(),
            );
            tear_down(calls, recorder);
            return None;
        }
    }
    let setup = t.elapsed();
    let calls = Arc::new(calls);
    let flow_errors = Arc::new(AtomicUsize::new(0));
    // The feeders feed until the stalls are counted: a track whose feed
    // ends stalls for real once `threshold` passes, and with thousands of
    // calls counting takes longer than that.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeders: Vec<_> = (0..FEEDERS)
        .map(|f| {
            let calls = calls.clone();
            let flow_errors = flow_errors.clone();
            let stop = stop.clone();
            std::thread::spawn(move || feed(&calls, f, &stop, &flow_errors))
        })
        .collect();
    std::thread::sleep(WARMUP);
    callaudio_testkit::process::say_window_starts();
    let start = Usage::now();
    std::thread::sleep(WINDOW);
    let end = Usage::now();
    // A recorder that falls behind shows as stalls: stallfiller filling
    // silence for tracks the feeder keeps fed (it still does, here).
    let mut stall_times: Vec<gst::ClockTime> = calls
        .iter()
        .flat_map(|call| {
            let bus = call.pipeline.bus().unwrap();
            std::iter::from_fn(move || bus.pop_filtered(&[gst::MessageType::Element]))
                .filter_map(|m| {
                    let s = m.structure()?;
                    (s.name() == "stallfiller-stall").then(|| {
                        s.get::<Option<gst::ClockTime>>("running-time")
                            .ok()
                            .flatten()
                            .unwrap_or(gst::ClockTime::ZERO)
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    stall_times.sort();
    let stalls = stall_times.len();
    stop.store(true, Ordering::Release);
    let late = feeders
        .into_iter()
        .map(|f| f.join().unwrap())
        .max()
        .unwrap_or_default();
    let t = Instant::now();
    let (errors, dropped) = tear_down(
        Arc::into_inner(calls).expect("the feeders are done"),
        recorder,
    );
    let teardown = t.elapsed();
    callaudio_testkit::process::settle();
    let flow_errors = flow_errors.load(Ordering::Relaxed);
    if flow_errors > 0 {
        eprintln!("{}: {flow_errors} pushes failed", recorder.label());
    }
    let per_call = |after: u64, before: u64| (after as f64 - before as f64) / n as f64;
    Some(Figures {
        cpu: end.cpu_share_since(&start),
        errors,
        stalls,
        stall_times,
        dropped,
        late,
        setup,
        teardown,
        rss_kb: per_call(end.rss_kb, rest.rss_kb),
        threads: per_call(end.threads, rest.threads),
        fds: per_call(end.fds, rest.fds),
    })
}

/// Samples the feeders pushed, and what the recordings' outcomes (the
/// `finished` signal, from the finalizing threads) say reached the files:
/// the difference is real audio trimmed after silence filled for it (by a
/// track's stallfiller, or by the mixer as `dropped-samples`).
static PUSHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static KEPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_kept(outcome: &gst::Structure) {
    let Ok(tracks) = outcome.get::<gst::Array>("tracks") else {
        return;
    };
    for track in tracks.iter() {
        if let Ok(t) = track.get::<gst::Structure>() {
            let received = t.get::<u64>("received-samples").unwrap_or(0);
            let dropped = t.get::<u64>("dropped-samples").unwrap_or(0);
            KEPT.fetch_add(received.saturating_sub(dropped), Ordering::Relaxed);
        }
    }
}

/// Threads that end the calls, as a media server ends calls from many
/// threads at once (each call's own): EOS on every track, which finalizes
/// and publishes each recording, then NULL.
const TEARDOWN_THREADS: usize = 8;

/// Ends every call; returns how many posted an ERROR, and the samples of
/// real audio the finished recordings say they trimmed.
fn tear_down(calls: Vec<Call>, recorder: Recorder) -> (usize, u64) {
    let calls = Arc::new(calls);
    let errors = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..TEARDOWN_THREADS {
            let (calls, errors) = (&calls, &errors);
            scope.spawn(move || {
                for call in calls.iter().skip(t).step_by(TEARDOWN_THREADS) {
                    for pad in &call.inputs {
                        pad.push_event(gst::event::Eos::new());
                    }
                    let bus = call.pipeline.bus().unwrap();
                    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                        && errors.fetch_add(1, Ordering::Relaxed) == 0
                        && let gst::MessageView::Error(err) = msg.view()
                    {
                        eprintln!(
                            "{}: first error: {} ({:?})",
                            recorder.label(),
                            err.error(),
                            err.debug()
                        );
                    }
                    let _ = call.pipeline.set_state(gst::State::Null);
                }
            });
        }
    });
    let trimmed = match recorder {
        Recorder::CallRecSink(_) => PUSHED
            .load(Ordering::Relaxed)
            .saturating_sub(KEPT.load(Ordering::Relaxed)),
        _ => 0,
    };
    (errors.into_inner(), trimmed)
}

fn open_files_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}

/// One feeder thread: every 20 ms of wall time, one buffer per track of its
/// share of the calls, stamped with the pipeline's running time.
/// Feeds until `stop`; returns how far behind its schedule the feeder ever
/// started a round.
fn feed(
    calls: &[Call],
    feeder: usize,
    stop: &std::sync::atomic::AtomicBool,
    flow_errors: &AtomicUsize,
) -> Duration {
    let mut max_lag = Duration::ZERO;
    // Counted here and added once: a counter shared by the feeders would
    // bounce between the cores at every push.
    let mut pushed = 0u64;
    let mine: Vec<&Call> = calls.iter().skip(feeder).step_by(FEEDERS).collect();
    let Some(first) = mine.first() else {
        return max_lag;
    };
    let clock = first.pipeline.clock().unwrap();
    let ramp: Vec<u8> = (0..SAMPLES_PER_FRAME as i16)
        .flat_map(|s| (s * 100).to_le_bytes())
        .collect();
    // Calls join over the first `RAMP`, as calls on a server start at
    // different times; each call's timeline starts at its running time then
    // and its buffers are contiguous from there, as a capture device's are.
    let mut starts: Vec<Option<(gst::ClockTime, u64)>> = vec![None; mine.len()];
    let ramp_rounds = (RAMP.as_millis() / FRAME.mseconds() as u128).max(1) as usize;
    let origin = Instant::now();
    let mut round: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        let scheduled = origin + Duration::from(FRAME) * (round as u32);
        max_lag = max_lag.max(Instant::now().saturating_duration_since(scheduled));
        let joined = (mine.len() * (round as usize + 1)).div_ceil(ramp_rounds);
        for (call, start) in mine.iter().zip(starts.iter_mut()).take(joined) {
            let (start, first_round) = *start.get_or_insert_with(|| {
                let running = clock
                    .time()
                    .saturating_sub(call.pipeline.base_time().unwrap());
                for pad in &call.inputs {
                    pad.push_event(segment_from(running));
                }
                (running, round)
            });
            let pts = start + FRAME * (round - first_round);
            for pad in &call.inputs {
                let mut buffer = gst::Buffer::from_slice(ramp.clone());
                {
                    let b = buffer.get_mut().unwrap();
                    b.set_pts(pts);
                    b.set_duration(FRAME);
                }
                if pad.push(buffer).is_err() {
                    flow_errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    pushed += SAMPLES_PER_FRAME as u64;
                }
            }
        }
        round += 1;
        let next = origin + Duration::from(FRAME) * (round as u32);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    PUSHED.fetch_add(pushed, Ordering::Relaxed);
    max_lag
}

/// When the stalls began, in the calls' running time: " (at 1.2 s to
/// 3.4 s, median 2.0 s)", or nothing without stalls.
fn stall_spread(times: &[gst::ClockTime]) -> String {
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return String::new();
    };
    let secs = |t: gst::ClockTime| t.nseconds() as f64 / 1e9;
    format!(
        " (at {:.2} s to {:.2} s, median {:.2} s)",
        secs(*first),
        secs(*last),
        secs(times[times.len() / 2])
    )
}

/// The older shape: every track its own live `audiotestsrc`.
fn measure_testsrc(n: usize, desc: impl Fn(usize) -> String) -> (f64, usize) {
    let pipelines: Vec<gst::Element> = (0..n)
        .map(|i| {
            let p = gst::parse::launch(&desc(i)).unwrap();
            p.set_state(gst::State::Playing).unwrap();
            p
        })
        .collect();
    std::thread::sleep(WARMUP);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(WINDOW);
    let share = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64() / cores() * 100.0;
    let errors = pipelines
        .iter()
        .filter(|p| {
            p.bus()
                .unwrap()
                .pop_filtered(&[gst::MessageType::Error])
                .is_some()
        })
        .count();
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    (share, errors)
}

fn main() {
    gst::init().unwrap();
    gstcallrec::plugin_register_static().unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let testsrc = args.iter().any(|a| a == "--testsrc");
    let counts: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let encrypted = args.iter().any(|a| a == "--encrypted");
    let comparing = !args
        .iter()
        .any(|a| a == "--formats" || a == "--callrecsink-only")
        || encrypted;
    let rounds: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--rounds=")?.parse().ok())
        .unwrap_or(if comparing { 2 } else { 1 })
        .max(1);
    let counts = if counts.is_empty() {
        vec![1000, 2500, 5000]
    } else {
        counts
    };
    let dir = std::env::temp_dir().join(format!("callrec-conc-{}", std::process::id()));
    let fresh_dir = || {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    };
    println!("CPU is the whole process, as a share of {} cores", cores());
    for n in counts {
        if testsrc {
            let src =
                "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1";
            fresh_dir();
            let alone = measure_testsrc(n, |_| {
                format!("{src} ! fakesink sync=false {src} ! fakesink sync=false")
            });
            let rec = measure_testsrc(n, |i| {
                format!(
                    "callrecsink name=r location={}/rec{i}.wav {src} ! r. {src} ! r.",
                    dir.display()
                )
            });
            println!(
                "{n:>5} calls, audiotestsrc per track: callrecsink {:5.1}% ({} errors) | sources alone {:5.1}%",
                rec.0, rec.1, alone.0
            );
            continue;
        }
        let mut figures = Vec::new();
        let only_callrec = args.iter().any(|a| a == "--callrecsink-only");
        let recorders: &[Recorder] = if args.iter().any(|a| a == "--formats") {
            &[
                Recorder::CallRecSink("wav"),
                Recorder::CallRecSink("flac"),
                Recorder::CallRecSink("opus"),
                Recorder::CallRecSink("mp3"),
                Recorder::FakeSink,
            ]
        } else if encrypted {
            &[
                Recorder::CallRecSink("wav"),
                Recorder::CallRecSink(SEALED),
                Recorder::FakeSink,
            ]
        } else if only_callrec {
            &[Recorder::CallRecSink("wav")]
        } else {
            &[
                Recorder::CallRecSink("wav"),
                Recorder::WavencPerTrack,
                Recorder::FakeSink,
            ]
        };
        println!("{n} calls:");
        // Rounds of every setup in turn: the machine drifts by several
        // points of CPU over minutes, and the ratio is a difference of
        // setups measured apart.
        for round in 1..=rounds {
            for &recorder in recorders {
                fresh_dir();
                let Some(f) = measure(n, recorder, &dir) else {
                    continue;
                };
                println!(
                    "  {:<28} CPU {:5.1}% | per call: RSS {:+6.0} KB, threads {:+.2}, fds {:+.2} | feeders late {:>4} ms, {} stalls{}, {} samples trimmed, {} errors | set up {:.1} s, torn down {:.1} s ({TEARDOWN_THREADS} threads)",
                    recorder.label(),
                    f.cpu,
                    f.rss_kb,
                    f.threads,
                    f.fds,
                    f.late.as_millis(),
                    f.stalls,
                    stall_spread(&f.stall_times),
                    f.dropped,
                    f.errors,
                    f.setup.as_secs_f64(),
                    f.teardown.as_secs_f64(),
                );
                figures.push((round, recorder, f));
            }
        }
        let cpu = |round: usize, which: Recorder| {
            figures
                .iter()
                .find(|(r, w, _)| *r == round && *w == which)
                .map(|(_, _, f)| f.cpu)
        };
        // Ours beside what it is compared with.
        let (ours, theirs) = if encrypted {
            (Recorder::CallRecSink(SEALED), Recorder::CallRecSink("wav"))
        } else {
            (Recorder::CallRecSink("wav"), Recorder::WavencPerTrack)
        };
        let own: Vec<(f64, f64)> = (1..=rounds)
            .filter_map(|round| {
                let feeder = cpu(round, Recorder::FakeSink)?;
                Some((cpu(round, ours)? - feeder, cpu(round, theirs)? - feeder))
            })
            .collect();
        if !own.is_empty() {
            let ratios: Vec<String> = own
                .iter()
                .map(|(rec, stock)| format!("{:.2}", rec / stock.max(0.01)))
                .collect();
            let mean =
                |f: fn(&(f64, f64)) -> f64| own.iter().map(f).sum::<f64>() / own.len() as f64;
            let (rec, stock) = (mean(|o| o.0), mean(|o| o.1));
            println!(
                "  own cost over the feeder, mean of {} rounds: {} {rec:.1}%, {} {stock:.1}%: ratio {:.2} (rounds: {}; goal <= {})",
                own.len(),
                ours.label(),
                theirs.label(),
                rec / stock.max(0.01),
                ratios.join(", "),
                if encrypted { "1.05" } else { "1.0" },
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
