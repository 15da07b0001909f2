//! How many real-time stereo 8 kHz recordings one process holds, and at what
//! CPU cost, on this machine:
//!
//!     cargo bench -p gst-plugin-callrec --bench concurrency [-- N...]
//!
//! Each recording is a pipeline of two live 8 kHz sources (20 ms buffers)
//! into one `callrecsink`. CPU is the process's user+system time over a
//! 5 s window, as a share of all cores.

use std::time::{Duration, Instant};

use gst::prelude::*;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    gst::init().unwrap();
    gstcallrec::plugin_register_static().unwrap();
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![100, 250, 500, 1000]
    } else {
        counts
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = std::env::temp_dir().join(format!("callrec-conc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1";
    for n in counts {
        // The same two live sources per call into fakesink: what the sources
        // alone cost, so callrecsink's own share can be read off.
        let baseline = measure(n, |_| {
            format!("{src} ! fakesink sync=false {src} ! fakesink sync=false")
        });
        let recording = measure(n, |i| {
            format!(
                "callrecsink name=r location={}/rec{i}.wav {src} ! r. {src} ! r.",
                dir.display()
            )
        });
        println!(
            "{n:>5} stereo 8 kHz calls: callrecsink {:5.1}% CPU ({} errors), sources alone {:5.1}%, of {cores} cores",
            recording.0, recording.1, baseline.0
        );
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `n` live pipelines for 5 s: (CPU % of all cores, pipelines with an error).
fn measure(n: usize, desc: impl Fn(usize) -> String) -> (f64, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    {
        let pipelines: Vec<gst::Element> = (0..n)
            .map(|i| {
                let p = gst::parse::launch(&desc(i)).unwrap();
                p.set_state(gst::State::Playing).unwrap();
                p
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        std::thread::sleep(Duration::from_secs(5));
        let share = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64() / cores * 100.0;
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
}
