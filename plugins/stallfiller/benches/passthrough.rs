// SPDX-License-Identifier: MPL-2.0
//! Steady-state cost of `stallfiller` beside the elements a user would put
//! in its place, in one process and one run:
//!
//!     cargo bench -p gst-plugin-stallfiller --bench passthrough
//!
//! Each element runs in `audiotestsrc ! capsfilter ! ELEMENT ! fakesink` on
//! the same non-live stream (8 kHz mono S16LE, 20 ms buffers); the source is
//! the same for all, so differences are the elements' own.

use std::time::{Duration, Instant};

use gst::prelude::*;

const BUFFERS: u64 = 200_000;
const ROUNDS: usize = 7;

fn run(element: &str) -> Duration {
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc wave=silence samplesperbuffer=160 num-buffers={BUFFERS} \
         ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! {element} ! fakesink sync=false"
    ))
    .unwrap();
    let bus = pipeline.bus().unwrap();
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    let took = start.elapsed();
    if let gst::MessageView::Error(err) = msg.view() {
        panic!("{element}: {}", err.error());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    took
}

fn main() {
    gst::init().unwrap();
    gststallfiller::plugin_register_static().unwrap();
    let elements = ["identity", "audiorate", "stallfiller"];
    let mut best = [Duration::MAX; 3];
    // Interleave the rounds so a slow moment of the machine hits all alike.
    for _ in 0..ROUNDS {
        for (i, element) in elements.iter().enumerate() {
            best[i] = best[i].min(run(element));
        }
    }
    let per_s = |d: Duration| BUFFERS as f64 / d.as_secs_f64();
    println!("steady stream, {BUFFERS} buffers of 20 ms, best of {ROUNDS}:");
    for (element, took) in elements.iter().zip(best) {
        println!(
            "  {element:<12} {:>12.0} buffers/s  ({:.3} s)",
            per_s(took),
            took.as_secs_f64()
        );
    }
    let [identity, audiorate, stallfiller] = best.map(|d| d.as_secs_f64());
    println!(
        "  time ratio stallfiller / audiorate: {:.3}  (goal <= 1.0)",
        stallfiller / audiorate
    );
    println!(
        "  time ratio stallfiller / identity:  {:.3}",
        stallfiller / identity
    );
    println!(
        "  cost over identity per buffer: stallfiller {:.0} ns, audiorate {:.0} ns",
        (stallfiller - identity) / BUFFERS as f64 * 1e9,
        (audiorate - identity) / BUFFERS as f64 * 1e9
    );
}
