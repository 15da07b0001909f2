// SPDX-License-Identifier: MPL-2.0
//! Recording throughput of `callrecsink` beside what a user would write
//! instead, in one process and one run, on the same non-live input:
//!
//!     cargo bench -p gst-plugin-callrec --bench throughput
//!
//! One track: `callrecsink` vs `wavenc ! filesink`, the source in the
//! recorder's thread. Two tracks: `callrecsink` vs `interleave ! wavenc !
//! filesink`, each source behind a queue (interleave needs one thread per
//! input). FLAC and Opus: `callrecsink format=...` vs `flacenc ! filesink`
//! and `opusenc ! oggmux ! filesink` at the same bitrate. The figure is
//! audio recorded per second of wall time (x real time), from PLAYING to a
//! closed file.
//!
//! `callrecsink` fsyncs a recording before it publishes it; the stock
//! pipeline never does. So each stock figure is given twice: as is, and
//! with an fsync of its file afterwards, which is the same guarantee.

use std::time::{Duration, Instant};

use gst::prelude::*;

const BUFFERS: u32 = 20_000;
const ROUNDS: usize = 5;

fn source_of(buffers: u32) -> String {
    format!(
        "audiotestsrc wave=ticks samplesperbuffer=1600 num-buffers={buffers} \
         ! audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved"
    )
}

fn source() -> String {
    source_of(BUFFERS)
}

/// Encoders are slower than writing PCM: fewer buffers keep a round short.
const ENCODED_BUFFERS: u32 = 2_000;

/// Runs a pipeline to EOS: (time to a closed file, time to a durable file,
/// bytes written).
fn run(desc: &str, file: &std::path::Path) -> (Duration, Duration, u64) {
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
    let closed = start.elapsed();
    std::fs::File::open(file).unwrap().sync_all().unwrap();
    let durable = start.elapsed();
    let size = std::fs::metadata(file).unwrap().len();
    std::fs::remove_file(file).unwrap();
    (closed, durable, size)
}

fn main() {
    gst::init().unwrap();
    gstcallrec::plugin_register_static().unwrap();
    let dir = std::env::temp_dir().join(format!("callrec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("out.wav");
    let loc = f.display();
    let queued = |i: usize| format!("{} ! queue name=q{i}", source());
    let cases = [
        (
            "1 track",
            format!("{} ! callrecsink location={loc}", source()),
            "wavenc ! filesink",
            format!("{} ! wavenc ! filesink location={loc}", source()),
        ),
        (
            "2 tracks",
            format!(
                "callrecsink name=r location={loc} {} ! r. {} ! r.",
                queued(0),
                queued(1)
            ),
            "interleave ! wavenc ! filesink",
            format!(
                "interleave name=i ! wavenc ! filesink location={loc} {} ! i. {} ! i.",
                queued(0),
                queued(1)
            ),
        ),
        (
            "flac",
            format!(
                "{} ! callrecsink location={loc} format=flac",
                source_of(ENCODED_BUFFERS)
            ),
            "flacenc ! filesink",
            format!(
                "{} ! flacenc ! filesink location={loc}",
                source_of(ENCODED_BUFFERS)
            ),
        ),
        (
            "mp3",
            format!(
                "{} ! callrecsink location={loc} format=mp3 bitrate=32000",
                source_of(ENCODED_BUFFERS)
            ),
            "lamemp3enc ! filesink",
            format!(
                "{} ! lamemp3enc target=bitrate bitrate=32 ! filesink location={loc}",
                source_of(ENCODED_BUFFERS)
            ),
        ),
        (
            "opus",
            format!(
                "{} ! callrecsink location={loc} format=opus bitrate=32000",
                source_of(ENCODED_BUFFERS)
            ),
            "opusenc ! oggmux ! filesink",
            format!(
                "{} ! opusenc bitrate=32000 frame-size=20 audio-type=voice ! oggmux ! filesink location={loc}",
                source_of(ENCODED_BUFFERS)
            ),
        ),
    ];
    println!(
        "buffers of 200 ms per track (8 kHz S16 mono; {BUFFERS} for WAV, {ENCODED_BUFFERS} encoded), best of {ROUNDS}, x real time:"
    );
    for (tracks, ours, stock_name, stock) in &cases {
        let buffers = if tracks.contains("track") {
            BUFFERS
        } else {
            ENCODED_BUFFERS
        };
        let audio = buffers as f64 * 0.2;
        // Best of ROUNDS, alternating so both see the same machine.
        let (mut best_ours, mut best_stock, mut best_stock_durable) =
            (Duration::MAX, Duration::MAX, Duration::MAX);
        let mut size = 0;
        for _ in 0..ROUNDS {
            let (closed, _, s) = run(ours, &f);
            best_ours = best_ours.min(closed);
            size = s;
            let (closed, durable, _) = run(stock, &f);
            best_stock = best_stock.min(closed);
            best_stock_durable = best_stock_durable.min(durable);
        }
        let speed = |t: Duration| audio / t.as_secs_f64();
        println!(
            "  {tracks:<8} callrecsink {:7.0}x | {stock_name} {:7.0}x, with fsync {:7.0}x | ratio {:.2}, with fsync {:.2} (goal >= 1.0); {} KB per hour",
            speed(best_ours),
            speed(best_stock),
            speed(best_stock_durable),
            best_stock.as_secs_f64() / best_ours.as_secs_f64(),
            best_stock_durable.as_secs_f64() / best_ours.as_secs_f64(),
            (size as f64 / audio * 3600.0 / 1000.0) as u64,
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
