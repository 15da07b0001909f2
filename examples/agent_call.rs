// SPDX-License-Identifier: MPL-2.0
//! A whole call, as a SIP or media server runs one: the caller's RTP audio
//! (PCMU, 8 kHz) goes to a Pipecat bot, the bot's audio goes back to the
//! caller as RTP, and both legs (caller left, bot right) are recorded. Keys
//! the caller presses (RFC 2833 telephone-events on the same RTP port) go to
//! the bot as DTMF.
//!
//!     cargo run --example agent_call -- --bot-uri ws://127.0.0.1:8765/ \
//!         --rtp-in 5004 --rtp-out 127.0.0.1:5006 --output /tmp/call.wav \
//!         [--serializer protobuf] [--no-media-timeout 5] [--jitter-latency 40]
//!
//! The call ends when the bot hangs up, when the caller's RTP stops for
//! `--no-media-timeout`, or on Ctrl+C / SIGTERM. Every path finalizes the
//! recording; the exit status says how it went:
//!   0  the recording was finalized
//!   1  the recording failed (nothing usable was saved)
//!   2  bad arguments

use std::process::ExitCode;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

struct Options {
    bot_uri: String,
    serializer: String,
    rtp_in: u16,
    rtp_out: String,
    output: String,
    no_media_timeout: Duration,
    jitter_latency_ms: u32,
    dtmf_pt: u32,
}

const USAGE: &str = "\
Usage: agent_call --bot-uri URI [options]

A phone call with a Pipecat bot: the caller's RTP (PCMU) goes to the bot,
the bot's audio goes back as RTP, and both legs are recorded.

Options:
  --bot-uri URI            ws:// or wss:// address of the bot (required)
  --serializer NAME        protobuf, twilio, telnyx, telnyx-pcma, plivo, exotel,
                           vonage or genesys (default protobuf)
  --rtp-in PORT            UDP port the caller's RTP arrives on (default 5004)
  --rtp-out HOST:PORT      where the bot's RTP goes (default 127.0.0.1:5006)
  --output FILE            the recording, caller left, bot right (default call.wav)
  --no-media-timeout SECS  end the call when the caller's RTP stops this long
                           (default 5)
  --jitter-latency MS      rtpjitterbuffer latency (default 40)
  --dtmf-pt PT             RTP payload type of the caller's telephone-events,
                           sent to the bot as DTMF (default 101)
  -h, --help               this text

Exit status: 0 when the recording was finalized, 1 when it failed, 2 for bad
arguments.
";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        bot_uri: String::new(),
        serializer: "protobuf".into(),
        rtp_in: 5004,
        rtp_out: "127.0.0.1:5006".into(),
        output: "call.wav".into(),
        no_media_timeout: Duration::from_secs(5),
        jitter_latency_ms: 40,
        dtmf_pt: 101,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bot-uri" => o.bot_uri = value()?,
            "--serializer" => o.serializer = value()?,
            "--rtp-in" => o.rtp_in = value()?.parse().map_err(|e| format!("--rtp-in: {e}"))?,
            "--rtp-out" => o.rtp_out = value()?,
            "--output" => o.output = value()?,
            "--no-media-timeout" => {
                let secs: f64 = value()?
                    .parse()
                    .map_err(|e| format!("--no-media-timeout: {e}"))?;
                o.no_media_timeout = Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("--no-media-timeout: {secs} is not a duration"))?;
            }
            "--jitter-latency" => {
                o.jitter_latency_ms = value()?
                    .parse()
                    .map_err(|e| format!("--jitter-latency: {e}"))?
            }
            "--dtmf-pt" => {
                o.dtmf_pt = value()?
                    .parse()
                    .ok()
                    .filter(|pt| (96..=127).contains(pt))
                    .ok_or("--dtmf-pt: a dynamic payload type, 96 to 127")?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.bot_uri.is_empty() {
        return Err("--bot-uri is required".into());
    }
    Ok(o)
}

fn pipeline(o: &Options) -> Result<gst::Pipeline, glib::Error> {
    let (out_host, out_port) = o
        .rtp_out
        .rsplit_once(':')
        .unwrap_or(("127.0.0.1", o.rtp_out.as_str()));
    let leg = "audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=8000,channels=1";
    // callrecsink keeps each track on its timeline itself (a stallfiller per
    // track); the stallfillers here are for the live legs that leave: the
    // caller's audio to the bot and the bot's audio back as RTP. RTP
    // timestamps jitter by a few samples: the caller's audio is re-stamped up
    // to 20 ms (tolerance) instead of being trimmed or filled.
    // The caller's RTP carries audio (PT 0) and keys (--dtmf-pt) in one
    // sequence: the jitterbuffer orders it whole, then rtpptdemux parts it
    // (see `part_payload_types`).
    let desc = format!(
        "callrecsink name=rec location={output} tolerance=20000000 \
         udpsrc name=rtp_in port={rtp_in} timeout={timeout} caps=\"application/x-rtp,media=audio,clock-rate=8000\" \
           ! rtpjitterbuffer name=jitter latency={jitter} ! rtpptdemux name=pt \
         pt.src_0 ! rtppcmudepay name=caller_depay ! mulawdec ! {leg} ! tee name=caller \
         caller. ! queue ! stallfiller name=caller_fill tolerance=20000000 ! audioresample \
           ! pipecatwssink name=to_bot connection=call serializer={serializer} \
         caller. ! queue ! rec.sink_0 \
         pipecatwsrc name=bot connection=call serializer={serializer} \
           ! {leg} ! tee name=bot_out \
         bot_out. ! queue ! stallfiller name=bot_fill ! mulawenc ! rtppcmupay ! udpsink host={out_host} port={out_port} sync=false async=false \
         bot_out. ! queue ! rec.sink_1",
        output = o.output,
        rtp_in = o.rtp_in,
        timeout = o.no_media_timeout.as_nanos(),
        jitter = o.jitter_latency_ms,
        serializer = o.serializer,
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .unwrap();
    part_payload_types(&pipeline, o.dtmf_pt);
    // Set as a property, never in the launch string: GStreamer's parser logs
    // launch strings whole, and bot URIs may carry tokens.
    pipeline
        .by_name("bot")
        .unwrap()
        .set_property("uri", &o.bot_uri);
    // The finalize message is posted while stopping: keep it on the bus.
    pipeline.set_auto_flush_bus(false);
    Ok(pipeline)
}

/// What ended the call, for the log line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    BotHungUp,
    CallerSilent,
    Signal,
    Error,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ending::BotHungUp => "the bot hung up",
            Ending::CallerSilent => "the caller went silent",
            Ending::Signal => "a signal",
            Ending::Error => "an error",
        })
    }
}

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("agent_call: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so every thread inherits the mask and the
    // signals wait for `sigwait` below instead of killing the process.
    let signals = block_stop_signals();
    gst::init().unwrap();
    gststallfiller::plugin_register_static().unwrap();
    gstcallrec::plugin_register_static().unwrap();
    gstpipecat::plugin_register_static().unwrap();

    let pipeline = match pipeline(&options) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("agent_call: cannot build the pipeline: {e}");
            return ExitCode::from(2);
        }
    };
    let main_loop = glib::MainLoop::new(None, false);
    let ending = std::sync::Arc::new(std::sync::Mutex::new(None::<Ending>));

    // An ending that keeps EOS semantics (every leg drained, then finalized)
    // sends EOS; an error or a signal stops at once, which callrecsink
    // finalizes just the same.
    let end_call = {
        let pipeline = pipeline.clone();
        let main_loop = main_loop.clone();
        let ending = ending.clone();
        move |why: Ending| {
            if ending.lock().unwrap().replace(why).is_some() {
                return;
            }
            println!("call ending: {why}");
            match why {
                Ending::BotHungUp | Ending::CallerSilent => {
                    pipeline.send_event(gst::event::Eos::new());
                    end_caller_leg(&pipeline);
                }
                Ending::Signal | Ending::Error => main_loop.quit(),
            }
        }
    };

    // The recording's outcome, whichever way it comes: during the call (EOS
    // paths) or while stopping (errors, signals).
    let outcome = std::rc::Rc::new(std::cell::RefCell::new(None::<gst::Structure>));
    let bus = pipeline.bus().unwrap();
    let _watch = {
        let end_call = end_call.clone();
        let main_loop = main_loop.clone();
        let outcome = outcome.clone();
        let pipeline = pipeline.clone();
        bus.add_watch_local(move |_, msg| {
            use gst::MessageView;
            match msg.view() {
                MessageView::Eos(_) => main_loop.quit(),
                MessageView::Error(e) => {
                    let from = msg.src().map_or("the pipeline".into(), |s| s.path_string());
                    eprintln!("error from {from}: {}", e.error());
                    if let Some(debug) = e.debug() {
                        eprintln!("  {debug}");
                    }
                    end_call(Ending::Error);
                }
                MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
                MessageView::Element(e) => match e.structure().map(|s| s.name().as_str()) {
                    Some("pipecat-closed") => end_call(Ending::BotHungUp),
                    Some("GstUDPSrcTimeout") => end_call(Ending::CallerSilent),
                    Some("dtmf-event") => forward_dtmf(&pipeline, e.structure().unwrap()),
                    Some("callrecsink-finalized" | "callrecsink-failed") => {
                        *outcome.borrow_mut() = e.structure().map(|s| s.to_owned());
                    }
                    _ => {}
                },
                _ => {}
            }
            glib::ControlFlow::Continue
        })
        .unwrap()
    };
    {
        let end_call = end_call.clone();
        std::thread::spawn(move || {
            let mut signal = 0;
            // SAFETY: `signals` is a valid, initialised set.
            if unsafe { libc::sigwait(&signals, &mut signal) } == 0 {
                end_call(Ending::Signal);
            }
        });
    }

    if pipeline.set_state(gst::State::Playing).is_err() {
        // Connect failures and the like: the reason is on the bus.
        report_errors(&pipeline);
        let _ = pipeline.set_state(gst::State::Null);
        return ExitCode::from(1);
    }
    println!(
        "call started: RTP in on port {}, bot at its URI, recording to {}",
        options.rtp_in, options.output
    );
    main_loop.run();
    let _ = pipeline.set_state(gst::State::Null);
    let ending = *ending.lock().unwrap();
    // Messages posted while stopping are still on the bus.
    while let Some(msg) = bus.pop() {
        if let Some(s) = msg
            .structure()
            .filter(|s| s.name().starts_with("callrecsink-"))
        {
            *outcome.borrow_mut() = Some(s.to_owned());
        }
    }
    let outcome = outcome.borrow_mut().take();
    report(outcome, ending)
}

/// Tells the jitterbuffer and rtpptdemux what each payload type of the
/// caller's RTP is, and
/// gives the keys a branch of their own once the first one comes:
/// rtpdtmfdepay posts each key as a `dtmf-event` message (see
/// `forward_dtmf`). Built on demand, so a call without keys has no branch
/// that never sees EOS.
fn part_payload_types(pipeline: &gst::Pipeline, dtmf_pt: u32) {
    let caps_of = move |args: &[glib::Value]| {
        let pt = args[1].get::<u32>().ok()?;
        let encoding = match pt {
            0 => "PCMU",
            pt if pt == dtmf_pt => "TELEPHONE-EVENT",
            _ => return None,
        };
        let caps = gst::Caps::builder("application/x-rtp")
            .field("media", "audio")
            .field("clock-rate", 8000i32)
            .field("encoding-name", encoding)
            .field("payload", pt as i32)
            .build();
        Some(caps.to_value())
    };
    for name in ["jitter", "pt"] {
        let element = pipeline.by_name(name).unwrap();
        element.connect("request-pt-map", false, caps_of);
    }
    let demux = pipeline.by_name("pt").unwrap();
    let weak = pipeline.downgrade();
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        if pad.name() != format!("src_{dtmf_pt}").as_str() {
            return;
        }
        let keys = gst::parse::bin_from_description(
            "rtpdtmfdepay ! fakesink sync=false async=false",
            true,
        )
        .expect("the dtmf plugin of gst-plugins-good");
        pipeline.add(&keys).unwrap();
        let _ = keys.sync_state_with_parent();
        let _ = pad.link(&keys.static_pad("sink").unwrap());
    });
}

/// The EOS sent to the pipeline reaches the caller's audio leg through
/// rtpptdemux's `src_0`, which exists only once the caller sent audio: a
/// caller that sent none (or only keys) would leave that leg, and the call,
/// waiting for an EOS for ever. Its leg then gets the EOS directly.
fn end_caller_leg(pipeline: &gst::Pipeline) {
    let demux_has_audio = pipeline
        .by_name("pt")
        .is_some_and(|pt| pt.static_pad("src_0").is_some());
    if !demux_has_audio
        && let Some(sink) = pipeline
            .by_name("caller_depay")
            .and_then(|d| d.static_pad("sink"))
    {
        sink.send_event(gst::event::Eos::new());
    }
}

/// A key the caller pressed, to the bot: pipecatwssink takes the
/// `dtmf-event` as `rtpdtmfdepay` posts it, in stream order with the audio.
fn forward_dtmf(pipeline: &gst::Pipeline, event: &gst::StructureRef) {
    println!(
        "caller pressed key {}",
        event.get::<i32>("number").unwrap_or(-1)
    );
    let sink = pipeline
        .by_name("to_bot")
        .and_then(|s| s.static_pad("sink"));
    if let Some(pad) = sink {
        pad.send_event(gst::event::CustomDownstream::new(event.to_owned()));
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and all it spawns later).
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn report_errors(pipeline: &gst::Pipeline) {
    let bus = pipeline.bus().unwrap();
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            eprintln!("error: {}", e.error());
        }
    }
}

/// Prints the recording's figures; the exit status follows them.
fn report(outcome: Option<gst::Structure>, ending: Option<Ending>) -> ExitCode {
    let Some(s) = outcome else {
        eprintln!("recording failed: no outcome was reported");
        return ExitCode::from(1);
    };
    if s.name() == "callrecsink-failed" {
        eprintln!(
            "recording failed: {}",
            s.get::<String>("reason").unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    let duration = s.get::<gst::ClockTime>("duration").unwrap();
    println!(
        "recording finalized: {} ({duration}, {} frames at {} Hz)",
        s.get::<String>("location").unwrap(),
        s.get::<u64>("frames").unwrap(),
        s.get::<u32>("rate").unwrap()
    );
    let tracks = s.get::<gst::Array>("tracks").unwrap();
    for (name, t) in ["caller", "bot"].iter().zip(tracks.iter()) {
        let t = t.get::<gst::Structure>().unwrap();
        println!(
            "  {name}: received {} samples, silence {}, dropped {}",
            t.get::<u64>("received-samples").unwrap(),
            t.get::<u64>("silence-samples").unwrap(),
            t.get::<u64>("dropped-samples").unwrap()
        );
    }
    println!("call ended by {}", ending.unwrap_or(Ending::Error));
    ExitCode::SUCCESS
}
