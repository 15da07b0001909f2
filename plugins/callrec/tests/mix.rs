//! `mode=mixed`: one mono file, the sum of the tracks, checked sample for
//! sample against the sum of what was sent.

mod common;

use common::*;
use gst::prelude::*;

/// `samples` through appsrc `name` in 20 ms buffers, then EOS.
fn feed(pipeline: &gst::Pipeline, name: &str, samples: &[i16]) {
    let src = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    for (b, chunk) in samples.chunks(160).enumerate() {
        let data: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(data);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(20 * b as u64));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
}

fn tone(freq: f64, amplitude: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|k| (amplitude * (2.0 * std::f64::consts::PI * freq * k as f64 / 8000.0).sin()).round() as i16)
        .collect()
}

/// Records `a` and `b` with `extra` properties; the file's channels.
pub fn record_pair(test: &str, extra: &str, a: &[i16], b: &[i16]) -> (Vec<Vec<i16>>, gst::Structure) {
    init();
    let dir = tmp_dir(test);
    let location = dir.join("call.wav");
    let pipeline = launch(&format!(
        "callrecsink name=rec location={} {extra} {} {}",
        location.display(),
        appsrc("a"),
        appsrc("b")
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    feed(&pipeline, "a", a);
    feed(&pipeline, "b", b);
    let messages = finish(&pipeline);
    assert_eq!(error_text(&messages), None);
    let finalized = element_message(&messages, "callrecsink-finalized").expect("finalized");
    (read_wav(&location).2, finalized)
}

#[test]
fn mixed_is_the_sum_of_two_tones_to_the_sample() {
    let (a, b) = (tone(440.0, 8000.0, 8000), tone(1000.0, 6000.0, 8000));
    let (channels, finalized) = record_pair("mixed", "mode=mixed", &a, &b);
    assert_eq!(channels.len(), 1, "one mono file");
    let expected: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(channels[0], expected);
    assert_eq!(finalized.get::<u64>("frames").unwrap(), 8000);
}

#[test]
fn mixed_clips_at_full_scale_instead_of_wrapping() {
    let loud = vec![20000i16; 1600];
    let quiet_neg = vec![-20000i16; 1600];
    let (channels, _) = record_pair("mixed-clip", "mode=mixed", &loud, &loud);
    assert!(channels[0].iter().all(|&s| s == i16::MAX));
    let (channels, _) = record_pair("mixed-clip-neg", "mode=mixed", &quiet_neg, &quiet_neg);
    assert!(channels[0].iter().all(|&s| s == i16::MIN));
}
