// SPDX-License-Identifier: MPL-2.0
//! What `pipecatwssharedsrc` does differently from `pipecatwsrc`: it pushes
//! from the shared WebSocket thread, so it must hold audio until PLAYING,
//! let sinks complete PLAYING while the bot is silent, and say so when
//! downstream holds that thread. (The same bots as `pipecatwsrc`, real and
//! hostile, and a failed connect, are in `bot.rs`, `hostile_bot.rs`,
//! `record_bot.rs` and `scale.rs`.)

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// `n` 20 ms protobuf frames of 16 kHz mono, sample k of the whole being k.
fn frames(n: usize) -> Vec<Message> {
    let all = ramp(320 * n);
    all.chunks(320)
        .map(|chunk| {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            Message::Binary(gstpipecat::protobuf::encode_audio(&bytes, 16000, 1).into())
        })
        .collect()
}

#[test]
fn audio_that_arrives_before_playing_waits_and_is_pushed_whole_in_order() {
    init();
    let port = raw_server(frames(5));
    let pipeline = launch(&format!(
        "pipecatwssharedsrc uri=ws://127.0.0.1:{port}/ ! appsink name=sink sync=false"
    ));
    let received = record(&pipeline, "sink");
    // Connects in PAUSED; a live source pushes nothing there.
    pipeline.set_state(gst::State::Paused).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(received.lock().unwrap().samples.is_empty());
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, error) = wait_for(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_millis(500),
    );
    let samples = received.lock().unwrap().samples.clone();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "{:?}", error.map(|e| error_of(&e.0)));
    assert_eq!(samples, ramp(320 * 5));
}

/// A bot that says nothing yet: with its format known in advance (`caps`),
/// a GAP after `latency` lets a clock-synchronised sink finish the change
/// to PLAYING, as `pipecatwsrc` does.
#[test]
fn a_silent_bot_with_known_caps_lets_sinks_reach_playing() {
    init();
    let port = raw_server(Vec::new());
    let pipeline = launch(&format!(
        "pipecatwssharedsrc uri=ws://127.0.0.1:{port}/ caps=audio/x-raw,rate=16000,channels=1 ! fakesink"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (result, state, _) = pipeline.state(gst::ClockTime::from_seconds(5));
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success));
    assert_eq!(state, gst::State::Playing);
}

/// Downstream that blocks holds every connection on the shared thread:
/// the element says so on the bus, with what to do about it.
#[test]
fn a_downstream_that_blocks_is_reported() {
    init();
    let port = raw_server(frames(3));
    // identity sleeps 100 ms per buffer: longer than the 50 ms allowed.
    let pipeline = launch(&format!(
        "pipecatwssharedsrc uri=ws://127.0.0.1:{port}/ ! identity sleep-time=100000 ! fakesink sync=false"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, warning) = wait_for(
        &pipeline,
        &[gst::MessageType::Warning, gst::MessageType::Error],
        Duration::from_secs(5),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let (msg, _) = warning.expect("a WARNING");
    let gst::MessageView::Warning(w) = msg.view() else {
        panic!("not a WARNING: {msg:?}");
    };
    let text = w.error().to_string();
    assert!(text.contains("held the shared push thread"), "{text}");
    let debug = w.debug().map(|d| d.to_string()).unwrap_or_default();
    assert!(debug.contains("pipecatwsrc"), "{debug}");
}

/// A sink that waits an hour on the clock for every buffer holds the thread
/// every bot leg shares: after a second its call ends with an ERROR that
/// says so, and the other calls go on (here: one that connects while it is
/// held gets all its audio).
#[test]
fn a_downstream_that_never_returns_costs_its_own_call_only() {
    init();
    let held = launch(&format!(
        "pipecatwssharedsrc uri=ws://127.0.0.1:{}/ ! fakesink sync=true ts-offset=3600000000000",
        raw_server(frames(3))
    ));
    held.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let other = launch(&format!(
        "pipecatwssharedsrc uri=ws://127.0.0.1:{}/ ! appsink name=sink sync=false",
        raw_server(frames(5))
    ));
    let received = record(&other, "sink");
    other.set_state(gst::State::Playing).unwrap();
    let (_, error) = wait_for(&held, &[gst::MessageType::Error], Duration::from_secs(5));
    let started = std::time::Instant::now();
    while received.lock().unwrap().samples.len() < 320 * 5
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let samples = received.lock().unwrap().samples.clone();
    held.set_state(gst::State::Null).unwrap();
    other.set_state(gst::State::Null).unwrap();
    let (text, debug) = error_of(&error.expect("an ERROR for the held call").0).unwrap();
    assert!(text.contains("held the shared push thread"), "{text}");
    assert!(debug.contains("FLUSH_START"), "{debug}");
    assert_eq!(samples, ramp(320 * 5), "the other call's audio");
}

/// A bot that sends a 20 ms frame every 20 ms for `seconds`.
fn paced_bot(seconds: u64) -> u16 {
    one_bot(move |mut ws, _| {
        let start = std::time::Instant::now();
        for (k, frame) in frames(seconds as usize * 50).into_iter().enumerate() {
            let due = start + Duration::from_millis(20 * k as u64);
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            if ws.send(frame).is_err() {
                return;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    })
}

/// One call's downstream blocks for 3 s and ignores flushes (an appsink
/// callback that sleeps): every other call on the shared thread keeps its
/// audio, no buffer later than 50 ms past its frame's 20 ms.
#[test]
fn one_blocked_call_holds_only_itself() {
    init();
    let other = launch(&format!(
        "pipecatwssharedsrc uri=ws://127.0.0.1:{}/ ! appsink name=sink sync=false",
        paced_bot(5)
    ));
    let received = record(&other, "sink");
    other.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let held = launch(&format!(
        "pipecatwssharedsrc uri=ws://127.0.0.1:{}/ ! appsink name=block sync=false",
        paced_bot(5)
    ));
    let block = held
        .by_name("block")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let blocked_at = std::sync::Arc::new(std::sync::Mutex::new(None));
    let mark = blocked_at.clone();
    block.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let _ = sink.pull_sample();
                let first = mark.lock().unwrap().is_none();
                if first {
                    *mark.lock().unwrap() = Some(std::time::Instant::now());
                    std::thread::sleep(Duration::from_secs(3));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    held.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(4000));
    let (_, error) = wait_for(
        &held,
        &[gst::MessageType::Error],
        Duration::from_millis(100),
    );
    held.set_state(gst::State::Null).unwrap();
    other.set_state(gst::State::Null).unwrap();
    let blocked_at = blocked_at.lock().unwrap().expect("the held call got audio");
    let arrivals = received.lock().unwrap().arrivals.clone();
    let during: Vec<_> = arrivals
        .iter()
        .filter(|&&t| t > blocked_at && t < blocked_at + Duration::from_secs(3))
        .collect();
    assert!(
        during.len() >= 140,
        "{} buffers while the other call was held, {} in all",
        during.len(),
        arrivals.len()
    );
    let worst = arrivals
        .windows(2)
        .filter(|w| w[1] > blocked_at)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap();
    assert!(
        worst <= Duration::from_millis(70),
        "a gap of {worst:?} in the other call"
    );
    let (text, _) = error_of(&error.expect("an ERROR for the held call").0).unwrap();
    assert!(text.contains("held the shared push thread"), "{text}");
}

#[test]
fn no_uri_fails_the_start_with_an_error_that_says_so() {
    init();
    let text = start_error("pipecatwssharedsrc ! fakesink");
    assert!(text.contains("No uri"), "{text}");
}

/// Stopped and started again, on another bot: the second connection's audio
/// is pushed (the element takes audio only from the connection it started
/// with, and must take it from the new one).
#[test]
fn started_again_it_pushes_the_new_connection_s_audio() {
    init();
    let first = raw_server(frames(3));
    let pipeline = launch(&format!(
        "pipecatwssharedsrc name=src uri=ws://127.0.0.1:{first}/ ! appsink name=sink sync=false"
    ));
    let received = record(&pipeline, "sink");
    let samples = || received.lock().unwrap().samples.len();
    let arrived = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while samples() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        samples()
    };
    pipeline.set_state(gst::State::Playing).unwrap();
    assert_eq!(arrived(3 * 320), 3 * 320);
    pipeline.set_state(gst::State::Null).unwrap();

    let second = raw_server(frames(2));
    pipeline
        .by_name("src")
        .unwrap()
        .set_property("uri", format!("ws://127.0.0.1:{second}/"));
    pipeline.set_state(gst::State::Playing).unwrap();
    assert_eq!(arrived(5 * 320), 5 * 320);
    pipeline.set_state(gst::State::Null).unwrap();
    let all = received.lock().unwrap().samples.clone();
    assert_eq!(all, [ramp(3 * 320), ramp(2 * 320)].concat());
}
