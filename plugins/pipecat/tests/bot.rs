// SPDX-License-Identifier: MPL-2.0
//! pipecatwsrc/pipecatwssink against a real Pipecat bot, for both the
//! protobuf and the Twilio serializer, and against raw servers for what no
//! real bot sends.

mod common;

use std::time::{Duration, Instant};

use callaudio::g711;
use common::*;
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

fn rate_of(serializer: &str) -> usize {
    match serializer {
        "protobuf" | "vonage" => 16000,
        _ => 8000,
    }
}

/// A bot that says 0.5 s of its ramp and hangs up, heard by `source`
/// (`pipecatwsrc` or `pipecatwssharedsrc`) with `extra` properties: what
/// reached the sink, the `pipecat-closed` message, and when EOS came.
fn hear_a_bot_hang_up(
    source: &str,
    serializer: &str,
    extra: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<Received>>,
    gst::Structure,
    Instant,
) {
    init();
    let bot = Bot::start(&[
        "--serializer",
        serializer,
        "--mode",
        "ramp",
        "--seconds",
        "0.5",
        "--hangup",
    ]);
    let pipeline = launch(&format!(
        "{source} uri={} serializer={serializer} {extra} ! appsink name=sink sync=false",
        bot.uri()
    ));
    let received = record(&pipeline, "sink");
    pipeline.set_state(gst::State::Playing).unwrap();
    let (seen, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(20),
    );
    let (msg, eos_at) = end.expect("no EOS after the bot hung up");
    assert_eq!(error_of(&msg), None);
    pipeline.set_state(gst::State::Null).unwrap();
    let closed = structures(&seen)
        .into_iter()
        .find(|s| s.name() == "pipecat-closed")
        .expect("pipecat-closed");
    (received, closed, eos_at)
}

fn bot_audio_arrives_then_hang_up_is_eos(serializer: &str) {
    heard_whole_then_eos("pipecatwsrc", serializer);
}

fn heard_whole_then_eos(source: &str, serializer: &str) {
    let (received, closed, eos_at) = hear_a_bot_hang_up(source, serializer, "");
    assert!(closed.get::<bool>("clean").unwrap());
    assert!(matches!(closed.get::<u32>("code").unwrap(), 1000 | 1001));
    let r = received.lock().unwrap();
    let rate = rate_of(serializer);
    assert_eq!(r.rates, vec![rate as i32]);
    // Every sample of the ramp, exactly, then Pipecat's 2 s of end silence.
    let n = rate / 2;
    assert_eq!(r.samples[..n], over_the_wire(serializer, ramp(n))[..]);
    assert_eq!(
        r.samples.len(),
        n + 2 * rate,
        "the last message (end silence) was pushed before EOS"
    );
    // Silence as the wire carries it (A-law has no exact zero: it decodes to 8).
    let silence = over_the_wire(serializer, vec![0])[0];
    assert!(r.samples[n..].iter().all(|&s| s == silence));
    // Contiguous timestamps even though Pipecat sends faster than real time.
    for pair in r.pts.windows(2) {
        assert!(
            pair[0].0 + pair[0].1 <= pair[1].0,
            "overlapping timestamps {pair:?}"
        );
    }
    let after_last = eos_at.duration_since(r.last_arrival.unwrap());
    println!("{serializer}: EOS {after_last:?} after the last buffer");
    assert!(
        after_last < Duration::from_secs(1),
        "EOS {after_last:?} after the close"
    );
}

#[test]
fn protobuf_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("protobuf");
}

/// The source on the shared threads hears the same, to the sample.
#[test]
fn shared_source_protobuf_bot_audio_arrives_then_hang_up_is_eos() {
    heard_whole_then_eos("pipecatwssharedsrc", "protobuf");
}

#[test]
fn shared_source_twilio_bot_audio_arrives_then_hang_up_is_eos() {
    heard_whole_then_eos("pipecatwssharedsrc", "twilio");
}

#[test]
fn twilio_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("twilio");
}

#[test]
fn telnyx_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("telnyx");
}

#[test]
fn telnyx_pcma_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("telnyx-pcma");
}

#[test]
fn plivo_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("plivo");
}

#[test]
fn exotel_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("exotel");
}

/// What pipecatwssink sends the echo bot comes back through pipecatwsrc.
fn full_duplex_echo(serializer: &str) {
    full_duplex_echo_through("pipecatwsrc", serializer);
}

fn full_duplex_echo_through(source: &str, serializer: &str) {
    init();
    let bot = Bot::start(&[
        "--serializer",
        serializer,
        "--mode",
        "echo",
        "--rate",
        "8000",
    ]);
    echo_round_trip_through(source, &bot.uri(), serializer, "", 0);
}

#[test]
fn protobuf_full_duplex_echo() {
    full_duplex_echo("protobuf");
}

/// The shared source on the sink's connection: what the sink sends comes
/// back through it, whole.
#[test]
fn protobuf_full_duplex_echo_through_the_shared_source() {
    full_duplex_echo_through("pipecatwssharedsrc", "protobuf");
}

#[test]
fn twilio_full_duplex_echo() {
    full_duplex_echo("twilio");
}

#[test]
fn telnyx_pcma_full_duplex_echo() {
    full_duplex_echo("telnyx-pcma");
}

#[test]
fn plivo_full_duplex_echo() {
    full_duplex_echo("plivo");
}

#[test]
fn exotel_full_duplex_echo() {
    full_duplex_echo("exotel");
}

fn bot_killed_mid_stream_is_an_error_at_once(serializer: &str) {
    init();
    let mut bot = Bot::start(&[
        "--serializer",
        serializer,
        "--mode",
        "ramp",
        "--seconds",
        "30",
    ]);
    let pipeline = launch(&format!(
        "pipecatwsrc uri={} serializer={serializer} ! appsink name=sink sync=false",
        bot.uri()
    ));
    let received = record(&pipeline, "sink");
    pipeline.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().samples.len() < 4000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    bot.child.kill().unwrap(); // SIGKILL: no close frame
    let killed_at = Instant::now();
    let (msg, at) = wait_for(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(5),
    )
    .1
    .expect("nothing on the bus after the bot died");
    let (text, debug) = error_of(&msg).expect("an ERROR, not EOS, when the bot dies");
    pipeline.set_state(gst::State::Null).unwrap();
    let took = at.duration_since(killed_at);
    println!("{serializer}: bot killed -> ERROR in {took:?}: {text} / {debug}");
    assert!(text.contains("Pipecat bot connection lost"), "{text}");
    assert!(
        text.contains("1006") || text.contains("reset by peer"),
        "{text}"
    );
    assert!(!debug.is_empty());
    assert!(
        took < Duration::from_secs(1),
        "error {took:?} after the bot died"
    );
}

#[test]
fn protobuf_bot_killed_mid_stream_is_an_error_at_once() {
    bot_killed_mid_stream_is_an_error_at_once("protobuf");
}

#[test]
fn twilio_bot_killed_mid_stream_is_an_error_at_once() {
    bot_killed_mid_stream_is_an_error_at_once("twilio");
}

fn error_from_raw_server(
    serializer: &str,
    extra: &str,
    messages: Vec<Message>,
) -> (String, String) {
    init();
    let port = raw_server(messages);
    let pipeline = launch(&format!(
        "pipecatwsrc uri=ws://127.0.0.1:{port}/ serializer={serializer} {extra} ! fakesink sync=false"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (msg, _) = wait_for(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(5),
    )
    .1
    .expect("no error for a bad frame");
    pipeline.set_state(gst::State::Null).unwrap();
    error_of(&msg).expect("an ERROR")
}

#[test]
fn garbage_frames_are_errors_that_name_the_frame() {
    let (text, debug) = error_from_raw_server(
        "protobuf",
        "",
        vec![Message::Binary(vec![0x12, 0x50, 0x01, 0x02].into())],
    );
    assert!(
        text.contains("does not parse") && text.contains("claims more bytes than the message has"),
        "{text}"
    );
    assert!(debug.contains("4 bytes"), "{debug}");
    let (text, _) =
        error_from_raw_server("twilio", "", vec![Message::Text("not json at all".into())]);
    assert!(
        text.contains("does not parse") && text.contains("not JSON"),
        "{text}"
    );
    let (text, _) = error_from_raw_server("protobuf", "", vec![Message::Text("hello".into())]);
    assert!(
        text.contains("text message where protobuf expects binary"),
        "{text}"
    );
}

#[test]
fn oversized_frame_is_an_error() {
    let big = audio_frame(3 * 1024 * 1024);
    let (text, _) = error_from_raw_server(
        "protobuf",
        "max-message-size=1048576",
        vec![Message::Binary(big.into())],
    );
    assert!(text.contains("max-message-size"), "{text}");
}

/// One protobuf audio message of `bytes` bytes of silence at 16 kHz.
fn audio_frame(bytes: usize) -> Vec<u8> {
    gstpipecat::protobuf::encode_audio(&vec![0; bytes], 16000, 1)
}

#[test]
fn bot_closing_with_a_failure_code_is_an_error() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::Again,
        reason: "busy".into(),
    }));
    let (text, _) = error_from_raw_server("protobuf", "", vec![close]);
    assert!(
        text.contains("1013") && text.contains("server busy") && text.contains("busy"),
        "{text}"
    );
}

/// Starts a source for `uri` and returns the ERROR it posts. Connecting
/// runs in the background, so the state change itself returns at once and
/// the failure arrives on the bus.
fn connect_error(uri: &str) -> String {
    init();
    let pipeline = launch(&format!(
        "pipecatwsrc uri={uri} connect-timeout=2000000000 ! fakesink"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (msg, _) = wait_for(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(3),
    )
    .1
    .expect("an ERROR");
    pipeline.set_state(gst::State::Null).unwrap();
    error_of(&msg).unwrap().0
}

/// A connect that fails once the pipeline plays (here: no answer within
/// `connect-timeout`) is one ERROR, the one with the cause: downstream gets
/// its EOS, and the base class adds no generic "Internal data stream
/// error" before it.
#[test]
fn a_failed_connect_is_one_error_then_eos() {
    for source in ["pipecatwsrc", "pipecatwssharedsrc"] {
        a_failed_connect_is_one_error_then_eos_from(source);
    }
}

fn a_failed_connect_is_one_error_then_eos_from(source: &str) {
    init();
    let port = silent_server();
    let pipeline = launch(&format!(
        "{source} uri=ws://127.0.0.1:{port}/ connect-timeout=1000000000 ! fakesink async=false"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, error) = wait_for(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(5),
    );
    let (text, _) = error_of(&error.expect("an ERROR").0).unwrap();
    assert!(text.contains("connect-timeout"), "{text}");
    let (between, eos) = wait_for(&pipeline, &[gst::MessageType::Eos], Duration::from_secs(3));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        eos.is_some(),
        "{source}: downstream got no EOS after the failure"
    );
    let more: Vec<_> = between.iter().filter_map(error_of).collect();
    assert!(more.is_empty(), "{source}: a second ERROR: {more:?}");
}

#[test]
fn connect_refused_is_an_error_that_says_so() {
    let text = connect_error(&format!("ws://127.0.0.1:{}/", free_port()));
    assert!(text.contains("connection refused"), "{text}");
}

#[test]
fn http_401_on_upgrade_is_an_error_that_says_so() {
    let port = http_server("401 Unauthorized");
    let text = connect_error(&format!("ws://127.0.0.1:{port}/ws?token=s3cr3t-t0ken"));
    assert!(
        text.contains("HTTP 401") && text.contains("authentication"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t-t0ken"),
        "the token leaked into the error: {text}"
    );
}

#[test]
fn stopping_while_waiting_for_audio_is_prompt() {
    init();
    let bot = Bot::start(&["--mode", "silent"]);
    let pipeline = launch(&format!(
        "pipecatwsrc uri={} ! fakesink sync=false",
        bot.uri()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    let took = t.elapsed();
    println!("set_state(Null) while create() waited: {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_silent_bot_is_a_warning_never_an_error() {
    a_silent_bot_is_a_warning_never_an_error_from("pipecatwsrc");
}

#[test]
fn a_silent_bot_is_a_warning_never_an_error_from_the_shared_source() {
    a_silent_bot_is_a_warning_never_an_error_from("pipecatwssharedsrc");
}

fn a_silent_bot_is_a_warning_never_an_error_from(source: &str) {
    init();
    let bot = Bot::start(&["--mode", "silent"]);
    let pipeline = launch(&format!(
        "{source} uri={} response-timeout=1000000000 ! fakesink sync=false",
        bot.uri()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let bus = pipeline.bus().unwrap();
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        !messages
            .iter()
            .any(|m| m.type_() == gst::MessageType::Error)
    );
    let warnings = messages
        .iter()
        .filter(|m| m.type_() == gst::MessageType::Warning)
        .count();
    assert_eq!(warnings, 1, "one warning for one silent stretch");
    assert!(messages.iter().any(|m| {
        m.structure()
            .is_some_and(|s| s.name() == "pipecat-agent-silent")
    }));
}

#[test]
fn downstream_that_prefers_mulaw_gets_the_wire_bytes() {
    init();
    let bot = Bot::start(&[
        "--serializer",
        "twilio",
        "--mode",
        "ramp",
        "--seconds",
        "0.5",
        "--hangup",
    ]);
    let pipeline = launch(&format!(
        "pipecatwsrc uri={} serializer=twilio ! audio/x-mulaw ! appsink name=sink sync=false",
        bot.uri()
    ));
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut bytes = Vec::new();
    let mut caps = None;
    while let Ok(sample) = sink.pull_sample() {
        caps.get_or_insert_with(|| sample.caps().unwrap().to_owned());
        bytes.extend_from_slice(&sample.buffer().unwrap().map_readable().unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let caps = caps.expect("no audio");
    assert_eq!(caps.structure(0).unwrap().name(), "audio/x-mulaw", "{caps}");
    // What Pipecat put on the wire: audioop.lin2ulaw of the ramp, untouched.
    let expected: Vec<u8> = ramp(4000).into_iter().map(g711::linear_to_ulaw).collect();
    assert_eq!(bytes[..4000], expected[..]);
    assert_eq!(bytes.len(), 4000 + 16000);
}

#[test]
fn extra_headers_reach_the_bot() {
    init();
    let (port, request) = http_server_seeing("401 Unauthorized");
    let pipeline = launch("pipecatwsrc name=src ! fakesink");
    let src = pipeline.by_name("src").unwrap();
    src.set_property("uri", format!("ws://127.0.0.1:{port}/"));
    src.set_property(
        "extra-headers",
        <gst::Structure as std::str::FromStr>::from_str(
            "headers, Authorization=\"Bearer t0k\", X-Call-Id=\"c1\"",
        )
        .unwrap(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let refused = wait_for(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(3),
    )
    .1;
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(refused.is_some(), "the 401 was not an ERROR");
    let request = request
        .recv_timeout(Duration::from_secs(2))
        .unwrap()
        .to_ascii_lowercase();
    assert!(request.contains("authorization: bearer t0k"), "{request}");
    assert!(request.contains("x-call-id: c1"), "{request}");
}

/// 20 ms of the bot's audio and its interruption, as each wire carries them.
fn speech_and_interruption(serializer: &str) -> (Message, Message) {
    use base64::Engine;
    let text = |json: serde_json::Value| Message::Text(json.to_string().into());
    let mulaw = base64::engine::general_purpose::STANDARD.encode([0x7Fu8; 160]);
    match serializer {
        "protobuf" => (
            Message::Binary(audio_frame(320 * 2).into()),
            Message::Binary(vec![0x2a, 0x00].into()),
        ),
        "twilio" => (
            text(serde_json::json!({"event": "media", "media": {"payload": mulaw}})),
            text(serde_json::json!({"event": "clear"})),
        ),
        "vonage" => (
            Message::Binary(vec![1u8; 640].into()),
            text(serde_json::json!({"action": "clear"})),
        ),
        "genesys" => (
            Message::Binary(vec![0x7Fu8; 160].into()),
            text(
                serde_json::json!({"version": "2", "type": "event", "seq": 1,
                "parameters": {"entities": [{"type": "barge_in", "data": {}}]}}),
            ),
        ),
        other => panic!("no case for {other}"),
    }
}

/// 4 s of TTS in 20 ms messages, most of it queued behind a blocked
/// downstream, then the wire's interruption: the queued audio is dropped.
#[test]
fn interruption_drops_queued_audio_and_is_posted() {
    for serializer in ["protobuf", "twilio", "vonage", "genesys"] {
        interruption_drops_queued_audio(serializer);
    }
}

fn interruption_drops_queued_audio(serializer: &str) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    init();
    let (audio, interruption) = speech_and_interruption(serializer);
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }));
    let mut messages = vec![audio; 200];
    messages.extend([interruption, close]);
    let port = raw_server(messages);
    let pipeline = launch(&format!(
        "pipecatwsrc uri=ws://127.0.0.1:{port}/ serializer={serializer} ! appsink name=sink sync=false max-buffers=1 drop=false"
    ));
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut pulled = gst::ClockTime::ZERO;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(500)) {
        pulled += sample.buffer().unwrap().duration().unwrap();
    }
    let (seen, _) = wait_for(&pipeline, &[gst::MessageType::Eos], Duration::from_secs(2));
    pipeline.set_state(gst::State::Null).unwrap();
    let interrupted = structures(&seen)
        .into_iter()
        .find(|s| s.name() == "pipecat-interrupted")
        .expect("pipecat-interrupted");
    let dropped = interrupted.get::<gst::ClockTime>("dropped").unwrap();
    println!("{serializer}: pushed {pulled}, dropped {dropped} at the interruption");
    assert!(
        dropped > gst::ClockTime::ZERO,
        "{serializer}: the queued audio was not dropped"
    );
    assert_eq!(
        pulled + dropped,
        gst::ClockTime::from_seconds(4),
        "{serializer}: every received sample is pushed or dropped"
    );
}

#[test]
fn on_close_error_makes_a_hang_up_an_error() {
    on_close_error_makes_a_hang_up_an_error_in("pipecatwsrc");
}

#[test]
fn on_close_error_makes_a_hang_up_an_error_on_the_shared_source() {
    on_close_error_makes_a_hang_up_an_error_in("pipecatwssharedsrc");
}

fn on_close_error_makes_a_hang_up_an_error_in(source: &str) {
    init();
    let bot = Bot::start(&["--mode", "ramp", "--seconds", "0.2", "--hangup"]);
    let pipeline = launch(&format!(
        "{source} uri={} on-close=error ! fakesink sync=false",
        bot.uri()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (seen, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(20),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let (text, _) = error_of(&end.expect("an end").0).expect("an ERROR, not EOS");
    assert!(text.contains("hung up"), "{text}");
    assert!(
        structures(&seen)
            .iter()
            .any(|s| s.name() == "pipecat-closed")
    );
}

#[test]
fn sink_with_its_own_uri_sends_audio_and_closes_on_stop() {
    init();
    let (tx, rx) = std::sync::mpsc::channel();
    let port = one_bot(move |mut ws, _| {
        let mut samples = 0;
        loop {
            match ws.read() {
                Ok(Message::Binary(data)) => {
                    if let Ok(gstpipecat::protobuf::Kind::Audio(
                        gstpipecat::protobuf::AudioRawFrame {
                            audio, sample_rate, ..
                        },
                    )) = gstpipecat::protobuf::decode(&data)
                    {
                        assert_eq!(sample_rate, 16000);
                        samples += audio.len() / 2;
                    }
                }
                Ok(Message::Close(_)) => {
                    let _ = tx.send((samples, true));
                    return;
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.send((samples, false));
                    return;
                }
            }
        }
    });
    let pipeline = launch(&format!(
        "audiotestsrc num-buffers=10 samplesperbuffer=320 ! audio/x-raw,rate=16000,channels=1 ! pipecatwssink uri=ws://127.0.0.1:{port}/"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(5),
    );
    assert_eq!(end.map(|(m, _)| m.type_()), Some(gst::MessageType::Eos));
    pipeline.set_state(gst::State::Null).unwrap();
    let (samples, closed) = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("the server heard nothing");
    assert_eq!(samples, 3200, "every sample reached the bot");
    assert!(
        closed,
        "stopping the sink must close the WebSocket with a close frame"
    );
}

#[test]
fn messages_and_text_reach_the_bot() {
    init();
    let bot = Bot::start(&["--mode", "silent", "--log-input"]);
    let pipeline = launch(&format!(
        "pipecatwsrc name=src uri={} ! fakesink sync=false",
        bot.uri()
    ));
    let src = pipeline.by_name("src").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    bot.line("CLIENT CONNECTED", Duration::from_secs(5))
        .expect("the element connected");
    let sent = src.emit_by_name::<bool>(
        "send-message",
        &[&r#"{"label": "rtvi-ai", "type": "client-message", "data": {"n": 7}}"#],
    );
    assert!(sent);
    assert!(src.emit_by_name::<bool>("send-text", &[&"hello bot"]));
    // Not JSON: refused here, nothing sent.
    assert!(!src.emit_by_name::<bool>("send-message", &[&"{not json"]));
    let message = bot
        .line("MESSAGE", Duration::from_secs(5))
        .expect("the bot got the message");
    assert_eq!(
        message,
        r#"MESSAGE {"data": {"n": 7}, "label": "rtvi-ai", "type": "client-message"}"#
    );
    let text = bot
        .line("TEXT", Duration::from_secs(5))
        .expect("the bot got the text");
    assert_eq!(text, "TEXT hello bot");
    pipeline.set_state(gst::State::Null).unwrap();
    // A wire that carries no messages says so instead of pretending.
    let twilio = gst::ElementFactory::make("pipecatwssink")
        .property_from_str("serializer", "twilio")
        .build()
        .unwrap();
    assert!(!twilio.emit_by_name::<bool>("send-message", &[&"{}"]));
}

#[test]
fn vonage_full_duplex_echo() {
    full_duplex_echo("vonage");
}

#[test]
fn genesys_full_duplex_echo() {
    full_duplex_echo("genesys");
}

#[test]
fn vonage_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("vonage");
}

/// AudioHook ends with the bot's `disconnect`, our `close` and its
/// `closed`: a clean end, so EOS.
#[test]
fn genesys_bot_audio_arrives_then_hang_up_is_eos() {
    bot_audio_arrives_then_hang_up_is_eos("genesys");
}

#[test]
fn vonage_bot_killed_mid_stream_is_an_error_at_once() {
    bot_killed_mid_stream_is_an_error_at_once("vonage");
}

#[test]
fn genesys_bot_killed_mid_stream_is_an_error_at_once() {
    bot_killed_mid_stream_is_an_error_at_once("genesys");
}

/// DTMF on the wires the runner does not serve: protobuf (as the RTVI
/// `dtmf` client message, which the bot's RTVI processor turns into
/// `InputDTMFFrame`s), Vonage and Genesys AudioHook.
#[test]
fn dtmf_reaches_bots_on_protobuf_vonage_and_genesys() {
    init();
    for serializer in ["protobuf", "vonage", "genesys"] {
        let bot = Bot::start(&[
            "--serializer",
            serializer,
            "--mode",
            "silent",
            "--log-input",
        ]);
        send_dtmf_through_the_sink(&bot.uri(), serializer, &bot);
    }
}

/// With `trim-end-silence`, the bot's speech arrives whole and Pipecat's
/// 2 s of end silence (audio_out_end_silence_secs) does not: a 0.5 s answer
/// is 0.5 s, and `pipecat-closed` says what was trimmed.
fn trim_end_silence_keeps_only_the_speech(serializer: &str) {
    let (received, closed, _) =
        hear_a_bot_hang_up("pipecatwsrc", serializer, "trim-end-silence=3000000000");
    assert_eq!(
        closed.get::<gst::ClockTime>("trimmed").unwrap(),
        gst::ClockTime::from_seconds(2)
    );
    let rate = rate_of(serializer);
    let n = rate / 2;
    let r = received.lock().unwrap();
    assert_eq!(r.samples, over_the_wire(serializer, ramp(n)));
}

#[test]
fn trim_end_silence_keeps_only_the_speech_protobuf() {
    trim_end_silence_keeps_only_the_speech("protobuf");
}

#[test]
fn trim_end_silence_keeps_only_the_speech_twilio() {
    trim_end_silence_keeps_only_the_speech("twilio");
}
