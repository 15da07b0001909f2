// SPDX-License-Identifier: MPL-2.0
//! Many bot legs in one process: 200 `pipecatwsrc` connections, each on its
//! own WebSocket from one server, all receive every frame; when the server
//! dies (every socket reset, no close frame), every one of them reports it
//! with its cause, at once. The same for `pipecatwssharedsrc`.

mod common;

use std::io::Write;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 200;
const FRAMES: usize = 25;

/// 20 ms of 16 kHz mono protobuf audio, as a Pipecat bot sends it.
fn frame() -> Message {
    let audio = vec![7u8; 640];
    Message::Binary(gstpipecat::protobuf::encode_audio(&audio, 16000, 1).into())
}

/// Accepts `CONNECTIONS` sockets, sends each `FRAMES` frames, then waits at
/// `die` and resets every socket (SO_LINGER 0: RST, no close frame).
fn server(die: Arc<Barrier>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(CONNECTIONS) {
            let stream = stream.unwrap();
            let die = die.clone();
            std::thread::spawn(move || {
                let mut ws = tokio_tungstenite::tungstenite::accept(stream).unwrap();
                for _ in 0..FRAMES {
                    ws.send(frame()).unwrap();
                }
                ws.get_mut().flush().unwrap();
                die.wait();
                reset_on_close(ws.get_ref());
                drop(ws);
            });
        }
    });
    port
}

/// SO_LINGER 0: closing the socket sends RST, as a crashed host's kernel
/// does, with no WebSocket close frame before it.
fn reset_on_close(stream: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a plain setsockopt on a socket this thread owns.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn two_hundred_connections_get_every_frame_and_all_learn_of_the_death() {
    every_frame_then_the_death_at_once("pipecatwsrc");
}

#[test]
fn two_hundred_shared_connections_get_every_frame_and_all_learn_of_the_death() {
    every_frame_then_the_death_at_once("pipecatwssharedsrc");
}

fn every_frame_then_the_death_at_once(source: &str) {
    init();
    let die = Arc::new(Barrier::new(CONNECTIONS + 1));
    let port = server(die.clone());
    type Call = (
        gst::Pipeline,
        Arc<Mutex<Received>>,
        Arc<Mutex<Option<(Instant, String)>>>,
    );
    let calls: Vec<Call> = (0..CONNECTIONS)
        .map(|_| {
            let pipeline = launch(&format!(
                "{source} uri=ws://127.0.0.1:{port}/ ! appsink name=sink sync=false"
            ));
            let received = record(&pipeline, "sink");
            // When the ERROR is posted, not when the test gets to read it.
            let error = Arc::new(Mutex::new(None));
            let e = error.clone();
            pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
                if let Some((text, _)) = error_of(msg) {
                    e.lock().unwrap().get_or_insert((Instant::now(), text));
                }
                gst::BusSyncReply::Pass
            });
            pipeline.set_state(gst::State::Playing).unwrap();
            (pipeline, received, error)
        })
        .collect();
    // Every frame reaches every connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    let complete = |r: &Arc<Mutex<Received>>| r.lock().unwrap().samples.len() == FRAMES * 320;
    while !calls.iter().all(|(_, r, _)| complete(r)) {
        assert!(
            Instant::now() < deadline,
            "only {} of {CONNECTIONS} connections got all {FRAMES} frames",
            calls.iter().filter(|(_, r, _)| complete(r)).count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(calls.iter().all(|(_, _, e)| e.lock().unwrap().is_none()));
    // The server dies; every connection must say so, and why.
    die.wait();
    let died = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.iter().any(|(_, _, e)| e.lock().unwrap().is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut slowest = Duration::ZERO;
    for (_, _, error) in &calls {
        let (at, text) = error
            .lock()
            .unwrap()
            .clone()
            .expect("an ERROR when the bot died");
        assert!(text.contains("connection lost"), "{text}");
        slowest = slowest.max(at.saturating_duration_since(died));
    }
    for (pipeline, _, _) in &calls {
        pipeline.set_state(gst::State::Null).unwrap();
    }
    println!(
        "{CONNECTIONS} {source} connections: every frame received; the death reported by all within {slowest:?}"
    );
    // Measured well under 100 ms here; the bound only catches a blind timeout.
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
}
