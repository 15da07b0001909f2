// SPDX-License-Identifier: MPL-2.0
//! Hostile and unusual input for `stallfiller`, on the test clock: every case
//! must cost bounded time and memory, and say what happened.

use std::time::{Duration, Instant};

use gst::ClockTime;
use gst::prelude::*;
use gst_check::Harness;

mod common;
use common::*;

const YEAR: ClockTime = ClockTime::from_seconds(365 * 24 * 3600);

/// A harness whose element posts to a bus the test can read.
fn harness_with_bus() -> (Harness, gst::Bus) {
    let h = harness();
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    (h, bus)
}

fn drain(h: &mut Harness) -> Vec<gst::Buffer> {
    std::iter::from_fn(|| h.try_pull()).collect()
}

fn messages_of(bus: &gst::Bus, kind: gst::MessageType) -> Vec<gst::Message> {
    std::iter::from_fn(|| bus.pop_filtered(&[kind])).collect()
}

fn text_of(msg: &gst::Message) -> String {
    match msg.view() {
        gst::MessageView::Error(e) => format!("{} | {:?}", e.error(), e.debug()),
        gst::MessageView::Warning(w) => format!("{} | {:?}", w.error(), w.debug()),
        _ => String::new(),
    }
}

/// Every output buffer starts where the one before it ended, unless it is
/// flagged DISCONT.
fn assert_contiguous(buffers: &[gst::Buffer]) {
    for pair in buffers.windows(2) {
        let end = pair[0].pts().unwrap() + pair[0].duration().unwrap();
        if !pair[1].flags().contains(gst::BufferFlags::DISCONT) {
            assert_eq!(end, pair[1].pts().unwrap(), "hole or overlap");
        }
    }
}

#[test]
fn a_gap_event_of_a_year_resyncs_instead_of_allocating_a_year_of_silence() {
    let (mut h, bus) = harness_with_bus();
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    let started = Instant::now();
    // Before: one silence buffer of 504 GB, and the process aborted.
    assert!(h.push_event(gst::event::Gap::new(ms(100), YEAR)));
    assert!(drain(&mut h).is_empty(), "a year was filled");
    h.push(ramp(0, 80, ms(100) + YEAR)).unwrap();
    let after = h.pull().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(after.pts(), Some(ms(100) + YEAR));
    assert!(after.flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(stat(&h, "resyncs"), 1);
    let warnings = messages_of(&bus, gst::MessageType::Warning);
    assert_eq!(warnings.len(), 1);
    assert!(
        text_of(&warnings[0]).contains("max-gap"),
        "{}",
        text_of(&warnings[0])
    );
}

#[test]
fn a_ten_hour_jump_resyncs_at_once() {
    let (mut h, bus) = harness_with_bus();
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    let jump = ClockTime::from_seconds(10 * 3600);
    let started = Instant::now();
    // Before: 10 h of silence collected in memory, 280 s of CPU, and
    // 65,535 CRITICALs from one memory block shared too often.
    h.push(ramp(5, 160, jump)).unwrap();
    let out = drain(&mut h);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(out.len(), 1, "only the data, no silence");
    assert_eq!(out[0].pts(), Some(jump));
    assert!(out[0].flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(samples_of(&out[0])[0], 5);
    // The timeline goes on from the resync: the next buffer is contiguous.
    h.push(ramp(165, 160, jump + ms(20))).unwrap();
    let next = h.pull().unwrap();
    assert_eq!(next.pts(), Some(jump + ms(20)));
    assert!(!next.flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(stat(&h, "resyncs"), 1);
    assert_eq!(stat(&h, "silence-samples"), 0);
    assert_eq!(messages_of(&bus, gst::MessageType::Warning).len(), 1);
}

#[test]
fn a_jump_within_max_gap_is_filled_one_chunk_at_a_time() {
    let mut h = harness();
    h.element()
        .unwrap()
        .set_property("max-gap", ClockTime::from_seconds(120).nseconds());
    h.push(ramp(0, 160, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    let jump = ClockTime::from_seconds(100);
    h.push(ramp(0, 160, ms(20) + jump)).unwrap();
    let out = drain(&mut h);
    // 100 s in 20 ms chunks, then the data.
    assert_eq!(out.len(), 5001);
    assert!(
        out[..5000]
            .iter()
            .all(|b| b.size() == 320 && b.flags().contains(gst::BufferFlags::GAP))
    );
    assert_contiguous(&out);
    assert_eq!(out[5000].pts(), Some(ms(20) + jump));
    assert_eq!(stat(&h, "silence-samples"), 800_000);
    assert_eq!(stat(&h, "resyncs"), 0);
}

#[test]
fn caps_beyond_the_bounds_are_refused_before_anything_is_allocated() {
    let mut h = harness();
    let huge = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::S16le)
        .rate(i32::MAX)
        .channels(64)
        .build();
    let template = h
        .element()
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .pad_template_caps();
    assert!(!template.can_intersect(&huge), "the template admits {huge}");
    // Before: 5.5 GB allocated for one silence chunk at the caps event. Now
    // the pad refuses them (a sticky event is stored whatever the peer says,
    // so the refusal shows on the next buffer), and `Layout` names the value
    // for any path around the template.
    h.push_event(gst::event::Caps::new(&huge));
    assert_eq!(
        h.push(ramp(0, 160, ClockTime::ZERO)),
        Err(gst::FlowError::NotNegotiated)
    );
    let err = callaudio::Layout::from_caps(&huge).unwrap_err();
    assert!(err.0.contains("2147483647"), "{err}");
}

#[test]
fn the_largest_caps_allowed_fill_with_bounded_buffers() {
    let mut h = harness();
    let caps = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::F64le)
        .rate(768_000)
        .channels(64)
        .build();
    assert!(h.push_event(gst::event::Caps::new(&caps)));
    let mut buffer = gst::Buffer::with_size(512 * 10).unwrap();
    buffer.get_mut().unwrap().set_pts(ClockTime::ZERO);
    h.push(buffer).unwrap();
    h.pull().unwrap();
    // 20 ms missing: 15,360 frames of 512 bytes, 7.8 MB, in bounded pieces.
    let mut later = gst::Buffer::with_size(512).unwrap();
    later
        .get_mut()
        .unwrap()
        .set_pts(callaudio::samples_to_time(10, 768_000) + ms(20));
    h.push(later).unwrap();
    let out = drain(&mut h);
    assert!(out.len() > 2);
    assert!(out.iter().all(|b| b.size() <= 256 * 1024));
    let filled: usize = out[..out.len() - 1].iter().map(|b| b.size()).sum();
    assert_eq!(filled, 15_360 * 512);
}

#[test]
fn a_live_leg_that_never_sends_audio_is_filled_from_the_segment_start() {
    let mut h = harness();
    // Caps and segment are there (set by the harness), no buffer ever.
    let first = crank_expecting(&mut h, ms(200));
    assert_eq!(first.pts(), Some(ClockTime::ZERO));
    assert!(first.flags().contains(gst::BufferFlags::GAP));
    assert!(first.flags().contains(gst::BufferFlags::DISCONT));
    let second = crank_expecting(&mut h, ms(220));
    assert_eq!(second.pts(), Some(ms(20)));
    assert_eq!(stat(&h, "stalls"), 1);
}

#[test]
fn a_stall_after_a_segment_that_moves_the_base_is_filled() {
    let mut h = harness();
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    // Running time goes on from 100 ms with stream time restarting at 0.
    let mut segment = gst::FormattedSegment::<ClockTime>::new();
    segment.set_base(ms(100));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let silence = crank_expecting(&mut h, ms(300));
    assert_eq!(silence.pts(), Some(ClockTime::ZERO));
    assert!(!silence.flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(stat(&h, "stalls"), 1);
}

#[test]
fn a_running_time_hole_across_a_new_segment_is_filled() {
    let mut h = harness();
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    // The new segment starts at running time 150 ms: 50 ms nobody sent.
    let mut segment = gst::FormattedSegment::<ClockTime>::new();
    segment.set_base(ms(150));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let hole = drain(&mut h);
    let filled: u64 = hole.iter().map(|b| samples_of(b).len() as u64).sum();
    assert_eq!(filled, 400);
    assert_eq!(hole[0].pts(), Some(ms(100)));
    // Then the new segment's data, from its start, untouched.
    h.push(ramp(1, 160, ClockTime::ZERO)).unwrap();
    let data = h.pull().unwrap();
    assert_eq!(data.pts(), Some(ClockTime::ZERO));
    assert_eq!(samples_of(&data)[0], 1);
    assert_eq!(stat(&h, "dropped-samples"), 0);
}

#[test]
fn non_live_eos_with_a_segment_stop_and_no_data_pads_to_the_stop() {
    init();
    let mut h = Harness::new("stallfiller");
    h.set_live(false);
    h.set_src_caps(caps(gst_audio::AudioFormat::S16le, RATE, 1));
    let mut segment = gst::FormattedSegment::<ClockTime>::new();
    segment.set_stop(ms(500));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    assert!(h.push_event(gst::event::Eos::new()));
    let out = drain(&mut h);
    assert_contiguous(&out);
    let total: u64 = out.iter().map(|b| samples_of(b).len() as u64).sum();
    assert_eq!(total, 4000);
    assert_eq!(out[0].pts(), Some(ClockTime::ZERO));
}

#[test]
fn reverse_playback_is_refused_at_the_segment() {
    let (mut h, bus) = harness_with_bus();
    let mut segment = gst::FormattedSegment::<ClockTime>::new();
    segment.set_rate(-1.0);
    h.push_event(gst::event::Segment::new(&segment));
    assert!(h.push(ramp(0, 160, ClockTime::ZERO)).is_err());
    assert!(h.try_pull().is_none());
    let errors = messages_of(&bus, gst::MessageType::Error);
    assert!(
        text_of(&errors[0]).contains("Reverse playback"),
        "{}",
        text_of(&errors[0])
    );
}

#[test]
fn stray_bytes_are_cut_to_whole_frames_and_counted() {
    let mut h = harness();
    let mut data: Vec<u8> = (0..160i16).flat_map(|s| s.to_le_bytes()).collect();
    data.push(0x7F);
    let mut buffer = gst::Buffer::from_mut_slice(data);
    buffer.get_mut().unwrap().set_pts(ClockTime::ZERO);
    h.push(buffer).unwrap();
    let out = h.pull().unwrap();
    assert_eq!(out.size(), 320);
    // The next buffer follows the whole frames, not the stray byte.
    h.push(ramp(160, 160, ms(20))).unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(ms(20)));
    assert_eq!(stat(&h, "partial-frame-bytes"), 1);
    assert_eq!(stat(&h, "dropped-samples"), 0);
}

#[test]
fn time_properties_are_bounded() {
    init();
    let filler = gst::ElementFactory::make("stallfiller").build().unwrap();
    for name in ["threshold", "max-gap", "tolerance", "fill-chunk"] {
        let pspec = filler
            .find_property(name)
            .unwrap()
            .downcast::<gst::glib::ParamSpecUInt64>()
            .unwrap();
        assert!(
            pspec.maximum() <= ClockTime::from_seconds(24 * 3600).nseconds(),
            "{name} accepts {} ns",
            pspec.maximum()
        );
    }
}
