// SPDX-License-Identifier: MPL-2.0
//! No property or URI value aborts the process: every writable property of
//! the three elements at its minimum, maximum, default and the 64-bit
//! extremes, in NULL and in PLAYING, and every numeric URI parameter at the
//! same values, negative and percent-encoded (a panic inside
//! `set_property` cannot unwind: it aborts).

use std::time::Duration;

use gst::prelude::*;

mod common;

/// A bot that accepts one connection and holds it for a while.
fn holding_bot() -> String {
    let port = common::one_bot(|_ws, _| std::thread::sleep(Duration::from_secs(5)));
    format!("ws://127.0.0.1:{port}/")
}

#[test]
fn no_property_value_aborts_the_process() {
    common::init();
    for desc in [
        "pipecatwsrc name=e ! fakesink",
        "pipecatwssharedsrc name=e ! fakesink",
        "audiotestsrc is-live=true ! audio/x-raw,rate=16000,channels=1 ! pipecatwssink name=e",
    ] {
        let pipeline = gst::parse::launch(desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let element = pipeline.by_name("e").unwrap();
        let tried = callaudio_testkit::properties::set_every_property(&element);
        assert!(tried >= 40, "{desc}: only {tried} values tried");
        element.set_property("uri", holding_bot());
        pipeline.set_state(gst::State::Playing).unwrap();
        pipeline.state(gst::ClockTime::from_seconds(5)).0.unwrap();
        callaudio_testkit::properties::set_every_property(&element);
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

/// The numeric parameters a `pipecat+` URI sets on the source.
const NUMERIC: &[&str] = &[
    "connect-timeout",
    "max-message-size",
    "keepalive-interval",
    "keepalive-timeout",
    "response-timeout",
    "max-queue",
    "max-queue-bytes",
    "latency",
    "trim-end-silence",
];

#[test]
fn no_uri_value_aborts_and_negative_numbers_are_refused_by_name() {
    common::init();
    let src = gst::ElementFactory::make("pipecatwsrc").build().unwrap();
    let handler = src.dynamic_cast_ref::<gst::URIHandler>().unwrap();
    for key in NUMERIC {
        for value in [
            "0".to_string(),
            "1".into(),
            u32::MAX.to_string(),
            (u64::MAX - 1).to_string(),
            u64::MAX.to_string(),
            "99999999999999999999999".into(),
        ] {
            // In range or refused; either way, the process lives on.
            let _ = handler.set_uri(&format!("pipecat+ws://127.0.0.1:9/?{key}={value}"));
        }
        for negative in ["-1", "-5", "%2D1", " -1"] {
            let err = handler
                .set_uri(&format!("pipecat+ws://127.0.0.1:9/?{key}={negative}"))
                .expect_err(&format!("{key}={negative} was taken"));
            assert!(
                err.message().contains(key) && err.message().contains("negative"),
                "{key}={negative}: {err}"
            );
        }
    }
    // The values that used to abort, through uridecodebin as a user runs it.
    for uri in [
        "pipecat+ws://127.0.0.1:9/?latency=-1",
        "pipecat+ws://127.0.0.1:9/?latency=%2D1",
        "pipecat+ws://127.0.0.1:9/?latency=18446744073709551615",
    ] {
        let pipeline = gst::parse::launch(&format!("uridecodebin uri={uri} ! fakesink"))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let _ = pipeline.set_state(gst::State::Playing);
        let _ = pipeline.state(gst::ClockTime::from_seconds(5));
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn tls_verify_is_refused_in_a_uri() {
    common::init();
    for factory in ["pipecatwsrc", "pipecatwssink"] {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        let handler = element.dynamic_cast_ref::<gst::URIHandler>().unwrap();
        let err = handler
            .set_uri("pipecat+wss://127.0.0.1:9/?tls-verify=false")
            .expect_err("tls-verify was taken from the URI");
        assert!(err.message().contains("tls-verify"), "{err}");
        assert!(element.property::<bool>("tls-verify"));
    }
}

/// docs/pipecat.md names every property and signal of the three elements
/// that `gst-inspect-1.0` lists.
#[test]
fn the_reference_names_every_property() {
    common::init();
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/pipecat.md");
    for factory in ["pipecatwsrc", "pipecatwssharedsrc", "pipecatwssink"] {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        let missing = callaudio_testkit::properties::undocumented(&element, &page);
        assert!(
            missing.is_empty(),
            "{factory}: not in docs/pipecat.md: {missing:?}"
        );
    }
}
