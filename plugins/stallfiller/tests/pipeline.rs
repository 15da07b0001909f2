// SPDX-License-Identifier: MPL-2.0
//! `stallfiller` in real pipelines: live `audiotestsrc`, a `valve` that
//! stalls it, `appsink` recording what came out and when.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::ClockTime;
use gst::prelude::*;

const RATE: u64 = 8000;
const BUFFER: ClockTime = ClockTime::from_mseconds(20);

fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gststallfiller::plugin_register_static().unwrap();
    });
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    pts: ClockTime,
    duration: ClockTime,
    gap: bool,
    /// Running time of the pipeline when the buffer reached the sink.
    arrived: ClockTime,
}

/// Records every buffer reaching appsink `name`, with its arrival time.
fn record(pipeline: &gst::Pipeline, name: &str) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let seen2 = seen.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().unwrap();
                seen2.lock().unwrap().push(Seen {
                    pts: buffer.pts().unwrap(),
                    duration: buffer.duration().unwrap(),
                    gap: buffer.flags().contains(gst::BufferFlags::GAP),
                    arrived: sink.current_running_time().unwrap_or(ClockTime::ZERO),
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    seen
}

fn wait_for_eos(pipeline: &gst::Pipeline) {
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no EOS within 10 s");
    if let gst::MessageView::Error(err) = msg.view() {
        panic!("pipeline error: {} ({:?})", err.error(), err.debug());
    }
}

fn assert_continuous(seen: &[Seen]) {
    for pair in seen.windows(2) {
        assert_eq!(
            pair[0].pts + pair[0].duration,
            pair[1].pts,
            "gap or overlap between {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

fn end_of(seen: &[Seen]) -> ClockTime {
    let last = seen.last().unwrap();
    last.pts + last.duration
}

type Recorded = Arc<Mutex<Vec<Seen>>>;

/// Two live tracks, caller and agent, each behind a valve, recorded.
fn caller_and_agent() -> (gst::Pipeline, Recorded, Recorded) {
    caller_and_agent_apart(ClockTime::ZERO)
}

/// The same, the agent's buffers stamped `apart` later than its source
/// stamps them: a source whose buffer boundaries are not the caller's.
fn caller_and_agent_apart(apart: ClockTime) -> (gst::Pipeline, Recorded, Recorded) {
    let desc = format!(
        "{} {}",
        live_branch("caller", 440),
        live_branch("agent", 660)
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    if apart > ClockTime::ZERO {
        let valve = pipeline.by_name("valve_agent").unwrap();
        valve
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
                    let buffer = buffer.make_mut();
                    buffer.set_pts(buffer.pts().map(|pts| pts + apart));
                }
                gst::PadProbeReturn::Ok
            });
    }
    let caller = record(&pipeline, "sink_caller");
    let agent = record(&pipeline, "sink_agent");
    (pipeline, caller, agent)
}

fn live_branch(name: &str, freq: u32) -> String {
    format!(
        "audiotestsrc is-live=true samplesperbuffer=160 freq={freq} ! audio/x-raw,format=S16LE,rate={RATE},channels=1 \
         ! valve name=valve_{name} drop-mode=forward-sticky-events ! stallfiller name=filler_{name} \
         ! appsink name=sink_{name} sync=false"
    )
}

#[test]
fn live_stall_is_filled_while_it_lasts() {
    init();
    let pipeline = gst::parse::launch(&live_branch("a", 440))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let seen = record(&pipeline, "sink_a");
    let valve = pipeline.by_name("valve_a").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();

    std::thread::sleep(Duration::from_secs(1));
    valve.set_property("drop", true);
    std::thread::sleep(Duration::from_secs(2));
    let reopened_at = pipeline.current_running_time().unwrap();
    valve.set_property("drop", false);
    std::thread::sleep(Duration::from_secs(1));
    let eos_sent_at = pipeline.current_running_time().unwrap();
    pipeline.send_event(gst::event::Eos::new());
    wait_for_eos(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_continuous(&seen);

    // The silence came while the stall lasted, each chunk when its deadline
    // (pts + upstream latency 20 ms + threshold 200 ms) passed: not in a burst
    // when data came back.
    let during: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.gap && s.arrived < reopened_at)
        .collect();
    let filled: ClockTime = during.iter().map(|s| s.duration).sum();
    assert!(
        filled >= ClockTime::from_mseconds(1500),
        "only {filled} of silence arrived during a 2 s stall"
    );
    for s in &during {
        let deadline = s.pts + BUFFER + ClockTime::from_mseconds(200);
        assert!(
            s.arrived + ClockTime::from_mseconds(2) >= deadline,
            "silence {s:?} pushed before its deadline"
        );
        assert!(
            s.arrived <= deadline + ClockTime::from_mseconds(100),
            "silence {s:?} pushed long after its deadline"
        );
    }

    // One continuous timeline as long as the wall clock ran, within a
    // buffer, and ending at the last real sample: a track fed to its end
    // gets no tail of silence at EOS.
    let total = end_of(&seen) - seen[0].pts;
    let wall = eos_sent_at - seen[0].pts;
    let diff = total.nseconds().abs_diff(wall.nseconds());
    assert!(
        diff <= BUFFER.nseconds(),
        "output {total} vs wall clock {wall}"
    );
    assert!(
        !seen.last().unwrap().gap,
        "silence after the last real sample"
    );

    let stats = pipeline
        .by_name("filler_a")
        .unwrap()
        .property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("stalls").unwrap(), 1);
    let longest = ClockTime::from_nseconds(stats.get::<u64>("longest-stall").unwrap());
    assert!(
        longest >= ClockTime::from_mseconds(1900) && longest <= ClockTime::from_mseconds(2100),
        "{longest}"
    );
}

/// The production failure: one track stalls 14 s and never comes back, and
/// the recording stops. Both tracks must end at the same sample.
///
/// The pipeline runs on a `GstTestClock` that follows the wall clock in 2 ms
/// steps, releasing every wait that falls due, and is frozen just before EOS: EOS then reaches both tracks at the
/// same running time, which is the condition under which the element promises
/// equal ends (with a free-running clock the ends differ by however long EOS
/// takes to travel from one source to the other).
#[test]
fn two_tracks_one_stalls_14_s_and_both_end_together() {
    const STALL_SECS: u64 = 14;
    init();
    let (pipeline, caller, agent) = caller_and_agent();
    let clock = gst_check::TestClock::new();
    pipeline.use_clock(Some(&clock));

    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = {
        let clock = clock.clone();
        let frozen = frozen.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !frozen.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
                clock.set_time(ClockTime::from_nseconds(start.elapsed().as_nanos() as u64));
                // A test clock releases waits only when told to.
                while clock.process_next_clock_id().is_some() {}
            }
        })
    };

    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    pipeline
        .by_name("valve_agent")
        .unwrap()
        .set_property("drop", true);
    std::thread::sleep(Duration::from_secs(STALL_SECS));
    frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    driver.join().unwrap();
    // audiotestsrc hands out a buffer as soon as its *start* time comes (a
    // capture source would wait for its end), so freeze just before a buffer
    // boundary: then the flowing track's data ends exactly at the boundary.
    // In running time, which buffers carry: the clock's time less the base
    // time the pipeline took at PLAYING (a few ms of the driver's steps, or
    // none, as it happens).
    let base = pipeline.base_time().unwrap();
    let running = clock.time() - base;
    let boundary = (running.nseconds() / BUFFER.nseconds() + 2) * BUFFER.nseconds();
    let eos_at = ClockTime::from_nseconds(boundary - 1_000);
    clock.set_time(base + eos_at);
    while clock.process_next_clock_id().is_some() {}
    // EOS once the flowing track's data has reached the frozen clock (its
    // last buffer began before it): a loaded machine may take its time to
    // get there, and EOS before it would end that track early. (Both tracks
    // are then filled to the same sample at EOS.) Before, a fixed 100 ms
    // sleep, and an `eos_at` in clock time: the test failed whenever the
    // base time was not 0.
    let one_sample = ClockTime::SECOND.nseconds() / RATE;
    let due = eos_at;
    let deadline = Instant::now() + Duration::from_secs(10);
    while caller
        .lock()
        .unwrap()
        .last()
        .is_none_or(|s| s.pts + s.duration < due)
        && Instant::now() < deadline
    {
        while clock.process_next_clock_id().is_some() {}
        std::thread::sleep(Duration::from_millis(10));
    }
    pipeline.send_event(gst::event::Eos::new());
    wait_for_eos(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();

    let caller = caller.lock().unwrap().clone();
    let agent = agent.lock().unwrap().clone();
    assert_continuous(&caller);
    assert_continuous(&agent);
    let (caller_end, agent_end) = (end_of(&caller), end_of(&agent));
    assert!(
        caller_end.nseconds().abs_diff(agent_end.nseconds()) <= one_sample,
        "caller ends at {caller_end}, agent at {agent_end}"
    );
    // The caller ends at its last real sample, the buffer boundary after
    // EOS (audiotestsrc hands a buffer out at its start); the stalled agent
    // is padded to where its data would have reached: the same boundary.
    let boundary = ClockTime::from_nseconds(boundary);
    assert_eq!(caller_end, boundary, "EOS at {eos_at}");
    assert!(
        !caller.last().unwrap().gap,
        "silence after the caller's last sample"
    );

    // The agent's silence was delivered during the stall, not at the end.
    let stall_silence: ClockTime = agent
        .iter()
        .filter(|s| s.gap && s.arrived < eos_at)
        .map(|s| s.duration)
        .sum();
    let expected = ClockTime::from_seconds(STALL_SECS) - ClockTime::from_mseconds(500);
    assert!(
        stall_silence >= expected,
        "only {stall_silence} filled during a {STALL_SECS} s stall"
    );
}

#[test]
fn non_live_holes_and_tail_are_filled_reactively() {
    init();
    let pipeline = gst::parse::launch(
        "audiotestsrc samplesperbuffer=160 ! audio/x-raw,format=S16LE,rate=8000,channels=1 \
         ! identity name=holes ! stallfiller name=filler ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let seen = record(&pipeline, "sink");
    // Lose 100 ms in the middle and the last 100 ms before the segment stop.
    let holes = pipeline
        .by_name("holes")
        .unwrap()
        .static_pad("src")
        .unwrap();
    holes.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        let pts = info.buffer().unwrap().pts().unwrap();
        let lost = (ClockTime::from_mseconds(200)..ClockTime::from_mseconds(300)).contains(&pts)
            || pts >= ClockTime::from_mseconds(900);
        if lost {
            gst::PadProbeReturn::Drop
        } else {
            gst::PadProbeReturn::Ok
        }
    });
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline.state(ClockTime::from_seconds(5)).0.unwrap();
    pipeline
        .seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            ClockTime::ZERO,
            gst::SeekType::Set,
            ClockTime::SECOND,
        )
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    wait_for_eos(&pipeline);
    let stats = pipeline
        .by_name("filler")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_continuous(&seen);
    assert_eq!(seen[0].pts, ClockTime::ZERO);
    assert_eq!(end_of(&seen), ClockTime::SECOND);
    let silence: ClockTime = seen.iter().filter(|s| s.gap).map(|s| s.duration).sum();
    assert_eq!(silence, ClockTime::from_mseconds(200));
    assert_eq!(stats.get::<u64>("silence-samples").unwrap(), 1600);
    assert_eq!(
        stats.get::<u64>("stalls").unwrap(),
        0,
        "a non-live stream never stalls on the clock"
    );
}

#[test]
fn stopping_while_a_stall_is_filled_is_prompt() {
    init();
    let pipeline = gst::parse::launch(&live_branch("a", 440))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let seen = record(&pipeline, "sink_a");
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    pipeline
        .by_name("valve_a")
        .unwrap()
        .set_property("drop", true);
    // Let the filler get going.
    let start = Instant::now();
    while !seen.lock().unwrap().iter().any(|s| s.gap) {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no silence during the stall"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "set_state(Null) took {took:?}"
    );
}

/// Waits for an ERROR from `name` for at most `within`; its text.
fn error_from(pipeline: &gst::Pipeline, name: &str, within: Duration) -> Option<String> {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let msg = bus.timed_pop_filtered(
            ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Error],
        )?;
        if let gst::MessageView::Error(err) = msg.view()
            && msg.src().is_some_and(|s| s.name() == name)
        {
            return Some(format!("{} | {:?}", err.error(), err.debug()));
        }
    }
    None
}

#[test]
fn one_elements_huge_threshold_never_stops_another_pipeline_from_filling() {
    init();
    let launch = |desc: String| {
        gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap()
    };
    // What a gst-launch line would try: GLib refuses the value as out of
    // range (it used to be accepted and overflowed every deadline sum).
    let a = launch(
        live_branch("a", 440).replace("stallfiller ", "stallfiller threshold=9223372036854775807 "),
    );
    let b = launch(live_branch("b", 660));
    let huge = a.by_name("filler_a").unwrap();
    assert_eq!(huge.property::<u64>("threshold"), 200_000_000);
    huge.set_property("threshold", 3600 * ClockTime::SECOND.nseconds());
    // (appsink holds EOS until every sample is pulled: read both.)
    let _a_seen = record(&a, "sink_a");
    let b_seen = record(&b, "sink_b");
    a.set_state(gst::State::Playing).unwrap();
    b.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for (p, name) in [(&a, "valve_a"), (&b, "valve_b")] {
        p.by_name(name).unwrap().set_property("drop", true);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let b_silence = b_seen.lock().unwrap().iter().filter(|s| s.gap).count();
    assert!(b_silence >= 30, "b filled only {b_silence} chunks");
    // The huge-threshold element still ends, and still answers.
    let started = Instant::now();
    a.send_event(gst::event::Eos::new());
    wait_for_eos(&a);
    assert!(started.elapsed() < Duration::from_secs(2));
    let stats = huge.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("stalls").unwrap(), 0);
    a.set_state(gst::State::Null).unwrap();
    b.set_state(gst::State::Null).unwrap();
}

/// Caller and agent (the agent's buffers `apart` later), the agent's
/// dropped from 1 s, EOS `stalled` later: what each recorded, both
/// continuous, and where each ends.
fn agent_stalled_at_eos(apart: ClockTime, stalled: Duration) -> (ClockTime, ClockTime) {
    let (pipeline, caller, agent) = caller_and_agent_apart(apart);
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    pipeline
        .by_name("valve_agent")
        .unwrap()
        .set_property("drop", true);
    std::thread::sleep(stalled);
    pipeline.send_event(gst::event::Eos::new());
    wait_for_eos(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    let caller = caller.lock().unwrap().clone();
    let agent = agent.lock().unwrap().clone();
    assert_continuous(&caller);
    assert_continuous(&agent);
    let (caller_end, agent_end) = (end_of(&caller), end_of(&agent));
    println!("caller ends at {caller_end}, agent at {agent_end}");
    (caller_end, agent_end)
}

#[test]
fn live_tracks_end_together_on_a_free_running_clock() {
    init();
    // EOS at 4 s.
    let (caller_end, agent_end) = agent_stalled_at_eos(ClockTime::ZERO, Duration::from_secs(3));
    // Reach alone: 16.5-19.4 ms apart (one source buffer) in some runs,
    // 1-3 ms (the sources' start apart) in 5 of 14 with both cores busy.
    assert!(
        caller_end.nseconds().abs_diff(agent_end.nseconds()) <= ClockTime::MSECOND.nseconds(),
        "caller ends at {caller_end}, agent at {agent_end}"
    );
}

#[test]
fn a_stalled_track_ends_with_a_parallel_track_of_another_phase() {
    init();
    // The agent's buffers are due 7 ms after the caller's: its own buffer
    // boundaries are 7 or 13 ms from the caller's end.
    let (caller_end, agent_end) =
        agent_stalled_at_eos(ClockTime::from_mseconds(7), Duration::from_millis(1500));
    // To the agent's sample (125 us at 8 kHz): the caller's end is on
    // neither grid of the agent.
    assert!(
        caller_end.nseconds().abs_diff(agent_end.nseconds()) < 125_000,
        "caller ends at {caller_end}, agent at {agent_end}"
    );
}

#[test]
fn a_failed_silence_push_is_an_error_while_the_stall_lasts() {
    init();
    let pipeline = gst::parse::launch(&live_branch("a", 440))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink_a")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    // Downstream breaks on the first silence buffer.
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(|sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if sample
                    .buffer()
                    .unwrap()
                    .flags()
                    .contains(gst::BufferFlags::GAP)
                {
                    return Err(gst::FlowError::Error);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    pipeline
        .by_name("valve_a")
        .unwrap()
        .set_property("drop", true);
    // Upstream stays stalled: before, the error waited for its next buffer.
    let error = error_from(&pipeline, "filler_a", Duration::from_secs(3));
    pipeline.set_state(gst::State::Null).unwrap();
    let error = error.expect("no ERROR from the filler while the stall lasted");
    assert!(error.contains("Internal data stream error"), "{error}");
    assert!(error.contains("Error"), "{error}");
}
