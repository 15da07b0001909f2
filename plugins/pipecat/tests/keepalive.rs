// SPDX-License-Identifier: MPL-2.0
//! Downstream stalls for 45 s while the bot keeps talking: the connection
//! survives the server's keepalive (websockets pings every 20 s and closes
//! with 1011 without a pong), memory stays within `max-queue` with a WARNING
//! counting what was dropped, and audio flows again once downstream drains.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

#[test]
fn slow_downstream_keeps_the_connection_and_bounds_the_queue() {
    init();
    let bot = Bot::start(&["--mode", "ramp", "--seconds", "90"]);
    // appsink holding one buffer and never pulled: every push blocks.
    let pipeline = launch(&format!(
        "pipecatwsrc uri={} max-queue=2000000000 ! appsink name=sink sync=false max-buffers=1 drop=false",
        bot.uri()
    ));
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(45));
    // Downstream comes back: pulling lets create() run again.
    let mut pulled = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if sink
            .try_pull_sample(gst::ClockTime::from_mseconds(100))
            .is_some()
        {
            pulled += 1;
        }
    }
    let bus = pipeline.bus().unwrap();
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    pipeline.set_state(gst::State::Null).unwrap();

    let errors: Vec<String> = messages
        .iter()
        .filter_map(error_of)
        .map(|(t, d)| format!("{t} / {d}"))
        .collect();
    assert!(
        errors.is_empty(),
        "the connection did not survive 45 s of slow downstream: {errors:?}"
    );
    let warnings: Vec<String> = messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect();
    println!("warnings: {warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Downstream is slow: dropped")),
        "no WARNING for dropped audio: {warnings:?}"
    );
    // 5 s of pulling at the bot's pace (it sends 2x real time): plenty.
    assert!(
        pulled > 100,
        "only {pulled} buffers after downstream came back"
    );
}
