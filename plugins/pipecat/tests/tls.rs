// SPDX-License-Identifier: MPL-2.0
//! wss:// with a self-signed certificate: refused by default (the error says
//! it is the certificate), accepted with `tls-verify=false`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gst::prelude::*;
use tokio_tungstenite::tungstenite::{self, Message};

/// A wss:// server on localhost with a fresh self-signed certificate; each
/// connection that completes the handshake gets one audio frame and a close.
fn tls_server() -> u16 {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tls = rustls::StreamOwned::new(
                rustls::ServerConnection::new(config.clone()).unwrap(),
                stream,
            );
            let Ok(mut ws) = tungstenite::accept(tls) else {
                continue;
            };
            let frame = gstpipecat::protobuf::encode_audio(&[1, 0, 2, 0], 16000, 1);
            let _ = ws.send(Message::Binary(frame.into()));
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    });
    port
}

#[test]
fn self_signed_certificate_is_refused_by_default() {
    init();
    let port = tls_server();
    let pipeline = launch(&format!(
        "pipecatwsrc uri=wss://localhost:{port}/ ! fakesink"
    ));
    // Connecting runs in the background: the refusal comes on the bus.
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Error],
        Duration::from_secs(2),
    );
    let (text, _) = error_of(&end.expect("an ERROR").0).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    println!("{text}");
    assert!(
        text.contains("TLS") && text.contains("certificate"),
        "{text}"
    );
}

#[test]
fn tls_verify_false_accepts_it() {
    init();
    let port = tls_server();
    let pipeline = launch(&format!(
        "pipecatwsrc uri=wss://localhost:{port}/ tls-verify=false ! appsink name=sink sync=false"
    ));
    let received = record(&pipeline, "sink");
    pipeline.set_state(gst::State::Playing).unwrap();
    let (_, end) = wait_for(
        &pipeline,
        &[gst::MessageType::Eos, gst::MessageType::Error],
        Duration::from_secs(5),
    );
    let (msg, _) = end.expect("the stream must end");
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(error_of(&msg), None);
    assert_eq!(received.lock().unwrap().samples, vec![1, 2]);
}
