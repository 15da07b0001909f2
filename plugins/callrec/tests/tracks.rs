// SPDX-License-Identifier: MPL-2.0
//! Tracks have stable identities: pads requested and released in any order
//! before the start never collide, never leave an orphan, never panic; the
//! channel order follows the pad names and the outcome says which is which;
//! the same element records again after a stop.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;

fn rec() -> gst::Element {
    init();
    gst::ElementFactory::make("callrecsink").build().unwrap()
}

fn pad_names(rec: &gst::Element) -> Vec<String> {
    let mut names: Vec<String> = rec
        .sink_pads()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    names.sort();
    names
}

/// The (pad, channel) pairs of a finalized message.
fn channel_map(finalized: &gst::Structure) -> Vec<(String, u32)> {
    finalized
        .get::<gst::Array>("tracks")
        .unwrap()
        .iter()
        .map(|t| {
            let t = t.get::<gst::Structure>().unwrap();
            (t.get("pad").unwrap(), t.get("channel").unwrap())
        })
        .collect()
}

/// Links a new appsrc to pad `pad` of `rec` inside `pipeline`.
fn feed_pad(pipeline: &gst::Pipeline, rec: &gst::Element, pad: &gst::Pad, name: &str) {
    let src = gst::parse::bin_from_description(&appsrc(name).replace(" ! rec.", ""), false)
        .unwrap()
        .by_name(name)
        .unwrap();
    src.unparent();
    pipeline.add(&src).unwrap();
    src.static_pad("src").unwrap().link(pad).unwrap();
    let _ = rec;
}

#[test]
fn pad_names_never_collide_whatever_the_request_order() {
    let rec = rec();
    let a = rec.request_pad_simple("sink_%u").unwrap();
    let b = rec.request_pad_simple("sink_%u").unwrap();
    let c = rec.request_pad_simple("sink_%u").unwrap();
    assert_eq!(pad_names(&rec), ["sink_0", "sink_1", "sink_2"]);
    // Before: the next request was named sink_2 again and failed.
    rec.release_request_pad(&b);
    let d = rec.request_pad_simple("sink_%u").unwrap();
    assert_eq!(d.name(), "sink_3");
    assert!(rec.request_pad_simple("sink_x").is_none());
    let again = rec.request_pad_simple("sink_1").unwrap();
    assert_eq!(pad_names(&rec), ["sink_0", "sink_1", "sink_2", "sink_3"]);
    for pad in [&a, &c, &d, &again] {
        rec.release_request_pad(pad);
    }
    assert!(pad_names(&rec).is_empty());
    // No orphan: every track's elements went with its pad.
    assert_eq!(rec.downcast_ref::<gst::Bin>().unwrap().children().len(), 0);
}

#[test]
fn releasing_a_middle_pad_before_start_records_the_others_by_pad_order() {
    let rec = rec();
    let dir = tmp_dir("release-middle");
    let location = dir.join("call.wav");
    rec.set_property("location", location.to_str().unwrap());
    let pipeline = gst::Pipeline::new();
    pipeline.set_auto_flush_bus(false);
    pipeline.add(&rec).unwrap();
    let pads: Vec<gst::Pad> = (0..3)
        .map(|_| rec.request_pad_simple("sink_%u").unwrap())
        .collect();
    // Before: index out of bounds in the mixer, a poisoned mutex, SIGABRT.
    rec.release_request_pad(&pads[1]);
    feed_pad(&pipeline, &rec, &pads[2], "agent");
    feed_pad(&pipeline, &rec, &pads[0], "caller");
    pipeline.set_state(gst::State::Playing).unwrap();
    feed_ramp(&pipeline, "caller", 50, 1);
    feed_ramp(&pipeline, "agent", 50, -1);
    let messages = finish(&pipeline);
    assert!(
        error_text(&messages).is_none(),
        "{:?}",
        error_text(&messages)
    );
    let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
    assert_eq!(
        channel_map(&finalized),
        [("sink_0".to_string(), 0), ("sink_2".to_string(), 1)]
    );
    let (channels, _, samples) = read_wav(&location);
    assert_eq!(channels, 2, "an orphan channel");
    assert_eq!(samples[0][..3], [0, 1, 2]);
    assert_eq!(samples[1][..3], [0, -1, -2]);
}

#[test]
fn the_same_element_records_again_after_a_stop() {
    init();
    let dir = tmp_dir("again");
    let pipeline = launch(&format!(
        "callrecsink name=rec {} {}",
        appsrc("caller"),
        appsrc("agent")
    ));
    let rec = pipeline.by_name("rec").unwrap();
    for (run, target) in [
        (0, gst::State::Null),
        (1, gst::State::Ready),
        (2, gst::State::Null),
    ] {
        let location = dir.join(format!("run{run}.wav"));
        rec.set_property("location", location.to_str().unwrap());
        pipeline.set_state(gst::State::Playing).unwrap();
        feed_ramp(&pipeline, "caller", 50, 1);
        feed_ramp(&pipeline, "agent", 50, -1);
        let messages = messages_until(
            &pipeline,
            &[gst::MessageType::Eos, gst::MessageType::Error],
            Duration::from_secs(10),
        );
        pipeline.set_state(target).unwrap();
        // Before: the second run recorded nothing (the rate probe was gone).
        assert!(
            element_message(&messages, "callrecsink-finalized").is_some(),
            "run {run}: {:?}",
            error_text(&messages)
        );
        let (channels, _, samples) = read_wav(&location);
        assert_eq!(channels, 2);
        assert_eq!(samples[0].len(), 8000, "run {run}");
        assert_eq!(samples[1][1], -1, "run {run}");
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_track_changes_from_mulaw_to_raw_between_recordings() {
    init();
    let dir = tmp_dir("reformat");
    let pipeline = launch(&format!("callrecsink name=rec {}", appsrc("caller")));
    let rec = pipeline.by_name("rec").unwrap();
    let src = pipeline
        .by_name("caller")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let mulaw = gst::Caps::builder("audio/x-mulaw")
        .field("rate", 8000)
        .field("channels", 1)
        .build();
    let raw = src.caps().unwrap();
    for (run, caps) in [(0, mulaw), (1, raw)] {
        let location = dir.join(format!("run{run}.wav"));
        rec.set_property("location", location.to_str().unwrap());
        src.set_caps(Some(&caps));
        pipeline.set_state(gst::State::Playing).unwrap();
        for b in 0..50u64 {
            let bytes = if run == 0 { 160 } else { 320 };
            let mut buffer = gst::Buffer::from_mut_slice(vec![0x55u8; bytes]);
            buffer
                .get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(20 * b));
            src.push_buffer(buffer).unwrap();
        }
        src.end_of_stream().unwrap();
        let messages = messages_until(
            &pipeline,
            &[gst::MessageType::Eos, gst::MessageType::Error],
            Duration::from_secs(10),
        );
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            element_message(&messages, "callrecsink-finalized").is_some(),
            "run {run}: {:?}",
            error_text(&messages)
        );
        assert_eq!(read_wav(&location).2[0].len(), 8000, "run {run}");
    }
}

#[test]
fn a_track_requested_while_playing_is_refused_with_a_warning_and_a_message() {
    init();
    let dir = tmp_dir("late-track");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} {}",
        location.display(),
        appsrc("caller")
    ));
    let rec = pipeline.by_name("rec").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(rec.request_pad_simple("sink_%u").is_none());
    feed_ramp(&pipeline, "caller", 50, 1);
    let messages = finish(&pipeline);
    let refused = element_message(&messages, "callrecsink-track-refused").expect("refused message");
    assert!(
        refused
            .get::<String>("reason")
            .unwrap()
            .contains("before the recording starts")
    );
    assert!(
        messages
            .iter()
            .any(|m| m.type_() == gst::MessageType::Warning)
    );
    assert!(error_text(&messages).is_none());
    assert!(element_message(&messages, "callrecsink-finalized").is_some());
    assert_eq!(read_wav(&location).0, 1);
}

/// Pad properties on a launch line, as with `audiomixer` and `compositor`:
/// `sink_0::gain=-6 sink_1::mute=true` reach the track pads, which exist
/// only once the links request them.
#[test]
fn pad_properties_work_on_a_launch_line() {
    init();
    let dir = tmp_dir("pad-properties");
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} sink_0::gain=-6 sink_1::mute=true \
         audiotestsrc num-buffers=50 samplesperbuffer=160 volume=0.5 ! audio/x-raw,rate=8000,channels=1 ! rec.sink_0 \
         audiotestsrc num-buffers=50 samplesperbuffer=160 volume=0.5 ! audio/x-raw,rate=8000,channels=1 ! rec.sink_1",
        location.display()
    ));
    let rec = pipeline.by_name("rec").unwrap();
    let pad = rec.static_pad("sink_0").expect("sink_0");
    assert_eq!(pad.property::<f64>("gain"), -6.0);
    let child = rec
        .dynamic_cast_ref::<gst::ChildProxy>()
        .unwrap()
        .child_by_name("sink_1")
        .expect("the pad is a child");
    assert!(child.property::<bool>("mute"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = messages_until(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(10),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
    assert_eq!(track_stat(&finalized, 1, "muted-samples"), 8000);
    assert_eq!(track_stat(&finalized, 0, "muted-samples"), 0);
    let (_, _, channels) = read_wav(&location);
    let peak = |c: &[i16]| c.iter().map(|s| s.unsigned_abs()).max().unwrap();
    // 0.5 of full scale, then -6 dB: about a quarter.
    let p0 = peak(&channels[0]) as f64 / 32767.0;
    assert!((p0 - 0.25).abs() < 0.01, "track 0 peaks at {p0}");
    assert_eq!(peak(&channels[1]), 0, "track 1 was muted");
}
