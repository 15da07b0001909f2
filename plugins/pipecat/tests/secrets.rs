// SPDX-License-Identifier: MPL-2.0
//! Tokens in the URI and header values never reach the debug log (captured
//! whole, every category at level 9) nor an error, on success and failure.
//!
//! Its own test binary: the log function is process-wide.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

const URI_TOKEN: &str = "uritoken-6f1d2a";
const URI_PASSWORD: &str = "pw-91c3e7";
const HEADER_SECRET: &str = "Bearer hdrsecret-4b8e0c";
const PATH_TOKEN: &str = "pathtoken-0e55d1";
const FRAGMENT_TOKEN: &str = "fragtoken-7a2b90";

#[test]
fn secrets_never_appear_in_logs_or_errors() {
    init();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    gst::log::add_log_function(move |_cat, _level, file, function, line, _obj, msg| {
        if let Some(text) = msg.get() {
            let mut log = sink.lock().unwrap();
            log.push_str(&format!("{file}:{line}:{function}: {text}\n"));
        }
    });
    gst::log::remove_default_log_function();
    gst::log::set_default_threshold(gst::DebugLevel::Memdump);
    gst::log::set_active(true);

    let headers = format!("headers, Authorization=\"{HEADER_SECRET}\"");
    let mut bus_text = String::new();

    // A whole call with a real bot: connect, audio, hang-up.
    let bot = Bot::start(&["--mode", "ramp", "--seconds", "0.3", "--hangup"]);
    let uri = format!(
        "ws://caller:{URI_PASSWORD}@127.0.0.1:{}/ws?token={URI_TOKEN}",
        bot.port
    );
    let pipeline = launch("pipecatwsrc name=src ! fakesink sync=false");
    configure(&pipeline, &uri, &headers);
    pipeline.set_state(gst::State::Playing).unwrap();
    let (seen, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(20),
    );
    bus_text.push_str(&format!("{seen:?} {end:?}"));
    assert_eq!(end.map(|(m, _)| m.type_()), Some(gst::MessageType::Eos));
    pipeline.set_state(gst::State::Null).unwrap();

    // And failures, whose texts are built from library errors; tokens in
    // the path and the fragment too.
    for uri in [
        format!(
            "ws://caller:{URI_PASSWORD}@127.0.0.1:{}/ws/{PATH_TOKEN}?token={URI_TOKEN}#{FRAGMENT_TOKEN}",
            free_port()
        ),
        format!(
            "ws://127.0.0.1:{}/ws/{PATH_TOKEN}?token={URI_TOKEN}#{FRAGMENT_TOKEN}",
            http_server("401 Unauthorized")
        ),
    ] {
        let pipeline = launch("pipecatwsrc name=src ! fakesink");
        configure(&pipeline, &uri, &headers);
        // Connecting runs in the background: the failure comes on the bus.
        pipeline.set_state(gst::State::Playing).unwrap();
        let (seen, end) = wait_for(
            &pipeline,
            &[gst::MessageType::Error],
            Duration::from_secs(2),
        );
        let (msg, _) = end.expect("an error");
        let (text, debug) = error_of(&msg).unwrap();
        bus_text.push_str(&format!("{seen:?} {text} {debug}"));
        pipeline.set_state(gst::State::Null).unwrap();
    }

    gst::log::set_default_threshold(gst::DebugLevel::None);
    let log = log.lock().unwrap();
    assert!(
        log.len() > 10_000,
        "the debug log was not captured ({} bytes)",
        log.len()
    );
    assert!(log.contains("pipecatws"), "our own category did not log");
    for secret in [
        URI_TOKEN,
        URI_PASSWORD,
        "hdrsecret-4b8e0c",
        PATH_TOKEN,
        FRAGMENT_TOKEN,
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).take(5).collect();
        assert!(
            lines.is_empty(),
            "{secret} leaked into the debug log:\n{}",
            lines.join("\n")
        );
        assert!(
            !bus_text.contains(secret),
            "{secret} leaked onto the bus: {bus_text}"
        );
    }
}

/// Secrets are set as properties: GStreamer's own parser logs a launch
/// description whole at DEBUG, so they never belong in one.
fn configure(pipeline: &gst::Pipeline, uri: &str, headers: &str) {
    use std::str::FromStr;
    let src = pipeline.by_name("src").unwrap();
    src.set_property("uri", uri);
    src.set_property("extra-headers", gst::Structure::from_str(headers).unwrap());
}
