//! The static token file: read and write access, 401 and 403 answers, open health.

use super::*;

#[tokio::test]
async fn static_token_file_read_and_write_access() {
    let dir = tempfile::tempdir().unwrap();
    let args = Args {
        token_auth_file: Some(token_file(dir.path())),
        ..Default::default()
    };
    let s = Served::plain(Auth::new(&args).await.unwrap()).await;
    let c = reqwest::Client::new();
    let q = format!("{}/api/v1/query", s.url);
    let (code, www, body) = send(&c, reqwest::Method::GET, q.clone(), None).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(www.as_deref(), Some(r#"Bearer realm="vigil""#));
    assert!(body.contains("no credentials"), "{body}");
    let (code, www, body) = send(&c, reqwest::Method::GET, q.clone(), Some("not-a-token")).await;
    assert_eq!((code, www.is_some()), (401, true), "{body}");
    assert!(body.contains("unknown bearer token"), "{body}");
    let (code, _, body) = send(&c, reqwest::Method::GET, q.clone(), Some("read-token-0123456789")).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "user=grafana groups=dashboards")
    );
    let reload = format!("{}/-/reload", s.url);
    let (code, _, body) = send(&c, reqwest::Method::POST, reload.clone(), Some("read-token-0123456789")).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("Forbidden (user=grafana, verb=create, path=/-/reload)"),
        "{body}"
    );
    let (code, _, body) = send(&c, reqwest::Method::POST, reload, Some("write-token-0123456789")).await;
    assert_eq!((code, body.as_str()), (200, "reloaded"));
    // Health stays open; an unknown path is still behind authentication.
    let (code, _, _) = send(&c, reqwest::Method::GET, format!("{}/healthz", s.url), None).await;
    assert_eq!(code, 200);
    let (code, _, _) = send(&c, reqwest::Method::GET, format!("{}/nope", s.url), None).await;
    assert_eq!(code, 401);
    // A malformed Authorization header is a 401 that says so.
    let resp = c
        .get(q)
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.unwrap().contains("Bearer <token>"));
}
