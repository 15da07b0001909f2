// SPDX-License-Identifier: MPL-2.0
//! A bot (or whatever answers at its address) that sends hostile values:
//! each costs its own call an ERROR that names the value, never the
//! process, and never another call.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstpipecat::protobuf;
use tokio_tungstenite::tungstenite::Message;

fn error_text_from(port: u16, extra: &str) -> Option<String> {
    error_text_of("pipecatwsrc", port, extra)
}

fn error_text_of(source: &str, port: u16, extra: &str) -> Option<String> {
    init();
    let pipeline = launch(&format!(
        "{source} uri=ws://127.0.0.1:{port}/ {extra} ! fakesink sync=false"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(5),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    error_of(&end?.0).map(|(text, debug)| format!("{text} | {debug}"))
}

#[test]
fn declared_rates_outside_the_bounds_are_errors_that_name_the_value() {
    // Before: 2^31-1 aborted the process in downstream allocation, 2^32-1
    // became rate=-1 in caps, 1 put every later buffer 160 s ahead.
    for rate in [2_147_483_647u32, 4_294_967_295, 1] {
        let frame = protobuf::encode_audio(&[0; 320], rate, 1);
        let text =
            error_text_from(raw_server(vec![Message::Binary(frame.into())]), "").expect("an ERROR");
        assert!(text.contains(&format!("sample_rate={rate}")), "{text}");
    }
    let frame = protobuf::encode_audio(&[0; 320], 16000, 64);
    let text =
        error_text_from(raw_server(vec![Message::Binary(frame.into())]), "").expect("an ERROR");
    assert!(text.contains("num_channels=64"), "{text}");
}

/// The shared source reports the same values the same way, from the
/// runtime's thread.
#[test]
fn the_shared_source_names_hostile_values_and_garbage_too() {
    let frame = protobuf::encode_audio(&[0; 320], 4_294_967_295, 1);
    let text = error_text_of(
        "pipecatwssharedsrc",
        raw_server(vec![Message::Binary(frame.into())]),
        "",
    )
    .expect("an ERROR");
    assert!(text.contains("sample_rate=4294967295"), "{text}");
    let garbage = Message::Binary(vec![0xff; 40].into());
    let text =
        error_text_of("pipecatwssharedsrc", raw_server(vec![garbage]), "").expect("an ERROR");
    assert!(text.contains("does not parse"), "{text}");
    let close = server_frame(true, 0x8, &1005u16.to_be_bytes());
    let text = error_text_of("pipecatwssharedsrc", raw_bytes_server(close), "").expect("an ERROR");
    assert!(text.contains("code 1005"), "{text}");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn a_flood_of_big_messages_is_bounded_in_bytes() {
    init();
    // 1 MiB messages, each claiming 192 kHz x 8 channels (a few ms each).
    const MESSAGES: usize = 150;
    let frame = protobuf::encode_audio(&vec![0; 1 << 20], 192_000, 8);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let port = one_bot(move |mut ws, _| {
        for _ in 0..MESSAGES {
            ws.send(Message::Binary(frame.clone().into())).unwrap();
        }
        let _ = done_tx.send(());
        std::thread::sleep(Duration::from_secs(10));
    });
    // A minute by duration would be 180 MB at that rate: only the byte
    // bound (max-queue-bytes, 2 MiB by default) stands in the way.
    let pipeline = launch(&format!(
        "pipecatwsrc name=src uri=ws://127.0.0.1:{port}/ max-queue=60000000000 ! fakesink sync=false"
    ));
    // Downstream is stuck: nothing leaves the source's queue.
    let pad = pipeline.by_name("src").unwrap().static_pad("src").unwrap();
    let blocked = pad
        .add_probe(
            gst::PadProbeType::BLOCK_DOWNSTREAM | gst::PadProbeType::BUFFER,
            |_, _| gst::PadProbeReturn::Ok,
        )
        .unwrap();
    let before = rss_bytes();
    pipeline.set_state(gst::State::Playing).unwrap();
    done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // The reader has taken in what the socket still held once it reads no more.
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_bytes().saturating_sub(before);
    println!("RSS grew {} MB for {MESSAGES} MB sent", grown >> 20);
    pad.remove_probe(blocked);
    let (_, warning) = wait_for(
        &pipeline,
        &[gst::MessageType::Warning],
        Duration::from_secs(5),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    // Before: 1.46 GB in 10 s. The queue holds max-queue-bytes (2 MiB).
    assert!(grown < 64 << 20, "RSS grew {} MB", grown >> 20);
    let warning = match warning.expect("no WARNING for the dropped audio").0.view() {
        gst::MessageView::Warning(w) => w.error().to_string(),
        _ => unreachable!(),
    };
    assert!(
        warning.contains("dropped") && warning.contains("messages"),
        "{warning}"
    );
}

#[test]
fn one_connection_name_in_two_pipelines_is_two_sockets() {
    init();
    let bot = |value: i16| {
        let samples: Vec<u8> = std::iter::repeat_n(value.to_le_bytes(), 320)
            .flatten()
            .collect();
        let frames = (0..10)
            .map(|_| Message::Binary(protobuf::encode_audio(&samples, 16000, 1).into()))
            .collect();
        raw_server(frames)
    };
    let (a, b) = (bot(1), bot(2));
    let pipelines: Vec<gst::Pipeline> = [a, b]
        .iter()
        .map(|port| {
            launch(&format!(
                "pipecatwsrc uri=ws://127.0.0.1:{port}/ connection=call1 ! appsink name=out sync=false"
            ))
        })
        .collect();
    let received: Vec<_> = pipelines.iter().map(|p| record(p, "out")).collect();
    for p in &pipelines {
        p.set_state(gst::State::Playing).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while received
        .iter()
        .any(|r| r.lock().unwrap().samples.len() < 3200)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    // Before: call B attached to bot A and the two split its audio.
    for (r, value) in received.iter().zip([1i16, 2]) {
        let samples = &r.lock().unwrap().samples;
        assert_eq!(samples.len(), 3200, "bot {value}");
        assert!(samples.iter().all(|&s| s == value), "audio of another call");
    }
}

#[test]
fn two_bots_under_one_connection_name_in_one_pipeline_are_refused() {
    init();
    let text = start_error(&format!(
        "pipecatwsrc uri=ws://127.0.0.1:{}/a connection=c ! fakesink \
         audiotestsrc ! audio/x-raw,rate=16000 ! pipecatwssink uri=ws://127.0.0.1:{}/b connection=c",
        free_port(),
        free_port()
    ));

    assert!(text.contains("already used in this pipeline"), "{text}");
}

#[test]
fn stopping_while_connecting_returns_at_once() {
    init();
    for desc in [
        "pipecatwsrc uri=ws://127.0.0.1:{port}/ connect-timeout=10000000000 ! fakesink",
        "pipecatwssharedsrc uri=ws://127.0.0.1:{port}/ connect-timeout=10000000000 ! fakesink",
        "audiotestsrc is-live=true ! audio/x-raw,rate=16000 ! pipecatwssink uri=ws://127.0.0.1:{port}/ connect-timeout=10000000000",
    ] {
        let port = silent_server();
        let pipeline = launch(&desc.replace("{port}", &port.to_string()));
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        // Before: blocked until connect-timeout (9 s of the 10).
        pipeline.set_state(gst::State::Null).unwrap();
        let took = t.elapsed();
        println!("set_state(Null) while connecting took {took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
}

#[test]
fn close_codes_are_reported_as_the_bot_sent_them() {
    // Hand-made close frames: 999 and 1005 are not allowed on the wire, and
    // tungstenite would report its own 1002 for both.
    for (code, named) in [(999u16, "not a valid close code"), (1005, "reserved")] {
        let frame = server_frame(true, 0x8, &code.to_be_bytes());
        let text = error_text_from(raw_bytes_server(frame), "").expect("an ERROR");
        assert!(text.contains(&format!("code {code}")), "{text}");
        assert!(text.contains(named), "{text}");
        assert!(!text.contains("1002"), "{text}");
    }
    // A close frame without a code is a hang-up like any other: EOS.
    assert_eq!(
        error_text_from(raw_bytes_server(server_frame(true, 0x8, &[])), ""),
        None
    );
}

#[test]
fn a_frozen_bot_ends_the_call_with_an_error_that_says_so() {
    init();
    // A real Pipecat bot talking, then stopped (SIGSTOP): its TCP connection
    // stays up, so only our pings can tell.
    let bot = Bot::start(&["--mode", "ramp", "--seconds", "30"]);
    let pipeline = launch(&format!(
        "pipecatwsrc uri={} keepalive-interval=1000000000 keepalive-timeout=1000000000 ! fakesink sync=false",
        bot.uri()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = bot.child.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(6),
    );
    let took = stopped.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    pipeline.set_state(gst::State::Null).unwrap();
    // Before: nothing, ever; the call hung.
    let (msg, _) = end.expect("a frozen bot went unnoticed");
    let (text, _) = error_of(&msg).expect("an ERROR");
    println!("frozen bot detected after {took:?}: {text}");
    assert!(text.contains("did not answer a ping"), "{text}");
    // Within one interval plus the timeout (and a little scheduling slack).
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[test]
fn the_source_is_named_after_its_factory() {
    init();
    let src = gst::ElementFactory::make("pipecatwsrc").build().unwrap();
    assert!(src.name().starts_with("pipecatwsrc"), "{}", src.name());
}

/// Whether this process still holds the TCP socket whose local port is
/// `local` and remote port `remote` (`/proc/net/tcp` shows inode 0 for a
/// socket no process holds any more, as while the kernel finishes it).
fn socket_held(local: u16, remote: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
        port(f[1]) == local && port(f[2]) == remote && f[9] != "0"
    })
}

/// A bot that stops reading (and saying anything) while we still send: the
/// caller's audio fills the socket, so the writer waits on it for good.
/// Once the call ends, the socket must still be let go within a bounded
/// time, not held by a writer that never returns (one socket and one task
/// per frozen bot, for the life of a media server).
#[test]
fn a_bot_that_stops_reading_does_not_keep_our_socket() {
    init();
    let (tx, rx) = std::sync::mpsc::channel();
    let port = one_bot(move |ws, peer| {
        tx.send(peer.port()).unwrap();
        // Never reads, never writes.
        std::thread::sleep(Duration::from_secs(30));
        drop(ws);
    });
    let uri = format!("ws://127.0.0.1:{port}/");
    let keepalive = "keepalive-interval=300000000 keepalive-timeout=300000000";
    let pipeline = launch(&format!(
        "audiotestsrc is-live=false ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! \
         pipecatwssink connection=c uri={uri} {keepalive} \
         pipecatwsrc connection=c uri={uri} {keepalive} ! fakesink sync=false"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let ours = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(10),
    );
    let (text, _) = error_of(&end.expect("the frozen bot went unnoticed").0).expect("an ERROR");
    assert!(text.contains("did not answer a ping"), "{text}");
    assert!(socket_held(ours, port), "the test did not find the socket");
    pipeline.set_state(gst::State::Null).unwrap();
    let ended = Instant::now();
    while socket_held(ours, port) && ended.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = socket_held(ours, port);
    println!("socket let go after {:?}", ended.elapsed());
    assert!(
        !held,
        "the socket to a bot that stopped reading is still held"
    );
}

/// A Genesys AudioHook bot that asks to end the session (`disconnect`) and
/// never confirms it (`closed`): the call still ends, cleanly (EOS), within
/// the grace, and the bot got our `close`.
#[test]
fn a_disconnect_never_confirmed_still_ends_the_call() {
    init();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let port = one_bot(move |mut ws, _| {
        let disconnect = r#"{"version":"2","type":"disconnect","id":"x","seq":1,"parameters":{"reason":"completed"}}"#;
        ws.send(Message::Text(disconnect.into())).unwrap();
        // Reads on (our `close` among what comes), never answers.
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let _ = seen_tx.send(t.to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let pipeline = launch(&format!(
        "pipecatwsrc uri=ws://127.0.0.1:{port}/ serializer=genesys ! fakesink sync=false"
    ));
    let t = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Error, gst::MessageType::Eos],
        Duration::from_secs(5),
    );
    let took = t.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    let (msg, _) = end.expect("the call stayed open after the bot's disconnect");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{:?}", error_of(&msg));
    println!("unconfirmed disconnect ended the call after {took:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    let seen: Vec<String> = seen_rx.try_iter().collect();
    assert!(
        seen.iter().any(|t| t.contains(r#""type":"close""#)),
        "the bot never got our close: {seen:?}"
    );
}
