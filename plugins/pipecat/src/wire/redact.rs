// SPDX-License-Identifier: MPL-2.0
//! Secrets never reach a log line or an error text: tokens in a URI's
//! user-info, path, query or fragment, and header values.
//!
//! Bots put tokens in the path too (`wss://bot/ws/<session-token>`), and no
//! rule tells a token segment from a route, so every path segment but the
//! first is hidden: `wss://bot/ws/***`. The first names the endpoint, which
//! an error about a wrong path needs.

/// The URI with user-info, path segments after the first, every query
/// value and the fragment replaced by `***`.
pub fn redact_uri(uri: &str) -> String {
    let Ok(mut url) = url::Url::parse(uri) else {
        return "<unparsable URI>".into();
    };
    if !url.username().is_empty() {
        let _ = url.set_username("***");
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_owned).collect())
        .unwrap_or_default();
    if segments.len() > 1 {
        let mut path = format!("/{}", segments[0]);
        for segment in &segments[1..] {
            path.push_str(if segment.is_empty() { "/" } else { "/***" });
        }
        url.set_path(&path);
    }
    if url.fragment().is_some() {
        url.set_fragment(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, _)| (k.into_owned(), "***".into()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Every secret-looking piece of `uri` and every header value, for scrubbing
/// text that came from elsewhere (library errors may quote a URL).
pub fn secrets(uri: &str, headers: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = headers.iter().map(|(_, v)| v.clone()).collect();
    if let Ok(url) = url::Url::parse(uri) {
        out.push(url.username().to_owned());
        out.extend(url.password().map(str::to_owned));
        out.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        out.extend(url.query().map(str::to_owned));
        out.extend(url.fragment().map(str::to_owned));
        if let Some(segments) = url.path_segments() {
            out.extend(segments.skip(1).map(str::to_owned));
        }
    }
    out.retain(|s| s.len() >= 3);
    out
}

/// `text` with every secret replaced by `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hidden() {
        let uri = "wss://alice:hunter2@bot.example:8443/ws?token=abc123&room=r1";
        let shown = redact_uri(uri);
        assert!(
            !shown.contains("hunter2") && !shown.contains("abc123") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("bot.example:8443/ws"), "{shown}");
        let in_path = "wss://bot.example/ws/sess-4f9a2c7e11/join#tok=zz9plural";
        assert_eq!(redact_uri(in_path), "wss://bot.example/ws/***/***#***");
        let path_secrets = secrets(in_path, &[]);
        let text = scrub(
            "could not reach /ws/sess-4f9a2c7e11/join#tok=zz9plural",
            &path_secrets,
        );
        assert!(
            !text.contains("4f9a2c7e11") && !text.contains("zz9plural"),
            "{text}"
        );
        let s = secrets(uri, &[("Authorization".into(), "Bearer xyz987".into())]);
        let text = scrub(
            "failed for wss://alice:hunter2@bot.example/ws?token=abc123 with Bearer xyz987",
            &s,
        );
        assert!(
            !text.contains("hunter2") && !text.contains("abc123") && !text.contains("xyz987"),
            "{text}"
        );
    }
}
