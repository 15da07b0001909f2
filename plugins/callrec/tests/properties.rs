// SPDX-License-Identifier: MPL-2.0
//! No property value aborts the process: every writable property of
//! callrecsink and of its track pads at its minimum, maximum, default and
//! the 64-bit extremes, in NULL and in PLAYING (a panic inside
//! `set_property` cannot unwind: it aborts).

use gst::prelude::*;

mod common;
use common::*;

#[test]
fn no_property_value_aborts_the_process() {
    init();
    let dir = tmp_dir("properties");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} overwrite=true \
         audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec.sink_0 \
         audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec.sink_1",
        dir.join("call.wav").display()
    ));
    let rec = pipeline.by_name("rec").unwrap();
    let pads = rec.sink_pads();
    assert_eq!(pads.len(), 2);
    let mut tried = callaudio_testkit::properties::set_every_property(&rec);
    for pad in &pads {
        tried += callaudio_testkit::properties::set_every_property(pad);
    }
    assert!(tried >= 60, "only {tried} values tried");
    // Set again to what the recording needs, then in PLAYING.
    rec.set_property("location", dir.join("call.wav").to_str().unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(5)).0.unwrap();
    callaudio_testkit::properties::set_every_property(&rec);
    for pad in &pads {
        callaudio_testkit::properties::set_every_property(pad);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(pipeline.current_state(), gst::State::Playing);
    pipeline.set_state(gst::State::Null).unwrap();
}

/// docs/callrecsink.md names every property and signal of the element and
/// of its track pads, as `gst-inspect-1.0` lists them.
#[test]
fn the_reference_names_every_property() {
    init();
    let rec = gst::ElementFactory::make("callrecsink").build().unwrap();
    let pad = rec.request_pad_simple("sink_%u").unwrap();
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/callrecsink.md");
    let mut missing = callaudio_testkit::properties::undocumented(&rec, &page);
    missing.extend(callaudio_testkit::properties::undocumented(&pad, &page));
    assert!(
        missing.is_empty(),
        "not in docs/callrecsink.md: {missing:?}"
    );
}
