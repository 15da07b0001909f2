//! Recording throughput of `callrecsink` beside what a user would write
//! instead, in one process and one run, on the same non-live input:
//!
//!     cargo bench -p gst-plugin-callrec --bench throughput
//!
//! One track: `callrecsink` vs `wavenc ! filesink`; two tracks: `callrecsink`
//! vs `interleave ! wavenc ! filesink`. MB/s is bytes of WAV written per second.

use std::time::{Duration, Instant};

use gst::prelude::*;

const BUFFERS: u32 = 20_000;
const ROUNDS: usize = 5;

fn source(i: usize) -> String {
    format!(
        "audiotestsrc wave=ticks samplesperbuffer=1600 num-buffers={BUFFERS} \
         ! audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved ! queue name=q{i}"
    )
}

fn run(desc: &str, file: &std::path::Path) -> (Duration, u64) {
    let pipeline = gst::parse::launch(desc).unwrap();
    let bus = pipeline.bus().unwrap();
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    if let gst::MessageView::Error(err) = msg.view() {
        panic!("{desc}: {}", err.error());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let took = start.elapsed();
    let size = std::fs::metadata(file).unwrap().len();
    std::fs::remove_file(file).unwrap();
    (took, size)
}

fn main() {
    gst::init().unwrap();
    gstcallrec::plugin_register_static().unwrap();
    let dir = std::env::temp_dir().join(format!("callrec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("out.wav");
    let loc = f.display();
    let cases = [
        (
            "1 track   callrecsink",
            format!("{} ! callrecsink location={loc}", source(0)),
        ),
        (
            "1 track   wavenc ! filesink",
            format!("{} ! wavenc ! filesink location={loc}", source(0)),
        ),
        (
            "2 tracks  callrecsink",
            format!(
                "callrecsink name=r location={loc} {} ! r. {} ! r.",
                source(0),
                source(1)
            ),
        ),
        (
            "2 tracks  interleave ! wavenc ! filesink",
            format!(
                "interleave name=i ! wavenc ! filesink location={loc} {} ! i. {} ! i.",
                source(0),
                source(1)
            ),
        ),
    ];
    let mut best = vec![(Duration::MAX, 0u64); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, desc)) in cases.iter().enumerate() {
            let (took, size) = run(desc, &f);
            if took < best[i].0 {
                best[i] = (took, size);
            }
        }
    }
    println!("{BUFFERS} buffers of 200 ms per track (8 kHz S16 mono), best of {ROUNDS}:");
    let mbps: Vec<f64> = best
        .iter()
        .map(|(t, size)| *size as f64 / 1e6 / t.as_secs_f64())
        .collect();
    for ((name, _), ((took, size), rate)) in cases.iter().zip(best.iter().zip(&mbps)) {
        println!(
            "  {name:<42} {rate:>8.1} MB/s  ({size} bytes in {:.3} s)",
            took.as_secs_f64()
        );
    }
    println!(
        "  ratio 1 track  callrecsink / wavenc:            {:.2}  (goal >= 1.0)",
        mbps[0] / mbps[1]
    );
    println!(
        "  ratio 2 tracks callrecsink / interleave+wavenc: {:.2}  (goal >= 1.0)",
        mbps[2] / mbps[3]
    );
    let _ = std::fs::remove_dir_all(dir);
}
