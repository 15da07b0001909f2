// SPDX-License-Identifier: MPL-2.0
//! How a connection ended, in words a person can act on.
//!
//! The bot's close code is the one the bot sent, even one that is not
//! allowed on the wire (999, 1005, ...): `frames` keeps the close frame's
//! payload as it came.

use tokio_tungstenite::tungstenite;

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The bot hung up: a close frame with 1000, 1001 or no code.
    Closed { code: u16, reason: String },
    /// Anything else; `text` is for people, `debug` has the error chain.
    Failed { text: String, debug: String },
}

/// The end a close frame's payload (as the bot sent it) means.
pub fn end_of_close(payload: &[u8]) -> End {
    if payload.len() < 2 {
        // RFC 6455 7.1.5: no status code; 1005 stands for that.
        return End::Closed {
            code: 1005,
            reason: String::new(),
        };
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
    if matches!(code, 1000 | 1001) {
        return End::Closed { code, reason };
    }
    let meaning = match code {
        1002 => "protocol error",
        1003 => "unsupported data",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "a required extension is missing",
        1011 => "internal error, or no pong to its keepalive ping",
        1012 => "service restart",
        1013 => "server busy, try again later",
        1014 => "bad gateway",
        1004 | 1005 | 1006 | 1015 => "a reserved code that must never be sent",
        4001 | 4003 => "not authorized",
        0..=999 | 1016..=2999 => "not a valid close code",
        _ => "failure",
    };
    let reason_text = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    End::Failed {
        text: format!(
            "Pipecat bot closed the connection with code {code} ({meaning}){reason_text}"
        ),
        debug: format!("close frame code {code} reason {reason:?}, as sent on the wire"),
    }
}

/// What a failed read of the bot's socket means.
pub fn read_cause(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionReset => "connection reset by peer".into(),
        ErrorKind::UnexpectedEof => "closed without a close frame (1006)".into(),
        _ => format!("read error ({err})"),
    }
}

pub fn connect_cause(err: &tungstenite::Error) -> String {
    use std::io::ErrorKind;
    use tungstenite::Error;
    match err {
        Error::Http(response) => format!(
            "the server answered the WebSocket upgrade with HTTP {}{}",
            response.status(),
            match response.status().as_u16() {
                401 | 403 => " (authentication refused: check extra-headers or the URI's token)",
                404 => " (no bot at that path)",
                _ => "",
            }
        ),
        Error::Io(e) if e.kind() == ErrorKind::ConnectionRefused => {
            "connection refused (is the bot running?)".into()
        }
        Error::Io(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(why)) => format!(
                "TLS handshake failed: the bot's certificate was refused ({why:?}); tls-verify=false skips the check, for test bots only"
            ),
            Some(tls) => format!("TLS handshake failed ({tls})"),
            None => format!("{e}"),
        },
        Error::Tls(t) => format!("TLS error ({t})"),
        Error::Url(u) => format!("bad URI ({u})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_sent() {
        let End::Failed { text, .. } = end_of_close(&[0x03, 0xE7]) else {
            panic!()
        };
        assert!(
            text.contains("code 999") && text.contains("not a valid"),
            "{text}"
        );
        let End::Failed { text, .. } = end_of_close(&1005u16.to_be_bytes()) else {
            panic!()
        };
        assert!(
            text.contains("code 1005") && text.contains("reserved"),
            "{text}"
        );
        assert_eq!(
            end_of_close(&[]),
            End::Closed {
                code: 1005,
                reason: String::new()
            }
        );
        assert!(matches!(
            end_of_close(&1000u16.to_be_bytes()),
            End::Closed { code: 1000, .. }
        ));
    }
}
