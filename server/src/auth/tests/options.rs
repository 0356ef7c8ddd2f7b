//! Options checked at start-up: bad values are errors naming the flag (or the config key), and a
//! listener beyond loopback that takes writes needs authentication.

use super::*;

/// The error [`Auth::new`] gives for `args`, as text.
async fn setup_error(args: Args) -> String {
    match Auth::new(&args).await {
        Ok(_) => panic!("Auth::new accepted {args:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn bad_options_are_errors_naming_the_flag() {
    // A TTL is a duration where it is read: a flag or a config key.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        auth: Args,
    }
    let e = <Cli as clap::Parser>::try_parse_from([
        "vigil",
        "--authentication-token-webhook-cache-ttl",
        "ten",
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("--authentication-token-webhook-cache-ttl") && e.contains("ten"),
        "{e}"
    );
    let ok = <Cli as clap::Parser>::try_parse_from(["vigil", "--authorization-webhook-cache-authorized-ttl", "1m30s"]).unwrap();
    assert_eq!(ok.auth.authorization_webhook_cache_authorized_ttl, Some(vigil_common::Duration::from_secs(90)));
    let e = vigil_common::config::from_yaml::<Args>(
        "authorization_webhook_cache_unauthorized_ttl: 10\n",
        std::path::Path::new("c.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("key `authorization_webhook_cache_unauthorized_ttl`") && e.contains("no unit"),
        "{e}"
    );
    let e = setup_error(Args {
        requestheader_allowed_names: vec!["x".into()],
        ..Default::default()
    })
    .await;
    assert!(
        e.contains("--requestheader-allowed-names") && e.contains("--requestheader-client-ca-file"),
        "{e}"
    );
    let e = setup_error(Args {
        client_ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    })
    .await;
    assert!(e.contains("--client-ca-file /nonexistent/ca.pem"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = setup_error(Args {
        requestheader_client_ca_file: Some(empty),
        ..Default::default()
    })
    .await;
    assert!(
        e.contains("--requestheader-client-ca-file") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = setup_error(Args {
        authentication_kubeconfig: Some("/nonexistent/kubeconfig".into()),
        ..Default::default()
    })
    .await;
    assert!(
        e.contains("--authentication-kubeconfig /nonexistent/kubeconfig"),
        "{e}"
    );
    let e = setup_error(Args {
        authorization_always_allow_paths: vec!["healthz".into()],
        ..Default::default()
    })
    .await;
    assert!(e.contains("--authorization-always-allow-paths"), "{e}");
}

#[tokio::test]
async fn writes_on_a_non_loopback_listener_need_authentication() {
    let off = Auth::disabled();
    let any: SocketAddr = "0.0.0.0:8082".parse().unwrap();
    let lo: SocketAddr = "127.0.0.1:8082".parse().unwrap();
    let e = off
        .check_listener("--listen", any, &["/-/reload", "/api/v2/silences"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--listen 0.0.0.0:8082")
            && e.contains("/-/reload, /api/v2/silences")
            && e.contains("--token-auth-file"),
        "{e}"
    );
    off.check_listener("--listen", lo, &["/-/reload"]).unwrap();
    off.check_listener("--listen", any, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let on = Auth::new(&Args {
        token_auth_file: Some(token_file(dir.path())),
        ..Default::default()
    })
    .await
    .unwrap();
    on.check_listener("--listen", any, &["/-/reload"]).unwrap();
}
