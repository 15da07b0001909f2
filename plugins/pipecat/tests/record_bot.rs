// SPDX-License-Identifier: MPL-2.0
//! Recording a real Pipecat bot with stock GStreamer elements, as a new user
//! tries first: the source announces caps only once it knows the bot's
//! format, so encoders never see a placeholder rate.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

const BOT_RATE: i32 = 24000;
const BOT_SECONDS: f64 = 1.0;
/// What Pipecat's output transport sends after the speech, as the bot is
/// told to (`audio_out_end_silence_secs`): part of what the bot says.
const END_SILENCE: f64 = 1.0;

fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipecat-rec-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `desc` (with `{uri}` and `{file}`) against a ramp bot until EOS; the
/// caps every buffer left the source with.
fn record(desc: &str, file: &Path) -> Vec<gst::Caps> {
    init();
    let bot = Bot::start(&[
        "--mode",
        "ramp",
        "--rate",
        &BOT_RATE.to_string(),
        "--seconds",
        &BOT_SECONDS.to_string(),
        "--end-silence",
        "1",
        "--hangup",
    ]);
    let desc = desc
        .replace("{uri}", &format!("ws://127.0.0.1:{}/", bot.port))
        .replace("{file}", file.to_str().unwrap());
    let pipeline = launch(&desc);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe_on = |pad: gst::Pad| {
        let seen = seen.clone();
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view()) {
                seen.lock().unwrap().push(c.caps_owned());
            }
            gst::PadProbeReturn::Ok
        });
    };
    match pipeline.by_name("src") {
        Some(src) => probe_on(src.static_pad("src").unwrap()),
        // uridecodebin makes the source itself: watch it as it is added.
        None => {
            let seen = seen.clone();
            pipeline
                .by_name("dec")
                .unwrap()
                .connect("source-setup", false, move |args| {
                    let source = args[1].get::<gst::Element>().unwrap();
                    let seen = seen.clone();
                    source.static_pad("src").unwrap().add_probe(
                        gst::PadProbeType::EVENT_DOWNSTREAM,
                        move |_, info| {
                            if let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view()) {
                                seen.lock().unwrap().push(c.caps_owned());
                            }
                            gst::PadProbeReturn::Ok
                        },
                    );
                    None
                });
        }
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(20),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let (msg, _) = end.expect("neither EOS nor an error");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{:?}", error_of(&msg));
    seen.lock().unwrap().clone()
}

/// Decodes `file` with a pipeline of stock elements: its duration and
/// whether it holds sound.
fn decode(file: &Path) -> (Duration, bool) {
    let pipeline = launch(&format!(
        "filesrc location={} ! decodebin ! audioconvert ! audio/x-raw,format=S16LE,channels=1 ! appsink name=out sync=false",
        file.display()
    ));
    let got = common::record(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(10),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        end.unwrap().0.type_(),
        gst::MessageType::Eos,
        "{} does not decode",
        file.display()
    );
    let got = got.lock().unwrap();
    let rate = *got.rates.last().expect("decoded audio") as u64;
    (
        Duration::from_nanos(got.samples.len() as u64 * 1_000_000_000 / rate),
        got.samples.iter().any(|s| s.saturating_abs() > 1000),
    )
}

fn assert_recorded(test: &str, desc: &str, ext: &str) {
    let file = out_dir(test).join(format!("bot.{ext}"));
    let caps = record(desc, &file);
    // The only caps downstream ever saw are the bot's own format.
    assert!(!caps.is_empty());
    for c in &caps {
        let rate = c.structure(0).unwrap().get::<i32>("rate").unwrap();
        assert_eq!(rate, BOT_RATE, "caps {c} before the bot's format was known");
    }
    let (duration, sound) = decode(&file);
    println!("{test}: {duration:?} decoded from {}", file.display());
    let expected = Duration::from_secs_f64(BOT_SECONDS + END_SILENCE);
    assert!(
        duration.abs_diff(expected) <= Duration::from_millis(40),
        "{duration:?} recorded of {expected:?}"
    );
    assert!(sound, "the recording is silent");
}

#[test]
fn wavenc_records_a_bot() {
    assert_recorded(
        "wav",
        "pipecatwsrc name=src uri={uri} ! wavenc ! filesink location={file}",
        "wav",
    );
}

/// The source on the shared threads, behind a queue so the encoder and the
/// disk run on the queue's thread, not on the one every bot leg shares.
#[test]
fn wavenc_records_a_bot_from_the_shared_source() {
    assert_recorded(
        "wav-shared",
        "pipecatwssharedsrc name=src uri={uri} ! queue ! wavenc ! filesink location={file}",
        "wav",
    );
}

#[test]
fn flacenc_records_a_bot() {
    assert_recorded(
        "flac",
        "pipecatwsrc name=src uri={uri} ! flacenc ! filesink location={file}",
        "flac",
    );
}

#[test]
fn opusenc_records_a_bot() {
    assert_recorded(
        "opus",
        "pipecatwsrc name=src uri={uri} ! opusenc ! oggmux ! filesink location={file}",
        "opus",
    );
}

#[test]
fn uridecodebin_records_a_bot_from_a_pipecat_uri() {
    assert_recorded(
        "uri",
        "uridecodebin name=dec uri=pipecat+{uri} ! audioconvert ! wavenc ! filesink location={file}",
        "wav",
    );
}

#[test]
fn a_silent_bot_keeps_the_pipeline_playing_until_it_hangs_up() {
    init();
    // Two bots that say nothing for 10 s, then hang up: one on a wire whose
    // format is fixed (Twilio), one on protobuf, which carries the rate only
    // with audio, so the application states the format it expects (`caps`).
    let twilio = Bot::start(&[
        "--mode",
        "silent",
        "--serializer",
        "twilio",
        "--seconds",
        "10",
        "--hangup",
    ]);
    let protobuf = Bot::start(&["--mode", "silent", "--seconds", "10", "--hangup"]);
    let pipelines = [
        launch(&format!(
            "pipecatwsrc uri={} serializer=twilio ! fakesink sync=true",
            twilio.uri()
        )),
        launch(&format!(
            "pipecatwsrc uri={} caps=audio/x-raw,rate=16000,channels=1 ! fakesink sync=true",
            protobuf.uri()
        )),
    ];
    for p in &pipelines {
        p.set_state(gst::State::Playing).unwrap();
    }
    std::thread::sleep(Duration::from_secs(8));
    for p in &pipelines {
        // For 10 s the bot says nothing: PLAYING, no ERROR, latency answered.
        let (seen, end) = wait_for(
            p,
            &[gst::MessageType::Error, gst::MessageType::Eos],
            Duration::from_millis(100),
        );
        assert!(end.is_none(), "ended while the bot was silent: {seen:?}");
        assert_eq!(p.current_state(), gst::State::Playing);
        let mut q = gst::query::Latency::new();
        assert!(p.query(&mut q));
        assert!(q.result().0, "not live");
    }
    for p in &pipelines {
        // Then it hangs up: EOS.
        let (_, end) = wait_for(
            p,
            &[gst::MessageType::Error, gst::MessageType::Eos],
            Duration::from_secs(10),
        );
        p.set_state(gst::State::Null).unwrap();
        assert_eq!(end.unwrap().0.type_(), gst::MessageType::Eos);
    }
}

#[test]
fn caps_that_no_bot_may_send_are_refused_at_start() {
    init();
    let text = start_error(
        "pipecatwsrc uri=ws://127.0.0.1:9/ caps=audio/x-raw,rate=1,channels=1 ! fakesink",
    );

    assert!(text.contains("not audio a bot may send"), "{text}");
}

#[test]
fn a_bot_that_changes_rate_records_at_one_rate_behind_audioresample() {
    init();
    // 0.5 s at 16 kHz, then 0.5 s at 24 kHz, then a hang-up.
    let mut messages = Vec::new();
    for (rate, chunks) in [(16000usize, 25), (24000, 25)] {
        let samples: Vec<u8> = (0..rate / 50)
            .flat_map(|k| (((k * 97) % 16000) as i16 + 2000).to_le_bytes())
            .collect();
        for _ in 0..chunks {
            messages.push(tokio_tungstenite::tungstenite::Message::Binary(
                gstpipecat::protobuf::encode_audio(&samples, rate as u32, 1).into(),
            ));
        }
    }
    messages.push(tokio_tungstenite::tungstenite::Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        },
    )));
    let port = raw_server(messages);
    let file = out_dir("rate-change").join("bot.wav");
    let pipeline = launch(&format!(
        "pipecatwsrc uri=ws://127.0.0.1:{port}/ ! audioresample ! audio/x-raw,rate=16000 ! wavenc ! filesink location={}",
        file.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(10),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(end.unwrap().0.type_(), gst::MessageType::Eos);
    let (duration, sound) = decode(&file);
    assert!(
        duration.abs_diff(Duration::from_secs(1)) <= Duration::from_millis(40),
        "{duration:?}"
    );
    assert!(sound);
}

#[test]
fn downstream_renegotiation_is_answered() {
    init();
    // 2 s of Twilio media (mu-law 8 kHz), paced by a synchronised sink.
    let payload = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([0x7Fu8; 160])
    };
    let media =
        format!(r#"{{"event":"media","streamSid":"MZ1","media":{{"payload":"{payload}"}}}}"#);
    let port = raw_server(
        (0..100)
            .map(|_| tokio_tungstenite::tungstenite::Message::Text(media.clone().into()))
            .collect(),
    );
    let pipeline = launch(&format!(
        "pipecatwsrc uri=ws://127.0.0.1:{port}/ serializer=twilio ! capsfilter name=cf caps=audio/x-mulaw \
         ! appsink name=out sync=true"
    ));
    let names = Arc::new(Mutex::new(Vec::<String>::new()));
    let n = names.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap()
        .set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let name = sample
                        .caps()
                        .unwrap()
                        .structure(0)
                        .unwrap()
                        .name()
                        .to_string();
                    let mut n = n.lock().unwrap();
                    if n.last() != Some(&name) {
                        n.push(name);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    pipeline.set_state(gst::State::Playing).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while names.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Downstream now wants raw audio: the capsfilter asks upstream again.
    pipeline
        .by_name("cf")
        .unwrap()
        .set_property("caps", gst::Caps::builder("audio/x-raw").build());
    while names.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(*names.lock().unwrap(), ["audio/x-mulaw", "audio/x-raw"]);
}
