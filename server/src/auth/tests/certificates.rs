//! Client certificates over real TLS: `--client-ca-file` subjects, the kube-apiserver's front
//! proxy (configured or published by the API server), and certificate users authorized with
//! SubjectAccessReview.

use super::*;
use test_tls::{client_cert, new_ca};

#[tokio::test]
async fn client_certificates_and_the_front_proxy_over_real_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (clients, front, stranger) = (new_ca("client-ca"), new_ca("front-proxy-ca"), new_ca("someone-else"));
    let (client_pem, front_pem) = (
        dir.path().join("client-ca.pem"),
        dir.path().join("front-proxy-ca.pem"),
    );
    std::fs::write(&client_pem, &clients.0).unwrap();
    std::fs::write(&front_pem, &front.0).unwrap();
    let args = Args {
        client_ca_file: Some(client_pem),
        requestheader_client_ca_file: Some(front_pem),
        requestheader_allowed_names: vec!["front-proxy-client".into()],
        token_auth_file: Some(token_file(dir.path())),
        ..Default::default()
    };
    let s = Served::tls(Auth::new(&args).await.unwrap()).await;
    let q = format!("{}/api/v1/query", s.url);

    // A certificate from --client-ca-file: CN is the user, O the groups (rcgen writes one O).
    let c = s.client(Some(client_cert(&clients, "alice", &["ops"])));
    let (code, _, body) = send(&c, reqwest::Method::GET, q.clone(), None).await;
    assert_eq!((code, body.as_str()), (200, "user=alice groups=ops"));

    // The kube-apiserver's front proxy: the user comes from X-Remote-User / X-Remote-Group.
    let fp = s.client(Some(client_cert(&front, "front-proxy-client", &[])));
    let resp = fp
        .get(q.clone())
        .header("X-Remote-User", "bob")
        .header("X-Remote-Group", "system:authenticated")
        .header("X-Remote-Group", "devs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "user=bob groups=system:authenticated,devs"
    );
    // The front proxy's certificate without X-Remote-User identifies nobody.
    let (code, www, _) = send(&fp, reqwest::Method::GET, q.clone(), None).await;
    assert_eq!((code, www.is_some()), (401, true));
    // X-Remote-User from a client that is not the front proxy is ignored: alice stays alice.
    let resp = c
        .get(q.clone())
        .header("X-Remote-User", "system:admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "user=alice groups=ops");
    // The front-proxy CA signed it, but the CN is not an allowed name.
    let other = s.client(Some(client_cert(&front, "mallory", &[])));
    let resp = other
        .get(q.clone())
        .header("X-Remote-User", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("\"mallory\" is not in --requestheader-allowed-names"));

    // No certificate, no token: 401; a token still works over TLS.
    let anon = s.client(None);
    let (code, www, _) = send(&anon, reqwest::Method::GET, q.clone(), None).await;
    assert_eq!((code, www.is_some()), (401, true));
    let (code, _, body) = send(
        &anon,
        reqwest::Method::GET,
        q.clone(),
        Some("read-token-0123456789"),
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "user=grafana groups=dashboards")
    );

    // A certificate from an unknown CA fails the handshake.
    let bad = s.client(Some(client_cert(&stranger, "eve", &[])));
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        bad.get(q.clone()).send(),
    )
    .await
    .unwrap();
    assert!(
        r.is_err(),
        "a stranger's certificate was accepted: {:?}",
        r.map(|r| r.status())
    );
}

#[tokio::test]
async fn certificate_users_are_authorized_with_subject_access_review() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(delegated_fake()).await;
    let clients = new_ca("client-ca");
    let client_pem = dir.path().join("client-ca.pem");
    std::fs::write(&client_pem, &clients.0).unwrap();
    let args = Args {
        client_ca_file: Some(client_pem),
        authorization_kubeconfig: Some(api.kubeconfig(dir.path())),
        ..Default::default()
    };
    let s = Served::tls(Auth::new(&args).await.unwrap()).await;
    let alice = s.client(Some(client_cert(&clients, "alice", &["ops"])));
    let (code, _, body) = send(
        &alice,
        reqwest::Method::GET,
        format!("{}/api/v1/query", s.url),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "user=alice groups=ops"));
    let (code, _, body) = send(
        &alice,
        reqwest::Method::POST,
        format!("{}/-/reload", s.url),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("Forbidden (user=alice, verb=create, path=/-/reload)"),
        "{body}"
    );
    // metrics.k8s.io paths are asked as resources (list nodes allowed: on to the router's 404).
    let m = format!("{}/apis/metrics.k8s.io/v1beta1", s.url);
    let (code, _, _) = send(&alice, reqwest::Method::GET, format!("{m}/nodes"), None).await;
    assert_eq!(code, 404);
    let (code, _, body) = send(
        &alice,
        reqwest::Method::GET,
        format!("{m}/namespaces/kube-system/pods"),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("verb=list, resource=pods.metrics.k8s.io, namespace=kube-system"),
        "{body}"
    );
    assert_eq!((api.token_reviews(), api.access_reviews()), (0, 4));
    assert!(api.violations().is_empty(), "{:?}", api.violations());
}

#[tokio::test]
async fn the_front_proxy_ca_published_by_the_api_server_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let front = new_ca("front-proxy-ca");
    let api = FakeApi::start(Fake {
        published: Some(json!({
            "requestheader-client-ca-file": front.0,
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        })),
        ..delegated_fake()
    })
    .await;
    let args = Args {
        authentication_kubeconfig: Some(api.kubeconfig(dir.path())),
        ..Default::default()
    };
    let s = Served::tls(Auth::new(&args).await.unwrap()).await;
    assert_eq!(api.configmap_reads(), 1);
    let q = format!("{}/api/v1/query", s.url);
    let fp = s.client(Some(client_cert(&front, "front-proxy-client", &[])));
    let resp = fp
        .get(q.clone())
        .header("X-Remote-User", "bob")
        .header("X-Remote-Group", "devs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "user=bob groups=devs");
    let other = s.client(Some(client_cert(&front, "mallory", &[])));
    let resp = other
        .get(q)
        .header("X-Remote-User", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(api.violations().is_empty(), "{:?}", api.violations());
}
