// SPDX-License-Identifier: MPL-2.0
//! A stallfiller embedded in another element of the process (as
//! callrecsink's tracks embed theirs): buffers enter through
//! `StallFiller::chain` and leave through the embedded output, skipping two
//! pads, on the test clock. What must hold: one timeline in order (real
//! data and silence alike), the sticky events reach the peer before the
//! first buffer after a link, and the entry refuses what the sink pad would
//! (flushing, after EOS).

use std::sync::mpsc;
use std::time::Duration;

use gst::ClockTime;
use gst::prelude::*;
use gst_check::Harness;
use gststallfiller::StallFiller;

mod common;
use common::*;

/// The filler's own type (not the factory's), with its output collected.
fn embedded(shared: bool) -> (Harness, StallFiller, mpsc::Receiver<gst::Buffer>) {
    init();
    let filler = StallFiller::new();
    filler.set_property("shared-threads", shared);
    let (tx, rx) = mpsc::channel();
    filler.set_embedded_output(Box::new(move |buffer| {
        tx.send(buffer).map_err(|_| gst::FlowError::Flushing)?;
        Ok(gst::FlowSuccess::Ok)
    }));
    let mut h = Harness::with_element(&filler, Some("sink"), Some("src"));
    h.use_testclock();
    h.set_src_caps(caps(gst_audio::AudioFormat::S16le, RATE, 1));
    filler.set_embedded_linked(true);
    (h, filler, rx)
}

fn received(rx: &mpsc::Receiver<gst::Buffer>) -> gst::Buffer {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a buffer at the embedded output")
}

#[test]
fn one_timeline_through_the_embedded_path() {
    for shared in [false, true] {
        let (mut h, filler, rx) = embedded(shared);
        // The first buffer after the link takes the pad: the peer gets the
        // caps and the segment before it.
        h.push(ramp(0, 800, ClockTime::ZERO)).unwrap();
        let first = h.pull().unwrap();
        assert_eq!(first.pts(), Some(ClockTime::ZERO));
        let sink = h.sinkpad().unwrap();
        assert!(sink.sticky_event::<gst::event::Caps>(0).is_some());
        assert!(sink.sticky_event::<gst::event::Segment>(0).is_some());

        // Then buffers go straight to the output, trimmed and stamped.
        filler.chain(ramp(800, 160, ms(100))).unwrap();
        let next = received(&rx);
        assert_eq!((next.pts(), next.offset()), (Some(ms(100)), 800));
        assert_eq!(samples_of(&next), (800..960).collect::<Vec<i16>>());

        // A stall: each 20 ms of silence when it is 200 ms overdue, to the
        // output too.
        let clock = h.testclock().unwrap();
        for k in 0..3u64 {
            let start = ms(120 + 20 * k);
            // Earlier waits (re-armed deadlines) find nothing to fill yet.
            loop {
                let due = clock.wait_for_next_pending_id().time();
                assert!(due <= start + ms(200), "chunk {k} due at {due}");
                h.crank_single_clock_wait().unwrap();
                if due == start + ms(200) {
                    break;
                }
                assert!(rx.try_recv().is_err(), "silence before it was due");
            }
            let silence = received(&rx);
            assert_eq!(silence.pts(), Some(start), "chunk {k}");
            assert!(silence.flags().contains(gst::BufferFlags::GAP));
        }
        // Data that overlaps the silence sent is cut at the exact sample.
        filler.chain(ramp(2000, 320, ms(160))).unwrap();
        let resumed = received(&rx);
        assert_eq!(resumed.pts(), Some(ms(180)));
        assert_eq!(samples_of(&resumed), (2160..2320).collect::<Vec<i16>>());

        // Unlinked from the embedding element: the pad again.
        filler.set_embedded_linked(false);
        filler.chain(ramp(2320, 160, ms(200))).unwrap();
        assert_eq!(h.pull().unwrap().pts(), Some(ms(200)));
        assert!(rx.try_recv().is_err(), "nothing else at the output");
        assert!(h.try_pull().is_none(), "nothing else on the pad");
    }
}

#[test]
fn the_entry_refuses_what_the_sink_pad_would() {
    let (mut h, filler, _rx) = embedded(true);
    h.push(ramp(0, 160, ClockTime::ZERO)).unwrap();
    h.push_event(gst::event::FlushStart::new());
    assert_eq!(
        filler.chain(ramp(160, 160, ms(20))),
        Err(gst::FlowError::Flushing)
    );
    h.push_event(gst::event::FlushStop::new(true));
    h.push_event(gst::event::Segment::new(
        &gst::FormattedSegment::<ClockTime>::new(),
    ));
    filler.chain(ramp(0, 160, ClockTime::ZERO)).unwrap();
    h.push_event(gst::event::Eos::new());
    assert_eq!(
        filler.chain(ramp(160, 160, ms(20))),
        Err(gst::FlowError::Eos)
    );
}
