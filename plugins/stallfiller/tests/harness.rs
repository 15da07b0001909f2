// SPDX-License-Identifier: MPL-2.0
//! `stallfiller` driven by `gst_check::Harness` and its test clock: every
//! clock wait is cranked by hand, so timestamps and sample values are exact.
//!
//! The harness's source pad answers the LATENCY query as live with zero
//! latency, so the element runs in its live mode here.

use gst::ClockTime;
use gst::prelude::*;
use gst_check::Harness;

mod common;
use common::*;

#[test]
fn stall_is_filled_on_the_clock_with_exact_timestamps() {
    // The filler's own task, and the workers shared by every stallfiller.
    for shared in [false, true] {
        stall_is_filled(harness_with(shared));
    }
}

fn stall_is_filled(mut h: Harness) {
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    let first = h.pull().unwrap();
    assert_eq!(first.pts(), Some(ClockTime::ZERO));
    assert!(first.flags().contains(gst::BufferFlags::DISCONT));

    // 3 s of stall: 150 chunks of 20 ms, each pushed when the sample it
    // replaces is 200 ms (the threshold) overdue.
    for k in 0..150u64 {
        let start = ms(100 + 20 * k);
        let silence = crank_expecting(&mut h, start + ms(200));
        assert_eq!(silence.pts(), Some(start), "chunk {k}");
        assert_eq!(silence.duration(), Some(ms(20)), "chunk {k}");
        assert_eq!(silence.offset(), 800 + 160 * k, "chunk {k}");
        assert_eq!(silence.offset_end(), 800 + 160 * (k + 1), "chunk {k}");
        assert!(silence.flags().contains(gst::BufferFlags::GAP));
        assert!(!silence.flags().contains(gst::BufferFlags::DISCONT));
        assert!(samples_of(&silence).iter().all(|&s| s == 0));
    }
    assert_eq!(stat(&h, "silence-samples"), 150 * 160);
    assert_eq!(stat(&h, "stalls"), 1);
}

#[test]
fn late_data_is_trimmed_at_the_exact_sample() {
    for shared in [false, true] {
        late_data_is_trimmed(harness_with(shared));
    }
}

fn late_data_is_trimmed(mut h: Harness) {
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    // Stall long enough for 5 chunks: output now ends at 200 ms.
    for k in 0..5u64 {
        crank_expecting(&mut h, ms(300 + 20 * k));
    }
    // Data comes back late: 100 ms starting at 150 ms. Its first 50 ms were
    // replaced by silence already; the rest must come out unharmed.
    h.push(ramp(1000, 800, ms(150))).unwrap();
    let resumed = h.pull().unwrap();
    assert_eq!(resumed.pts(), Some(ms(200)));
    assert_eq!(resumed.duration(), Some(ms(50)));
    assert_eq!(resumed.offset(), 1600);
    assert!(!resumed.flags().contains(gst::BufferFlags::GAP));
    assert!(!resumed.flags().contains(gst::BufferFlags::DISCONT));
    let expected: Vec<i16> = (1400..1800).collect();
    assert_eq!(samples_of(&resumed), expected);

    // A buffer wholly in the past is dropped, the next one is contiguous.
    h.push(ramp(5000, 160, ms(100))).unwrap();
    h.push(ramp(1800, 80, ms(250))).unwrap();
    let next = h.pull().unwrap();
    assert_eq!(next.pts(), Some(ms(250)));
    assert_eq!(samples_of(&next), (1800..1880).collect::<Vec<i16>>());

    let s = stats(&h);
    assert_eq!(s.get::<u64>("in-samples").unwrap(), 800 + 800 + 160 + 80);
    assert_eq!(s.get::<u64>("dropped-samples").unwrap(), 400 + 160);
    assert_eq!(s.get::<u64>("silence-samples").unwrap(), 800);
    assert_eq!(s.get::<u64>("out-samples").unwrap(), 800 + 800 + 400 + 80);
    assert_eq!(s.get::<u64>("stalls").unwrap(), 1);
    assert_eq!(s.get::<u64>("longest-stall").unwrap(), ms(100).nseconds());
}

#[test]
fn stall_and_resume_are_posted_on_the_bus() {
    let mut h = harness();
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    crank_expecting(&mut h, ms(300));
    crank_expecting(&mut h, ms(320));
    h.push(ramp(0, 160, ms(140))).unwrap();
    h.pull().unwrap();
    let names: Vec<(String, gst::Structure)> = std::iter::from_fn(|| bus.pop())
        .filter_map(|m| m.structure().map(|s| (s.name().to_string(), s.to_owned())))
        .collect();
    let stall = &names
        .iter()
        .find(|(n, _)| n == "stallfiller-stall")
        .expect("stall message")
        .1;
    assert_eq!(stall.get::<ClockTime>("timestamp").unwrap(), ms(100));
    let resumed = &names
        .iter()
        .find(|(n, _)| n == "stallfiller-resumed")
        .expect("resumed message")
        .1;
    assert_eq!(resumed.get::<ClockTime>("duration").unwrap(), ms(40));
}

#[test]
fn short_hole_gets_reactive_silence() {
    let mut h = harness();
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    // 30 ms hole, below the threshold: no clock fill, silence when data comes.
    h.push(ramp(0, 160, ms(130))).unwrap();
    let silence = h.pull().unwrap();
    assert_eq!(silence.pts(), Some(ms(100)));
    assert_eq!(silence.duration(), Some(ms(20)));
    let silence2 = h.pull().unwrap();
    assert_eq!(silence2.pts(), Some(ms(120)));
    assert_eq!(silence2.duration(), Some(ms(10)));
    let data = h.pull().unwrap();
    assert_eq!(data.pts(), Some(ms(130)));
    assert_eq!(stat(&h, "stalls"), 0);
}

#[test]
fn gap_event_becomes_silence() {
    let mut h = harness();
    h.push(ramp(7, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    assert!(h.push_event(gst::event::Gap::new(ms(100), ms(50))));
    let mut covered = ClockTime::ZERO;
    let mut expected_pts = ms(100);
    while covered < ms(50) {
        let b = h.pull().unwrap();
        assert_eq!(b.pts(), Some(expected_pts));
        assert!(b.flags().contains(gst::BufferFlags::GAP));
        assert!(samples_of(&b).iter().all(|&s| s == 0));
        covered += b.duration().unwrap();
        expected_pts += b.duration().unwrap();
    }
    assert_eq!(covered, ms(50));
    h.push(ramp(0, 80, ms(150))).unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(ms(150)));
    assert_eq!(stat(&h, "silence-samples"), 400);
}

#[test]
fn eos_after_real_data_adds_no_tail() {
    let mut h = harness();
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    // EOS when the clock says 170 ms, before any fill was due: the track
    // was fed to its end, so it ends at its last real sample, whatever the
    // clock or the latency say.
    h.testclock().unwrap().set_time(ms(170));
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(h.try_pull().is_none(), "silence after the last real sample");
    assert_eq!(stat(&h, "out-samples"), 800);
    assert_eq!(stat(&h, "silence-samples"), 0);
    let mut saw_eos = false;
    while let Some(ev) = h.try_pull_event() {
        saw_eos |= ev.type_() == gst::EventType::Eos;
    }
    assert!(saw_eos);
}

#[test]
fn a_track_stalled_at_eos_is_padded_to_where_its_data_would_have_reached() {
    let mut h = harness();
    // 100 ms of data pushed when the clock says 0: it runs 100 ms ahead.
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    // It stalls; the first chunk of silence at its deadline (100 + 200 ms).
    crank_expecting(&mut h, ms(300));
    // EOS at 400 ms: its data would have reached 400 + 100 ms.
    h.testclock().unwrap().set_time(ms(400));
    assert!(h.push_event(gst::event::Eos::new()));
    let mut end = ms(120);
    while let Some(b) = h.try_pull() {
        assert_eq!(b.pts(), Some(end));
        assert!(b.flags().contains(gst::BufferFlags::GAP));
        end += b.duration().unwrap();
    }
    assert_eq!(end, ms(500));
    assert_eq!(stat(&h, "out-samples"), 4000);
}

#[test]
fn caps_change_continues_the_timeline() {
    let mut h = harness();
    h.push(ramp(0, 801, ClockTime::ZERO)).unwrap();
    let first = h.pull().unwrap();
    let end = first.pts().unwrap() + first.duration().unwrap();
    assert_eq!(end, ClockTime::from_nseconds(100_125_000));
    h.set_src_caps(caps(gst_audio::AudioFormat::S16le, 16000, 1));
    let data: Vec<u8> = (0..320i16).flat_map(|i| i.to_le_bytes()).collect();
    let mut b = gst::Buffer::from_mut_slice(data);
    b.get_mut().unwrap().set_pts(end);
    h.push(b).unwrap();
    let second = h.pull().unwrap();
    assert_eq!(second.pts(), Some(end));
    assert_eq!(second.duration(), Some(ms(20)));
    assert_eq!(second.offset(), 1602);
    assert_eq!(samples_of(&second), (0..320).collect::<Vec<i16>>());
    // The stall after the change is filled at the new rate.
    let silence = crank_expecting(&mut h, end + ms(20) + ms(200));
    assert_eq!(silence.pts(), Some(end + ms(20)));
    assert_eq!(silence.size(), 320 * 2);
}

#[test]
fn every_raw_format_fills_its_own_silence() {
    init();
    let formats: Vec<_> = gst_audio::AudioFormat::iter_raw()
        .filter(|f| gst_audio::AudioFormatInfo::from_format(*f).width() > 0)
        .collect();
    for format in formats {
        let mut h = Harness::new("stallfiller");
        h.use_testclock();
        let c = caps(format, RATE, 2);
        let layout = callaudio::Layout::from_caps(&c).unwrap();
        h.set_src_caps(c);
        let mut first = gst::Buffer::with_size(layout.byte_offset(80)).unwrap();
        first.get_mut().unwrap().set_pts(ClockTime::ZERO);
        h.push(first).unwrap();
        h.pull().unwrap();
        let silence = crank_expecting(&mut h, ms(10 + 200));
        let mut expected = vec![0u8; layout.byte_offset(160)];
        gst_audio::AudioFormatInfo::from_format(format).fill_silence(&mut expected);
        assert_eq!(
            silence.map_readable().unwrap().as_slice(),
            &expected[..],
            "{format:?}"
        );
    }
    for (name, byte) in [("audio/x-mulaw", 0xFFu8), ("audio/x-alaw", 0xD5)] {
        let mut h = Harness::new("stallfiller");
        h.use_testclock();
        h.set_src_caps(
            gst::Caps::builder(name)
                .field("rate", 8000)
                .field("channels", 1)
                .build(),
        );
        let mut first = gst::Buffer::with_size(80).unwrap();
        first.get_mut().unwrap().set_pts(ClockTime::ZERO);
        h.push(first).unwrap();
        h.pull().unwrap();
        let silence = crank_expecting(&mut h, ms(10 + 200));
        assert!(
            silence.map_readable().unwrap().iter().all(|&b| b == byte),
            "{name}"
        );
    }
}

#[test]
fn latency_includes_the_threshold() {
    let mut h = harness();
    h.set_upstream_latency(ms(20));
    h.element()
        .unwrap()
        .set_property("threshold", ms(150).nseconds());
    let mut q = gst::query::Latency::new();
    assert!(h.sinkpad().unwrap().peer_query(&mut q));
    let (live, min, _max) = q.result();
    assert!(live);
    assert_eq!(min, ms(170));

    // The deadline follows: upstream latency + threshold after the sample.
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    crank_expecting(&mut h, ms(100 + 20 + 150));
}

#[test]
fn flush_resets_the_timeline() {
    let mut h = harness();
    h.push(ramp(0, 800, ms(500))).unwrap();
    h.pull().unwrap();
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    h.push(ramp(0, 800, ms(100))).unwrap();
    let b = h.pull().unwrap();
    assert_eq!(b.pts(), Some(ms(100)));
    assert!(b.flags().contains(gst::BufferFlags::DISCONT));
}

#[test]
fn steady_passthrough_does_not_copy_audio() {
    let mut h = harness();
    let mut pts = ClockTime::ZERO;
    for k in 0..10 {
        let input = ramp(k * 160, 160, pts);
        let data = input.map_readable().unwrap().as_ptr();
        h.push(input).unwrap();
        let output = h.pull().unwrap();
        assert_eq!(
            output.map_readable().unwrap().as_ptr(),
            data,
            "buffer {k} was copied"
        );
        pts += ms(20);
    }
}
