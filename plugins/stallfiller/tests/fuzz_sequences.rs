// SPDX-License-Identifier: MPL-2.0
//! Fuzz target for `stallfiller`'s inputs: random sequences of buffers
//! (any size, any timestamp jump), GAP events (up to years), segments (any
//! start, base and rate), caps (in and out of bounds) and clock steps, on a
//! `Harness` with its test clock.
//!
//! Properties: nothing panics; every step's output is bounded by what
//! `max-gap` allows; every buffer out has timestamps; and the output is
//! contiguous (each buffer starts where the previous ended) except at a
//! DISCONT or a new segment. What leaves the element is recorded in order by
//! a probe on its source pad: an event the harness holds back (a SEGMENT
//! behind refused caps) takes effect when the element gets it, not when the
//! step pushed it.
//!
//! `cargo test` runs a short pass (`FUZZ_CASES`, default 64 sequences);
//! `FUZZ_CASES=20000 cargo test -p gst-plugin-stallfiller --release --test
//! fuzz_sequences` runs for minutes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::ClockTime;
use gst::prelude::*;
use gst_check::Harness;
use proptest::prelude::*;

mod common;
use common::*;

const MAX_GAP: ClockTime = ClockTime::from_seconds(2);

#[derive(Debug, Clone)]
enum Op {
    /// A buffer `jump_us` after where the last one ended.
    Buffer {
        jump_us: i64,
        bytes: usize,
    },
    Gap {
        jump_us: i64,
        duration_us: u64,
    },
    Segment {
        start_ms: u64,
        base_ms: u64,
        rate: f64,
    },
    Caps {
        format: usize,
        rate: i32,
        channels: i32,
    },
    /// Lets the clock reach the filler's next deadline, if it has one.
    Crank,
}

const FORMATS: [gst_audio::AudioFormat; 4] = [
    gst_audio::AudioFormat::S16le,
    gst_audio::AudioFormat::U8,
    gst_audio::AudioFormat::F32le,
    gst_audio::AudioFormat::F64le,
];

fn jump() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -2_000i64..2_000,
        2 => -100_000i64..3_000_000,
        1 => Just(36_000_000_000i64),
        1 => Just(-36_000_000_000i64),
        1 => any::<i64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (jump(), 0usize..4_000).prop_map(|(jump_us, bytes)| Op::Buffer { jump_us, bytes }),
        2 => (jump(), prop_oneof![0u64..3_000_000, Just(31_536_000_000_000u64), any::<u64>()])
            .prop_map(|(jump_us, duration_us)| Op::Gap { jump_us, duration_us }),
        1 => (0u64..5_000, prop_oneof![0u64..5_000, Just(u64::MAX / 2_000_000)],
              prop_oneof![Just(1.0), Just(2.0), Just(0.5), Just(-1.0)])
            .prop_map(|(start_ms, base_ms, rate)| Op::Segment { start_ms, base_ms, rate }),
        1 => (0..FORMATS.len(), prop_oneof![Just(8000), Just(44_100), Just(768_000), Just(768_001), Just(i32::MAX)],
              prop_oneof![Just(1), Just(2), Just(64), Just(65)])
            .prop_map(|(format, rate, channels)| Op::Caps { format, rate, channels }),
        3 => Just(Op::Crank),
    ]
}

fn config() -> ProptestConfig {
    callaudio_testkit::fuzz::config(64)
}

/// The clock wait pending now (other than `not`), waiting up to 200 ms for
/// one. (`timed_wait_for_multiple_pending_ids` would do, but on GStreamer
/// 1.22 its ids come without the references the binding releases.)
fn next_wait(clock: &gst_check::TestClock, not: Option<&gst::ClockId>) -> Option<gst::ClockId> {
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        if let Some(id) = clock.peek_next_pending_id()
            && Some(&id) != not
        {
            return Some(id);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

/// What left the element, in order.
enum Out {
    Buffer {
        pts: Option<ClockTime>,
        duration: Option<ClockTime>,
        size: usize,
        discont: bool,
    },
    Segment,
}

struct Run {
    h: Harness,
    out: Arc<Mutex<Vec<Out>>>,
    /// Where the next buffer would be contiguous, in stream time.
    next_pts: ClockTime,
    bpf: usize,
    rate: u64,
    /// End of the last output buffer, while the output is checkable.
    out_end: Option<ClockTime>,
}

impl Run {
    fn new() -> Self {
        let h = harness();
        let element = h.element().unwrap();
        element.set_property("max-gap", MAX_GAP.nseconds());
        let out = Arc::new(Mutex::new(Vec::new()));
        let log = out.clone();
        element.static_pad("src").unwrap().add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let item = match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => Out::Buffer {
                        pts: b.pts(),
                        duration: b.duration(),
                        size: b.size(),
                        discont: b.flags().contains(gst::BufferFlags::DISCONT),
                    },
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Segment => {
                        Out::Segment
                    }
                    _ => return gst::PadProbeReturn::Ok,
                };
                log.lock().unwrap().push(item);
                gst::PadProbeReturn::Ok
            },
        );
        Run {
            h,
            out,
            next_pts: ClockTime::ZERO,
            bpf: 2,
            rate: 8000,
            out_end: None,
        }
    }

    fn at(&self, jump_us: i64) -> ClockTime {
        let ns = (jump_us as i128) * 1000 + self.next_pts.nseconds() as i128;
        ClockTime::from_nseconds(ns.clamp(0, (u64::MAX - 1) as i128 / 2) as u64)
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Buffer { jump_us, bytes } => {
                let pts = self.at(jump_us);
                let mut buffer = gst::Buffer::from_mut_slice(vec![0x11u8; bytes]);
                buffer.get_mut().unwrap().set_pts(pts);
                let _ = self.h.push(buffer);
                let frames = (bytes / self.bpf) as u64;
                self.next_pts =
                    pts.saturating_add(callaudio::samples_to_time(frames, self.rate as u32));
            }
            Op::Gap {
                jump_us,
                duration_us,
            } => {
                let pts = self.at(jump_us);
                let duration =
                    ClockTime::from_nseconds(duration_us.saturating_mul(1000).min(u64::MAX / 4));
                self.h.push_event(gst::event::Gap::new(pts, duration));
                self.next_pts = pts.saturating_add(duration);
            }
            Op::Segment {
                start_ms,
                base_ms,
                rate,
            } => {
                let mut segment = gst::FormattedSegment::<ClockTime>::new();
                segment.set_start(ClockTime::from_mseconds(start_ms));
                segment.set_time(ClockTime::from_mseconds(start_ms));
                segment.set_base(ClockTime::from_mseconds(base_ms));
                segment.set_rate(rate);
                self.h.push_event(gst::event::Segment::new(&segment));
                self.next_pts = ClockTime::from_mseconds(start_ms);
            }
            Op::Caps {
                format,
                rate,
                channels,
            } => {
                let caps = gst_audio::AudioCapsBuilder::new_interleaved()
                    .format(FORMATS[format])
                    .rate(rate)
                    .channels(channels)
                    .build();
                self.h.push_event(gst::event::Caps::new(&caps));
                if rate <= 768_000 && channels <= 64 {
                    let info = gst_audio::AudioInfo::from_caps(&caps)
                        .or_else(|_| {
                            let mut c = caps.clone();
                            c.make_mut().set("channel-mask", gst::Bitmask::new(0));
                            gst_audio::AudioInfo::from_caps(&c)
                        })
                        .unwrap();
                    self.bpf = info.bpf() as usize;
                    self.rate = rate as u64;
                }
            }
            Op::Crank => {
                // The filler's next deadline, if it has one; once released,
                // its next wait (armed after the fill is pushed) means the
                // step is over, so every run of a case is the same.
                let clock = self.h.testclock().unwrap();
                if let Some(id) = next_wait(&clock, None) {
                    if id.time() > clock.time() {
                        clock.set_time(id.time());
                    }
                    // (`process_id` would be more direct, but on 1.22 it takes
                    // the reference the binding only lends.)
                    clock.process_next_clock_id();
                    next_wait(&clock, Some(&id));
                }
            }
        }
    }

    /// Takes what the last step put out and checks it.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        // A step may fill a jump of up to max-gap and then (a GAP event)
        // its own span of up to max-gap; a clock step may catch up up to
        // max-gap; plus a second of slack, plus what came in.
        let most = (3 * MAX_GAP + ClockTime::from_seconds(1)).nseconds() as u128 * 768_000 * 512
            / 1_000_000_000
            + 8_000;
        while self.h.try_pull().is_some() {}
        while self.h.try_pull_event().is_some() {}
        let out = std::mem::take(&mut *self.out.lock().unwrap());
        let mut bytes: u128 = 0;
        for item in out {
            let Out::Buffer {
                pts,
                duration,
                size,
                discont,
            } = item
            else {
                self.out_end = None;
                continue;
            };
            bytes += size as u128;
            prop_assert!(bytes <= most, "a step put out {bytes} bytes");
            prop_assert!(pts.is_some() && duration.is_some(), "no timestamps");
            let (pts, duration) = (pts.unwrap(), duration.unwrap());
            if let Some(end) = self.out_end
                && !discont
            {
                prop_assert_eq!(pts, end, "hole or overlap in the output");
            }
            self.out_end = pts.checked_add(duration);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_input_sequences(ops in prop::collection::vec(op(), 1..40)) {
        let mut run = Run::new();
        for (i, op) in ops.iter().enumerate() {
            run.apply(op);
            run.drain().map_err(|e| TestCaseError::fail(format!("step {i} ({op:?}): {e}")))?;
        }
        run.h.push_event(gst::event::Eos::new());
        run.drain().map_err(|e| TestCaseError::fail(format!("at EOS: {e}")))?;
    }
}

/// Sequences the fuzzer found, replayed on every `cargo test`.
#[test]
fn replay_found_sequences() {
    use Op::*;
    let found: Vec<Vec<Op>> = vec![
        // A timeline near the top of the range in a rate-0.5 segment: its
        // running time saturated and the stall task filled without end.
        vec![
            Segment {
                start_ms: 0,
                base_ms: 0,
                rate: 0.5,
            },
            Buffer {
                jump_us: 9_192_107_962_375_307,
                bytes: 1904,
            },
            Caps {
                format: 0,
                rate: 768_000,
                channels: 64,
            },
            Gap {
                jump_us: 0,
                duration_us: 31_536_000_000_000,
            },
            Crank,
        ],
        // A segment based 292 years out, then one based near zero at rate
        // 2: the clock was beyond what the segment could express.
        vec![
            Segment {
                start_ms: 345,
                base_ms: 9_223_372_036_854,
                rate: 1.0,
            },
            Buffer {
                jump_us: 36_000_000_000,
                bytes: 853,
            },
            Gap {
                jump_us: 282_213,
                duration_us: 35_034,
            },
            Crank,
            Segment {
                start_ms: 685,
                base_ms: 2753,
                rate: 2.0,
            },
            Caps {
                format: 1,
                rate: 768_000,
                channels: 64,
            },
            Crank,
            Gap {
                jump_us: 2_591_854,
                duration_us: 17_971_651_490_740_455_004,
            },
            Crank,
        ],
        // Refused caps hold a later SEGMENT back until EOS.
        vec![
            Caps {
                format: 0,
                rate: 768_001,
                channels: 1,
            },
            Segment {
                start_ms: 0,
                base_ms: 0,
                rate: 2.0,
            },
            Caps {
                format: 0,
                rate: 8000,
                channels: 1,
            },
            Crank,
            Buffer {
                jump_us: 0,
                bytes: 0,
            },
        ],
        // A hole between segments, filled in the old one.
        vec![
            Buffer {
                jump_us: 1_447_875,
                bytes: 1106,
            },
            Segment {
                start_ms: 0,
                base_ms: 1518,
                rate: 1.0,
            },
            Buffer {
                jump_us: 0,
                bytes: 2,
            },
        ],
    ];
    for ops in found {
        let mut run = Run::new();
        for (i, op) in ops.iter().enumerate() {
            run.apply(op);
            run.drain()
                .unwrap_or_else(|e| panic!("step {i} ({op:?}): {e}"));
        }
        run.h.push_event(gst::event::Eos::new());
        run.drain().unwrap_or_else(|e| panic!("at EOS: {e}"));
    }
}
