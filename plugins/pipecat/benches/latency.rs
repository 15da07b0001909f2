// SPDX-License-Identifier: MPL-2.0
//! `pipecatwsrc` and `pipecatwssharedsrc` throughput and added latency, from
//! a local WebSocket sender speaking Pipecat's protobuf frames, in one run:
//!
//!     cargo bench -p gst-plugin-pipecat --bench latency
//!
//! Latency is from the sender's `send` to the buffer reaching appsink
//! (one message = one buffer); throughput is frames per second with the
//! sender sending as fast as it can.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio_tungstenite::tungstenite::{self, Message};

/// One protobuf audio message of `samples` samples at 16 kHz.
fn frame(samples: usize) -> Vec<u8> {
    gstpipecat::protobuf::encode_audio(&vec![1u8; 2 * samples], 16000, 1)
}

/// Sends `count` frames, `pace` apart; returns when each was sent.
fn sender(count: usize, pace: Duration) -> (u16, Arc<Mutex<Vec<Instant>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let s = sent.clone();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        let payload = frame(320);
        for _ in 0..count {
            let msg = Message::Binary(payload.clone().into());
            s.lock().unwrap().push(Instant::now());
            ws.send(msg).unwrap();
            if !pace.is_zero() {
                std::thread::sleep(pace);
            }
        }
        let _ = ws.close(None);
        let _ = ws.flush();
        std::thread::sleep(Duration::from_millis(500));
    });
    (port, sent)
}

fn run(source: &str, count: usize, pace: Duration) -> (Vec<Instant>, Vec<Instant>) {
    let (port, sent) = sender(count, pace);
    // The inbox must hold the whole flood: the throughput run sends faster
    // than any sink takes it, and the default bounds would drop the oldest.
    let pipeline = gst::parse::launch(&format!(
        "{source} uri=ws://127.0.0.1:{port}/ max-queue=1000000000000 max-queue-bytes=100000000 ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let received = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let r = received.clone();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let _ = sink.pull_sample();
                r.lock().unwrap().push(Instant::now());
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    )
    .expect("the stream did not end");
    pipeline.set_state(gst::State::Null).unwrap();
    let sent = sent.lock().unwrap().clone();
    let received = received.lock().unwrap().clone();
    assert_eq!(sent.len(), received.len(), "every frame must arrive");
    (sent, received)
}

fn main() {
    gst::init().unwrap();
    gstpipecat::plugin_register_static().unwrap();

    for source in ["pipecatwsrc", "pipecatwssharedsrc"] {
        measure(source);
    }
}

fn measure(source: &str) {
    let (sent, received) = run(source, 50_000, Duration::ZERO);
    let seconds = received
        .last()
        .unwrap()
        .duration_since(sent[0])
        .as_secs_f64();
    println!(
        "{source}: throughput: {} frames of 20 ms (16 kHz mono) in {seconds:.3} s = {:.0} frames/s",
        sent.len(),
        sent.len() as f64 / seconds
    );

    let (sent, received) = run(source, 1_000, Duration::from_millis(5));
    let mut added: Vec<Duration> = sent
        .iter()
        .zip(&received)
        .map(|(s, r)| r.duration_since(*s))
        .collect();
    added.sort();
    let pct = |p: f64| added[((added.len() - 1) as f64 * p) as usize];
    println!(
        "{source}: latency, send -> buffer at appsink, {} frames 5 ms apart: p50 {:?}, p99 {:?}, max {:?} (goal p99 < 2 ms)",
        added.len(),
        pct(0.50),
        pct(0.99),
        added.last().unwrap()
    );
}
