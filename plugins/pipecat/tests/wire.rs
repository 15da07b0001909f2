// SPDX-License-Identifier: MPL-2.0
//! The WebSocket as a bot may write it, byte for byte: frames in the same
//! packet as the upgrade's answer, a message in fragments with a ping
//! between them, a close frame. Both sources must play every sample,
//! answer the ping and the close, and end with EOS.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use callaudio_testkit::pipecat::server_frame as frame;
use common::*;
use gst::prelude::*;
use gstpipecat::protobuf;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};

fn le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// What the bot read back from us: pong payloads, and the close code.
#[derive(Debug, Default)]
struct Answers {
    pongs: Vec<Vec<u8>>,
    close: Option<u16>,
}

/// A bot that writes `after_answer` in the same write as its upgrade
/// answer, then reads what comes back until our close.
fn one_write_bot(after_answer: Vec<u8>) -> (u16, std::sync::mpsc::Receiver<Answers>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a WebSocket key");
        let mut wire = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        wire.extend(after_answer);
        stream.write_all(&wire).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut ws = WebSocket::from_raw_socket(stream, Role::Server, None);
        let mut answers = Answers::default();
        loop {
            match ws.read() {
                Ok(Message::Pong(data)) => answers.pongs.push(data.to_vec()),
                Ok(Message::Close(frame)) => {
                    answers.close = frame.map(|f| f.code.into());
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(answers);
    });
    (port, rx)
}

#[test]
fn frames_in_the_upgrade_s_packet_and_in_fragments_are_played_and_answered() {
    init();
    let samples = ramp(1600);
    let (first, second) = samples.split_at(800);
    let first = protobuf::encode_audio(&le_bytes(first), 16000, 1);
    let second = protobuf::encode_audio(&le_bytes(second), 16000, 1);
    let (a, rest) = first.split_at(100);
    let (b, c) = rest.split_at(700);
    let mut bytes = Vec::new();
    bytes.extend(frame(false, 0x2, a));
    bytes.extend(frame(false, 0x0, b));
    bytes.extend(frame(true, 0x9, b"are you there"));
    bytes.extend(frame(true, 0x0, c));
    bytes.extend(frame(true, 0x2, &second));
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend(b"bye");
    bytes.extend(frame(true, 0x8, &close));

    for source in ["pipecatwsrc", "pipecatwssharedsrc"] {
        let (port, answers) = one_write_bot(bytes.clone());
        let pipeline = launch(&format!(
            "{source} uri=ws://127.0.0.1:{port}/ ! appsink name=out sync=false"
        ));
        let received = record(&pipeline, "out");
        pipeline.set_state(gst::State::Playing).unwrap();
        let (_, end) = wait_for(
            &pipeline,
            &[gst::MessageType::Error, gst::MessageType::Eos],
            Duration::from_secs(5),
        );
        pipeline.set_state(gst::State::Null).unwrap();
        let (msg, _) = end.unwrap_or_else(|| panic!("{source}: no EOS"));
        assert!(
            msg.type_() == gst::MessageType::Eos,
            "{source}: {:?}",
            error_of(&msg)
        );
        assert_eq!(received.lock().unwrap().samples, samples, "{source}");
        let answers = answers
            .recv_timeout(Duration::from_secs(5))
            .expect("the bot heard back");
        assert_eq!(answers.pongs, vec![b"are you there".to_vec()], "{source}");
        assert_eq!(answers.close, Some(1000), "{source}");
    }
}

/// Whether this process's TCP socket on local `port` acknowledges at once
/// (Linux reports TCP_QUICKACK as "not in delayed-ACK mode").
fn quick_acks_on(port: u16) -> Option<bool> {
    use std::os::fd::BorrowedFd;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Some(fd) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is open in this process for the length of
        // this loop's step (a closed one only fails the calls below).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let ours = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if ours {
            return socket.tcp_quickack().ok();
        }
    }
    None
}

#[test]
fn delayed_ack_leaves_the_bot_s_messages_to_tcp_s_delayed_pace() {
    init();
    for delayed in [false, true] {
        let (peer_tx, peer_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let port = callaudio_testkit::pipecat::one_bot(move |mut ws, peer| {
            let _ = peer_tx.send(peer);
            let message = protobuf::encode_audio(&le_bytes(&ramp(320)), 16000, 1);
            while stop_rx.recv_timeout(Duration::from_millis(20)).is_err() {
                if ws.send(Message::Binary(message.clone().into())).is_err() {
                    return;
                }
            }
        });
        let pipeline = launch(&format!(
            "pipecatwssharedsrc uri=ws://127.0.0.1:{port}/ delayed-ack={delayed} ! appsink name=out sync=false"
        ));
        let received = record(&pipeline, "out");
        pipeline.set_state(gst::State::Playing).unwrap();
        let ours = peer_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("connected")
            .port();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while received.lock().unwrap().samples.len() < 5 * 320 {
            assert!(std::time::Instant::now() < deadline, "no audio");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Linux leaves delayed-ACK mode by itself when its timer fires (a
        // late bot), and the source sets it again at the next read: looked
        // at a few times, it must be seen, and without the property never.
        let seen: Vec<bool> = (0..20)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(10));
                quick_acks_on(ours).expect("our socket")
            })
            .collect();
        let _ = stop_tx.send(());
        pipeline.set_state(gst::State::Null).unwrap();
        if delayed {
            assert!(seen.contains(&false), "never delayed: {seen:?}");
        } else {
            assert!(
                !seen.contains(&false),
                "delayed without the property: {seen:?}"
            );
        }
    }
}
