//! Tests of the strict `_bulk` test server itself, so the log shipper's tests can trust it.

use crate::support::es_bulk;
use crate::support::es_bulk::{EsServer, Options};
use serde_json::Value;
use std::io::Write;

async fn post(url: &str, ct: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", ct)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn enforces_content_type_newlines_and_action_lines() {
    let es = EsServer::start(Options::default()).await;
    let bulk = format!("{}/_bulk", es.url());
    let ok = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"m\":1}\n";
    assert_eq!(post(&bulk, "application/json", ok).await.0, 406);
    assert_eq!(
        post(&bulk, "application/x-ndjson", ok.trim_end()).await.0,
        400
    );
    let (st, v) = post(
        &bulk,
        "application/x-ndjson",
        "{\"create\":{\"_index\":\"a\",\"_type\":\"_doc\"}}\n{}\n",
    )
    .await;
    assert_eq!(st, 400);
    assert!(v["error"]["reason"].as_str().unwrap().contains("_type"));
    // An unknown action, a line that is not JSON, an action without its source line, and an
    // index name with upper case: each rejects the whole request.
    for body in [
        "{\"upsert\":{\"_index\":\"a\"}}\n{}\n",
        "{not json}\n{}\n",
        "{\"create\":{\"_index\":\"a\"}}\n",
        "{\"create\":{\"_index\":\"Upper\"}}\n{}\n",
    ] {
        let (st, v) = post(&bulk, "application/x-ndjson", body).await;
        assert_eq!(st, 400, "{body:?}: {v}");
    }
    assert_eq!(es.doc_count(), 0);
    assert_eq!(es.stats().rejected_requests, 7);
    // A source line that is not an object fails only its item.
    let (st, v) = post(&bulk, "application/x-ndjson", "{\"create\":{\"_index\":\"a\",\"_id\":\"x\"}}\n[1]\n{\"create\":{\"_index\":\"a\",\"_id\":\"y\"}}\n{\"m\":2}\n").await;
    assert_eq!(st, 200);
    assert_eq!(v["errors"], true);
    assert_eq!(v["items"][0]["create"]["status"], 400);
    assert_eq!(v["items"][1]["create"]["status"], 201);
    // ES 7 accepts `_type: _doc`; the URL index is the default.
    let es7 = EsServer::start(Options {
        version: 7,
        ..Default::default()
    })
    .await;
    let (st, v) = post(
        &format!("{}/b/_bulk", es7.url()),
        "application/x-ndjson",
        "{\"index\":{\"_type\":\"_doc\"}}\n{\"m\":1}\n",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(es7.docs("b").len(), 1);
}

#[tokio::test]
async fn create_conflicts_order_and_data_streams() {
    let mut opts = Options::default();
    opts.data_streams.insert("logs-app".into());
    let es = EsServer::start(opts).await;
    let bulk = format!("{}/_bulk", es.url());
    let body = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":1}\n{\"create\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"n\":2}\n{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":3}\n";
    let (_, v) = post(&bulk, "application/x-ndjson", body).await;
    let statuses: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["create"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 201, 409]);
    assert_eq!(v["errors"], true);
    let docs = es.docs("a");
    assert_eq!(
        docs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        vec!["1", "2"]
    );
    assert_eq!(docs[0].1["n"], 1);
    let (_, v) = post(&bulk, "application/x-ndjson", "{\"index\":{\"_index\":\"logs-app\"}}\n{\"@timestamp\":\"x\"}\n{\"create\":{\"_index\":\"logs-app\"}}\n{\"m\":1}\n{\"create\":{\"_index\":\"logs-app\"}}\n{\"@timestamp\":\"2026-11-22T00:00:00Z\"}\n").await;
    let statuses: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i.as_object().unwrap().values().next().unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, vec![400, 400, 201]);
}

#[tokio::test]
async fn injects_failures_at_the_requested_rate() {
    let es = EsServer::start(Options::default()).await;
    es.set_failures(0.1, 0.05, 0.0);
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!(
            "{{\"create\":{{\"_index\":\"a\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"
        ));
    }
    let (_, v) = post(
        &format!("{}/_bulk", es.url()),
        "application/x-ndjson",
        &body,
    )
    .await;
    let items = v["items"].as_array().unwrap();
    let count = |s: u64| items.iter().filter(|i| i["create"]["status"] == s).count();
    assert!((140..=260).contains(&count(429)), "429s: {}", count(429));
    assert!((50..=150).contains(&count(500)), "500s: {}", count(500));
    assert_eq!(count(201) + count(429) + count(500), 2000);
    assert_eq!(es.doc_count(), count(201));
    // A MAPPING-ERROR message is always a 400 mapping error.
    es.set_failures(0.0, 0.0, 0.0);
    let (_, v) = post(
        &format!("{}/_bulk", es.url()),
        "application/x-ndjson",
        "{\"create\":{\"_index\":\"a\"}}\n{\"message\":\"x MAPPING-ERROR\"}\n",
    )
    .await;
    assert_eq!(v["items"][0]["create"]["status"], 400);
    assert_eq!(
        v["items"][0]["create"]["error"]["type"],
        "mapper_parsing_exception"
    );
}

#[tokio::test]
async fn goes_down_and_comes_back_on_the_same_port() {
    let mut es = EsServer::start(Options::default()).await;
    let bulk = format!("{}/_bulk", es.url());
    let body = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":1}\n";
    assert_eq!(post(&bulk, "application/x-ndjson", body).await.0, 200);
    es.go_down().await;
    let e = reqwest::Client::new()
        .post(&bulk)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    es.come_up().await;
    let (st, v) = post(&bulk, "application/x-ndjson", body).await;
    assert_eq!(st, 200);
    assert_eq!(v["items"][0]["create"]["status"], 409);
}

#[tokio::test]
async fn gzip_size_limit_and_auth() {
    let es = EsServer::start(Options {
        max_content_length: 100,
        authorization: Some("ApiKey abc".into()),
        ..Default::default()
    })
    .await;
    let bulk = format!("{}/_bulk", es.url());
    let body = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":1}\n";
    let c = reqwest::Client::new();
    let r = c
        .post(&bulk)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let r = c
        .post(&bulk)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .header("authorization", "ApiKey abc")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(es.stats().gzip_requests, 1);
    let big = body.repeat(5);
    let r = c
        .post(&bulk)
        .header("content-type", "application/x-ndjson")
        .header("authorization", "ApiKey abc")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
}

#[tokio::test]
async fn answers_whole_request_statuses_on_demand() {
    let es = EsServer::start(Options::default()).await;
    let bulk = format!("{}/_bulk", es.url());
    let ok = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"m\":1}\n";
    for code in [404u16, 405, 415] {
        es.set_whole_request_status(Some(code));
        let (st, v) = post(&bulk, "application/x-ndjson", ok).await;
        assert_eq!(st, code);
        assert_eq!(v["status"], code);
    }
    assert_eq!(es.doc_count(), 0);
    es.set_whole_request_status(None);
    // The marker rejects the whole request (every item), not just the marked one.
    es.set_request_error_marker(true);
    let two = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"m\":\"fine\"}\n{\"create\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"m\":\"REQUEST-ERROR\"}\n";
    assert_eq!(post(&bulk, "application/x-ndjson", two).await.0, 400);
    assert_eq!(es.doc_count(), 0);
    assert_eq!(post(&bulk, "application/x-ndjson", ok).await.0, 200);
    assert_eq!(es.doc_count(), 1);
    assert_eq!(es.stats().rejected_requests, 4);
}

#[tokio::test]
async fn benchmark_mode_checks_framing_and_ids_without_storing() {
    let es = EsServer::start(Options {
        store_documents: false,
        ..Default::default()
    })
    .await;
    let bulk = format!("{}/_bulk", es.url());
    let two = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"m\":1}\n{\"create\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"m\":2}\n";
    let (st, v) = post(&bulk, "application/x-ndjson", two).await;
    assert_eq!(st, 200);
    assert_eq!(v["errors"], false);
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["items"][1]["create"]["_id"], "2");
    assert_eq!(v["items"][1]["create"]["status"], 201);
    // The same ids again: 409 per item, errors set.
    let (st, v) = post(&bulk, "application/x-ndjson", two).await;
    assert_eq!(st, 200);
    assert_eq!(v["errors"], true);
    assert_eq!(v["items"][0]["create"]["status"], 409);
    assert_eq!(es.stats().created, 2);
    assert_eq!(es.stats().conflicts, 2);
    assert_eq!(es.doc_count(), 0, "benchmark mode stores nothing");
    // Framing errors fail the whole request.
    for bad in [
        "{\"create\":{\"_index\":\"a\",\"_type\":\"_doc\"}}\n{}\n",
        "{\"update\":{\"_index\":\"a\"}}\n{}\n",
        "{\"create\":{\"_index\":\"a\"}}\n[1]\n",
        "{\"create\":{\"_index\":\"a\"}}\n",
        "{\"create\":{}}\n{}\n",
        "{not json}\n{}\n",
    ] {
        assert_eq!(
            post(&bulk, "application/x-ndjson", bad).await.0,
            400,
            "{bad}"
        );
    }
    assert_eq!(post(&bulk, "application/json", two).await.0, 406);
}

/// `filter_path` as Elasticsearch documents it, in both modes: the shipper's form keeps `errors` and each item's
/// action and status (plus `error` on failed items); `items.*.error` alone keeps only the failed items.
#[tokio::test]
async fn filter_path_cuts_the_answer_like_elasticsearch() {
    for store_documents in [true, false] {
        let es = EsServer::start(Options {
            store_documents,
            ..Default::default()
        })
        .await;
        let two = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"m\":1}\n{\"create\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"m\":2}\n";
        let url = format!(
            "{}/_bulk?filter_path=errors,items.*.status,items.*.error",
            es.url()
        );
        let (st, v) = post(&url, "application/x-ndjson", two).await;
        assert_eq!(st, 200);
        assert_eq!(
            v,
            serde_json::json!({"errors": false, "items": [{"create": {"status": 201}}, {"create": {"status": 201}}]}),
            "store_documents {store_documents}"
        );
        // Item 1 again (409) and a new item 3: the failed item keeps its error, the other only its status.
        let mixed = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"m\":1}\n{\"create\":{\"_index\":\"a\",\"_id\":\"3\"}}\n{\"m\":3}\n";
        let (_, v) = post(&url, "application/x-ndjson", mixed).await;
        assert_eq!(v["errors"], true);
        assert_eq!(v["items"][0]["create"]["status"], 409);
        assert_eq!(
            v["items"][0]["create"]["error"]["type"],
            "version_conflict_engine_exception"
        );
        assert!(v["items"][0]["create"].get("_id").is_none());
        assert_eq!(
            v["items"][1],
            serde_json::json!({"create": {"status": 201}})
        );
        assert!(v.get("took").is_none());
        // Only errors: successful items vanish (positions are lost), a clean answer is `{}`.
        let only_err = format!("{}/_bulk?filter_path=items.*.error", es.url());
        let again = "{\"create\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"m\":2}\n{\"create\":{\"_index\":\"a\",\"_id\":\"4\"}}\n{\"m\":4}\n";
        let (_, v) = post(&only_err, "application/x-ndjson", again).await;
        assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
        assert!(v["items"][0]["create"]["error"].is_object());
        let fresh = "{\"create\":{\"_index\":\"a\",\"_id\":\"5\"}}\n{\"m\":5}\n";
        let (_, v) = post(&only_err, "application/x-ndjson", fresh).await;
        assert_eq!(v, serde_json::json!({}));
        // `**` and a whole subtree.
        let deep = format!("{}/_bulk?filter_path=**.result,took", es.url());
        let six = "{\"create\":{\"_index\":\"a\",\"_id\":\"6\"}}\n{\"m\":6}\n";
        let (_, v) = post(&deep, "application/x-ndjson", six).await;
        assert_eq!(
            v,
            serde_json::json!({"took": 1, "items": [{"create": {"result": "created"}}]})
        );
    }
}

#[test]
fn filter_path_matching() {
    use es_bulk::{FilterPath, Keep};
    let f = FilterPath::parse("errors,items.*.status");
    assert_eq!(f.keep(&["errors"]), Keep::All);
    assert_eq!(f.keep(&["items"]), Keep::Some);
    assert_eq!(f.keep(&["items", "create"]), Keep::Some);
    assert_eq!(f.keep(&["items", "index", "status"]), Keep::All);
    assert_eq!(f.keep(&["items", "index", "_id"]), Keep::None);
    assert_eq!(f.keep(&["took"]), Keep::None);
    let f = FilterPath::parse("**.status");
    assert_eq!(f.keep(&["status"]), Keep::All);
    assert_eq!(f.keep(&["a", "b", "status"]), Keep::All);
    assert_eq!(f.keep(&["a", "b"]), Keep::Some);
}

/// The benchmark mode's byte-level fast path takes only the exact compact `create` line; every other form goes to
/// the strict serde parse (which the framing test above exercises).
#[test]
fn compact_create_fast_path_is_exact() {
    use es_bulk::compact_create;
    assert_eq!(
        compact_create(br#"{"create":{"_index":"logstash-2026.11.22","_id":"00ab-1f"}}"#),
        Some(("logstash-2026.11.22", "00ab-1f"))
    );
    for other in [
        &br#"{"create":{"_index":"a","_id":"x"}} "#[..],
        br#"{"create":{"_index":"a","_id":"x\"y"}}"#,
        br#"{"create":{"_id":"x","_index":"a"}}"#,
        br#"{"create":{"_index":"a","_id":"x","_type":"_doc"}}"#,
        br#"{"create": {"_index":"a","_id":"x"}}"#,
        br#"{"index":{"_index":"a","_id":"x"}}"#,
        br#"{"create":{"_index":"a\u0041","_id":"x"}}"#,
        b"{\"create\":{\"_index\":\"a\tb\",\"_id\":\"x\"}}",
        br#"{"create":{"_index":"a","_id":"x"}}}"#,
    ] {
        assert_eq!(
            compact_create(other),
            None,
            "{}",
            String::from_utf8_lossy(other)
        );
    }
}
