// SPDX-License-Identifier: MPL-2.0
//! `shared-threads=true`: what only the shared workers need shown, on the
//! test clock: no task of the element's own runs, and a stopped element
//! filled again after a restart. (`harness.rs` runs its core stall tests in
//! both modes.)

use gst::ClockTime;
use gst::prelude::*;
use gst_check::Harness;

mod common;
use common::*;

fn shared_harness() -> Harness {
    harness_with(true)
}

#[test]
fn a_stall_is_filled_on_the_clock_without_a_task() {
    let mut h = shared_harness();
    h.play();
    let src = h.element().unwrap().static_pad("src").unwrap();
    assert_eq!(
        src.task_state(),
        gst::TaskState::Stopped,
        "no task of its own"
    );
    h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
    assert_eq!(h.pull().unwrap().pts(), Some(ClockTime::ZERO));
    for k in 0..50u64 {
        let start = ms(100 + 20 * k);
        let silence = crank_expecting(&mut h, start + ms(200));
        assert_eq!(silence.pts(), Some(start), "chunk {k}");
        assert_eq!(silence.duration(), Some(ms(20)), "chunk {k}");
        assert_eq!(silence.offset(), 800 + 160 * k, "chunk {k}");
        assert!(silence.flags().contains(gst::BufferFlags::GAP));
    }
    assert_eq!(stat(&h, "silence-samples"), 50 * 160);
    assert_eq!(stat(&h, "stalls"), 1);
    assert_eq!(src.task_state(), gst::TaskState::Stopped);
}

#[test]
fn eos_pads_the_tail_and_a_restart_fills_again() {
    let mut h = shared_harness();
    h.play();
    h.push(ramp(0, 160, ClockTime::ZERO)).unwrap();
    h.pull().unwrap();
    crank_expecting(&mut h, ms(220));
    h.push_event(gst::event::Eos::new());
    // Stopped and started again (a new call on the same element): the
    // shared filler serves it again.
    let element = h.element().unwrap();
    element.set_state(gst::State::Null).unwrap();
    h.play();
    h.push_event(gst::event::StreamStart::new("again"));
    h.push_event(gst::event::Caps::new(&caps(
        gst_audio::AudioFormat::S16le,
        RATE,
        1,
    )));
    h.push_event(gst::event::Segment::new(
        &gst::FormattedSegment::<ClockTime>::new(),
    ));
    h.push(ramp(0, 160, ClockTime::ZERO)).unwrap();
    // The clock is already 220 ms on (the first run cranked it there): the
    // new stream's first deadline has passed, and silence comes with no
    // crank (before or after the data, as the filler and the push race).
    let gap = (0..5).find_map(|_| {
        let b = h.pull().unwrap();
        b.flags().contains(gst::BufferFlags::GAP).then_some(b)
    });
    assert_eq!(
        gap.expect("silence after the restart").duration(),
        Some(ms(20))
    );
}
