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
