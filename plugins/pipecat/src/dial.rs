//! Opening the WebSocket: TCP, TLS for `wss://`, the HTTP upgrade. Done by
//! hand rather than by `connect_async` so that the close sniffer sits above
//! TLS (it must see the bot's frames in the clear), and so the whole of it is
//! one future that stopping the pipeline can drop at any point.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
pub use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Error};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::close::{CloseSniffer, LastClose};

pub type Socket = WebSocketStream<CloseSniffer<MaybeTlsStream<TcpStream>>>;

/// Builds the upgrade request for `uri` with `headers`, or says what is
/// wrong with them.
pub fn request(uri: &str, headers: &[(String, String)]) -> Result<Request, String> {
    let mut request = uri
        .into_client_request()
        .map_err(|_| "the URI is not a ws:// or wss:// URI".to_string())?;
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = tungstenite::http::HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name}"))?;
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

/// Connects to the bot; the close sniffer's output comes with the socket.
pub async fn dial(
    request: Request,
    config: WebSocketConfig,
    tls_verify: bool,
) -> Result<(Socket, LastClose), Error> {
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(Error::Url(
                tungstenite::error::UrlError::UnsupportedUrlScheme,
            ));
        }
    };
    let host = uri
        .host()
        .ok_or(Error::Url(tungstenite::error::UrlError::NoHostName))?;
    // An IPv6 literal comes in brackets.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    let stream = if secure {
        let config = if tls_verify {
            verified_config()
        } else {
            crate::tls::unverified()
        };
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| Error::Tls(tungstenite::error::TlsError::InvalidDnsName))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        MaybeTlsStream::Rustls(tls)
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    let (sniffer, last_close) = CloseSniffer::new(stream);
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(request, sniffer, Some(config)).await?;
    Ok((socket, last_close))
}

/// Verifies the bot's certificate against the webpki roots.
fn verified_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::LazyLock<Arc<rustls::ClientConfig>> =
        std::sync::LazyLock::new(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        });
    CONFIG.clone()
}
