//! Delegated authentication and authorization against the fake API server: TokenReview,
//! SubjectAccessReview, their caches and TTLs, an outage, and the published ConfigMap's lookup.

use super::*;

#[tokio::test]
async fn token_review_and_access_review_with_caches_and_an_api_server_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = FakeApi::start(delegated_fake()).await;
    let args = Args {
        authentication_kubeconfig: Some(api.kubeconfig(dir.path())),
        ..Default::default()
    };
    let s = Served::plain(Auth::new(&args).await.unwrap()).await;
    let c = reqwest::Client::new();
    let q = format!("{}/api/v1/query", s.url);

    let (code, _, body) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        "user=system:serviceaccount:monitoring:prometheus groups=system:serviceaccounts"
    );
    assert_eq!((api.token_reviews(), api.access_reviews()), (1, 1));
    // Cache hit: neither review is asked again within the TTL.
    for _ in 0..3 {
        let (code, _, _) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-prometheus")).await;
        assert_eq!(code, 200);
    }
    assert_eq!((api.token_reviews(), api.access_reviews()), (1, 1));

    // Authenticated but not allowed: 403 with the reason; the denial is cached too.
    let r = format!("{}/-/reload", s.url);
    let (code, _, body) = send(&c, reqwest::Method::POST, r.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(
            "user=system:serviceaccount:monitoring:prometheus, verb=create, path=/-/reload"
        ),
        "{body}"
    );
    assert!(body.contains("no RBAC policy matched"), "{body}");
    let (code, _, _) = send(&c, reqwest::Method::POST, r.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 403);
    assert_eq!(api.access_reviews(), 2);

    // A token the API server does not know: 401, cached as well.
    for _ in 0..2 {
        let (code, www, body) = send(&c, reqwest::Method::GET, q.clone(), Some("stolen")).await;
        assert_eq!((code, www.is_some()), (401, true), "{body}");
    }
    assert_eq!(api.token_reviews(), 2);
    assert!(api.violations().is_empty(), "{:?}", api.violations());

    // The API server goes down: a cached identity and decision still serve; a new token is 401
    // (it cannot be reviewed); a known token needing a new decision is 500; the listener lives on.
    api.stop().await;
    let (code, _, _) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 200);
    let (code, www, body) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-nobody")).await;
    assert_eq!((code, www.is_some()), (401, true), "{body}");
    assert!(body.contains("could not be checked"), "{body}");
    let (code, _, body) = send(
        &c,
        reqwest::Method::GET,
        format!("{}/nope", s.url),
        Some("sa-prometheus"),
    )
    .await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("Authorization error (user=system:serviceaccount:monitoring:prometheus, verb=get, path=/nope)"), "{body}");
    let (code, _, _) = send(&c, reqwest::Method::GET, format!("{}/healthz", s.url), None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn zero_ttls_ask_the_api_server_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(delegated_fake()).await;
    let args = Args {
        authentication_kubeconfig: Some(api.kubeconfig(dir.path())),
        authentication_token_webhook_cache_ttl: Some(vigil_common::Duration::ZERO),
        authorization_webhook_cache_authorized_ttl: Some(vigil_common::Duration::ZERO),
        ..Default::default()
    };
    let s = Served::plain(Auth::new(&args).await.unwrap()).await;
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let (code, _, _) = send(
            &c,
            reqwest::Method::GET,
            format!("{}/api/v1/query", s.url),
            Some("sa-prometheus"),
        )
        .await;
        assert_eq!(code, 200);
    }
    assert_eq!((api.token_reviews(), api.access_reviews()), (3, 3));
    assert_eq!(api.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn an_unreadable_authentication_configmap_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(Fake {
        published: None,
        ..delegated_fake()
    })
    .await;
    let kubeconfig = api.kubeconfig(dir.path());
    let e = match Auth::new(&Args {
        authentication_kubeconfig: Some(kubeconfig.clone()),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("started without the ConfigMap"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("extension-apiserver-authentication")
            && e.contains("--authentication-skip-lookup")
            && e.contains("not found"),
        "{e}"
    );
    let args = Args {
        authentication_kubeconfig: Some(kubeconfig),
        authentication_skip_lookup: true,
        ..Default::default()
    };
    let auth = Auth::new(&args).await.unwrap();
    assert!(auth.enabled() && auth.client_cert_verifier().is_none());
    assert_eq!(api.configmap_reads(), 1);
}
