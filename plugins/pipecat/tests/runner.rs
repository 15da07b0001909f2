// SPDX-License-Identifier: MPL-2.0
//! Each telephony serializer against Pipecat's own development runner
//! (`pipecat.runner.run`, its `/ws` route), as a bot is deployed: the runner
//! must tell the provider and the call's ids from the element's handshake,
//! build that provider's serializer, and then audio and DTMF must pass.

mod common;

use std::time::Duration;

use common::*;

/// (serializer=, what the runner calls the provider)
const PROVIDERS: [(&str, &str); 4] = [
    ("twilio", "twilio"),
    ("telnyx", "telnyx"),
    ("plivo", "plivo"),
    ("exotel", "exotel"),
];

#[test]
fn every_telephony_serializer_passes_pipecats_runner() {
    init();
    let bot = Bot::start_runner();
    let uri = format!("ws://127.0.0.1:{}/ws", bot.port);
    for (serializer, provider) in PROVIDERS {
        let ids = format!("stream-sid=S-{serializer} call-sid=C-{serializer}");
        // The runner reads the handshake, then builds the bot's pipeline:
        // audio that arrives meanwhile is not heard, as with a real
        // provider's stream.
        echo_round_trip(&uri, serializer, &ids, 4000);
        let detected = bot
            .line("DETECTED", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{serializer}: the runner never started the bot"));
        assert_eq!(
            detected,
            format!("DETECTED {provider} S-{serializer} C-{serializer}"),
            "the runner read the handshake of serializer={serializer} wrongly"
        );
        send_dtmf_through_the_sink(&uri, serializer, &bot);
    }
}
