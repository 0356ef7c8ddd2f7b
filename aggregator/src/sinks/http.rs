//! What the HTTP sinks share: the client, and how a response becomes delivered, retry or reject.

use std::time::Duration;
use vigil_common::error_chain;

/// Why a request did not deliver its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Worth retrying: connection trouble, timeouts, 429 and 5xx.
    Retry(String),
    /// The server refused this payload for good (4xx other than 429): drop it and say why.
    Permanent(String),
}

/// Builds a sink's HTTP client.
pub fn client(timeout: Duration, insecure_ssl: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(insecure_ssl)
        .pool_max_idle_per_host(64)
        .build()
}

/// Turns a transport error into a retry.
pub fn transport_error(e: reqwest::Error) -> SendError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    SendError::Retry(format!("{kind} error: {}", error_chain(&e)))
}

/// Maps a response to delivered / retry / permanent, keeping the start of the server's reason.
pub async fn classify(resp: reqwest::Response) -> Result<(), SendError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let reason = format!("HTTP {}: {}", status.as_u16(), snippet(&text));
    if status.as_u16() == 429 || status.is_server_error() {
        Err(SendError::Retry(reason))
    } else {
        Err(SendError::Permanent(reason))
    }
}

/// The first 300 characters of a server's answer, on one line.
pub fn snippet(text: &str) -> String {
    let t: String = text.trim().chars().take(300).collect();
    t.replace('\n', " ")
}
