//! The aggregator over HTTPS, as the kube-apiserver reaches the metrics.k8s.io APIService:
//! the self-signed pair made in --cert-dir, the same API as over HTTP, and bad TLS flags named.

use crate::support::{free_port, until};
use crate::support::aggregator::*;
use std::time::Duration;
use vigil_aggregator::sim::{Shape, Sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_api_is_served_over_https_with_a_self_signed_pair() {
    let sim = Sim::new(Shape {
        nodes: 1,
        pods_per_node: 2,
        containers_per_pod: 2,
        namespaces: 1,
    });
    let mut node = SimNode::start(&sim, 0, "127.0.0.1", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let secure = format!("127.0.0.1:{}", free_port());
    let cert_dir = dir.path().join("certs");
    let agg = Aggregator::start(&[
        "--nodes",
        &node.addr,
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
        "--secure-listen",
        &secure,
        "--cert-dir",
        cert_dir.to_str().unwrap(),
    ]);
    // The pair is written at start; the client trusts exactly that certificate (its SANs include 127.0.0.1).
    let cert_path = cert_dir.join("apiserver.crt");
    let cert = until("apiserver.crt written", Duration::from_secs(20), || {
        let p = cert_path.clone();
        async move { std::fs::read(&p).ok() }
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let https = format!("https://{secure}");
    let nodes = until("NodeMetrics over HTTPS", Duration::from_secs(30), || {
        let (client, url) = (
            client.clone(),
            format!("{https}/apis/metrics.k8s.io/v1beta1/nodes"),
        );
        async move {
            let v: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            (v["items"].as_array()?.len() == 1).then_some(v)
        }
    })
    .await;
    assert_eq!(nodes["kind"], "NodeMetricsList");
    // The same answer as over plain HTTP, which keeps working beside it.
    let discovery: serde_json::Value = client
        .get(format!("{https}/apis/metrics.k8s.io/v1beta1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery,
        get_json(&format!("{}/apis/metrics.k8s.io/v1beta1", agg.base)).await
    );
    // Plain HTTP on the TLS port gets no answer.
    let (status, _) = get(&format!("http://{secure}/healthz")).await;
    assert_eq!(
        status, 0,
        "plain HTTP must not be answered on the HTTPS port"
    );
    // A client that trusts another CA is refused.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let wrong = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(other.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    assert!(wrong.get(format!("{https}/healthz")).send().await.is_err());
    drop(agg);
    node.stop().await;
}

#[test]
fn tls_flags_without_their_partner_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let crt = dir.path().join("tls.crt");
    std::fs::write(&crt, "not a certificate\n").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("aggregator")
            .args([
                "--nodes",
                "127.0.0.1:9",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let secure = format!("127.0.0.1:{}", free_port());
    let e = run(&["--tls-cert-file", crt.to_str().unwrap()]);
    assert!(
        e.contains("--tls-cert-file") && e.contains("without --secure-listen"),
        "{e}"
    );
    let e = run(&[
        "--secure-listen",
        &secure,
        "--tls-cert-file",
        crt.to_str().unwrap(),
    ]);
    assert!(e.contains("go together"), "{e}");
    let e = run(&[
        "--secure-listen",
        &secure,
        "--tls-cert-file",
        crt.to_str().unwrap(),
        "--tls-private-key-file",
        crt.to_str().unwrap(),
    ]);
    assert!(
        e.contains("tls.crt") && e.contains("no PEM CERTIFICATE"),
        "{e}"
    );
}
