//! Error bodies: every 4xx/5xx a listener sends says what was wrong, whether the router (404, 405,
//! 503) or hyper itself (400, 414, 431 for request heads it cannot parse) produced it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::body::HttpBody as _;

/// Middleware: an error response with an empty body gets a plain-text one naming the status, the
/// method and the path.
pub async fn fill_empty(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || method == Method::HEAD
        || !resp.body().is_end_stream()
    {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    let body = match status {
        StatusCode::NOT_FOUND => format!("404 Not Found: no route for {method} {path}\n"),
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "405 Method Not Allowed: {path} does not take {method} (the Allow header lists the \
             methods it takes)\n"
        ),
        other => format!(
            "{} {}: {method} {path}\n",
            other.as_u16(),
            other.canonical_reason().unwrap_or("error")
        ),
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The body for a response hyper writes itself after a request head it cannot parse (hyper's
/// `role::Server::on_error` sends these with `content-length: 0` and offers no hook), so the
/// connection wrapper can give it one. None for any other response head.
pub(crate) fn for_automatic(head: &[u8]) -> Option<&'static str> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let ends = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if ends != head.len() || !contains_ci(head, b"\r\ncontent-length: 0\r\n") {
        return None;
    }
    Some(match status {
        b"400" => "400 Bad Request: the request line or a header is malformed\n",
        b"414" => "414 URI Too Long: the request target is longer than 65,534 bytes\n",
        b"431" => {
            "431 Request Header Fields Too Large: the request head is over 408 KiB or over 100 \
             headers\n"
        }
        _ => return None,
    })
}

/// `head` with `body` added: its content-length and a content type set, the body appended.
pub(crate) fn with_body(head: &[u8], body: &str) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(head.len() + body.len() + 64);
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("content-length: {}\r\n", body.len()));
            out.push_str("content-type: text/plain; charset=utf-8\r\n");
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_heads_get_a_body_and_others_are_left_alone() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let body = for_automatic(head).unwrap();
        let out = String::from_utf8(with_body(head, body)).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 ")
                && out.contains(&format!("content-length: {}\r\n", body.len()))
                && out.ends_with(&format!("\r\n\r\n{body}")),
            "{out}"
        );
        // A response with a body of its own, a 200, or a head followed by body bytes: untouched.
        assert!(for_automatic(b"HTTP/1.1 431 X\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(for_automatic(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(for_automatic(b"HTTP/1.1 400 X\r\ncontent-length: 0\r\n\r\nxx").is_none());
    }
}
