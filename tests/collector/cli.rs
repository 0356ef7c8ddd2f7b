//! End to end on fixture trees and bad input: the real `vigil collector` binary's Summary API,
//! config errors that name the key, and a bad problem-detector config stopping start-up.

use crate::support::fixture_node_flags;
use crate::support::collector::*;
use crate::support::{free_port, until_blocking, Proc};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn fixture(name: &str) -> String {
    crate::support::collector_testdata(name)
}

#[test]
fn summary_of_a_v2_fixture_node() {
    let c = Collector::start(&fixture_node_flags().iter().map(String::as_str).collect::<Vec<_>>());
    let (s, body) = get(&format!("{}/stats/summary", c.base));
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node"]["nodeName"], "fixture-node");
    let kubelet = v["node"]["systemContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kubelet")
        .expect("kubelet system container");
    // cpu.stat usage_usec 42000000 → 42e9 ns.
    assert_eq!(kubelet["cpu"]["usageCoreNanoSeconds"], 42_000_000_000u64);
    let web = v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "web-0")
        .expect("web-0");
    assert_eq!(web["podRef"]["namespace"], "default");
    assert_eq!(web["podRef"]["uid"], "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901");
    // The sandbox is not listed; nginx is.
    let containers = web["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let nginx = &containers[0];
    assert_eq!(nginx["name"], "nginx");
    assert_eq!(nginx["cpu"]["usageCoreNanoSeconds"], 5_000_000_000u64);
    // working set 104857600 − 20971520; available = memory.max 268435456 − 83886080 = 184549376.
    assert_eq!(nginx["memory"]["workingSetBytes"], 83_886_080u64);
    assert_eq!(nginx["memory"]["availableBytes"], 184_549_376u64);
    assert_eq!(nginx["memory"]["rssBytes"], 52_428_800u64);
    assert_eq!(nginx["memory"]["majorPageFaults"], 7);
    // Pod-level figures come from the pod cgroup: 5500000 µs.
    assert_eq!(web["cpu"]["usageCoreNanoSeconds"], 5_500_000_000u64);
    // The pod without metadata (CRI-O, guaranteed) is still reported, named by uid.
    assert!(v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["podRef"]["uid"] == "99999999-8888-7777-6666-555555555555"));
    // Rates appear once two samples exist (the fixture does not change: 0 nanocores).
    until_blocking("usageNanoCores", Duration::from_secs(10), || {
        let (_, b) = get(&format!("{}/stats/summary", c.base));
        let v: Value = serde_json::from_str(&b).ok()?;
        let p = v["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["name"] == "web-0")?
            .clone();
        p["containers"][0]["cpu"]["usageNanoCores"].as_u64()
    });
    // The malformed files of the CRI-O container are counted as parse errors; nothing stopped.
    let m = parse_exposition(&c.metrics());
    let parse = m
        .iter()
        .find(|s| s.name == "vigil_collector_errors_total" && s.label("kind") == Some("parse"))
        .expect("parse errors counted");
    assert!(parse.value >= 2.0);
    assert_eq!(get(&format!("{}/healthz", c.base)).0, 200);
}

#[test]
fn v1_fixture_and_disabled_groups() {
    let c = Collector::start(&[
        "--housekeeping-interval",
        "1s",
        "--cgroup-root",
        &fixture("cgroup-v1-cgroupfs"),
        "--pod-log-root",
        "/nonexistent/pods",
        "--disable-metrics",
        "network,pressure,diskIO",
    ]);
    let body = c.metrics();
    let m = parse_exposition(&body);
    let id = format!(
        "/kubepods/burstable/pod11111111-2222-3333-4444-555555555555/{}",
        "b".repeat(64)
    );
    let value = |name: &str| {
        m.iter()
            .find(|s| s.name == name && s.label("id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{name} of {id}"))
            .value
    };
    // cpuacct.usage 7000000000 ns = 7 s; memory.usage_in_bytes 209715200 − total_inactive_file 52428800.
    assert_eq!(value("container_cpu_usage_seconds_total"), 7.0);
    assert_eq!(value("container_memory_working_set_bytes"), 157286400.0);
    // throttled_time 123000000 ns = 0.123 s (a quota is set).
    assert_eq!(value("container_cpu_cfs_throttled_seconds_total"), 0.123);
    assert_eq!(value("container_spec_memory_limit_bytes"), 536870912.0);
    // No /var/log/pods: no names, but still reported by its cgroup id and container id.
    let s = m
        .iter()
        .find(|s| {
            s.name == "container_cpu_usage_seconds_total" && s.label("id") == Some(id.as_str())
        })
        .unwrap();
    assert_eq!(s.label("pod"), Some(""));
    assert_eq!(s.label("name"), Some("b".repeat(64).as_str()));
    for off in [
        "container_network_",
        "container_pressure_",
        "container_fs_reads_bytes_total",
    ] {
        assert!(!body.contains(off), "{off} should be disabled");
    }
}

#[test]
fn bad_configuration_stops_start_up_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("collector.yaml");
    write(&cfg, "listen: 127.0.0.1:0\nhousekeeping_intervall: 5s\n");
    let err = collector_fails(&["--config", cfg.to_str().unwrap()]);
    assert!(
        err.contains("housekeeping_intervall") && err.contains("collector.yaml"),
        "{err}"
    );

    let err = collector_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--housekeeping-interval",
        "200ms",
    ]);
    assert!(err.contains("housekeeping_interval"), "{err}");

    let err = collector_fails(&["--listen", "127.0.0.1:0", "--disable-metrics", "cpu,gpu"]);
    assert!(err.contains("\"gpu\""), "{err}");

    let err = collector_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--cgroup-root",
        "/nonexistent/cgroup",
    ]);
    assert!(err.contains("/nonexistent/cgroup"), "{err}");

    // A problem-detector config that does not parse stops start-up with its message.
    let npd = dir.path().join("bad-monitor.json");
    write(&npd, "{\"plugin\": \"kmsg\", ");
    let err = collector_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--problem-detector-config",
        npd.to_str().unwrap(),
    ]);
    assert!(err.contains("bad-monitor.json"), "{err}");

    // Flags win over the file.
    write(
        &cfg,
        "listen: 127.0.0.1:1\nhousekeeping_interval: 1s\nnode_name: from-file\n",
    );
    let c = Collector::start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--node-name",
        "from-flag",
        "--cgroup-root",
        &fixture("cgroup-v1-cgroupfs"),
    ]);
    let (_, body) = get(&format!("{}/stats/summary", c.base));
    assert!(body.contains("\"nodeName\":\"from-flag\""), "{body}");
}

#[test]
fn problem_detector_is_wired_into_the_collector() {
    let npd_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/npd/config");
    // A file-log monitor over a temp file keeps this independent of /dev/kmsg.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kern.log");
    write(&log, "");
    let cfg = dir.path().join("monitor.json");
    let kernel = std::fs::read_to_string(npd_dir.join("kernel-monitor-filelog.json"));
    let text = match kernel {
        Ok(t) => t.replace("/var/log/kern.log", log.to_str().unwrap()),
        Err(_) => panic!(
            "shared NPD fixture kernel-monitor-filelog.json missing under {}",
            npd_dir.display()
        ),
    };
    write(&cfg, &text);
    let c = Collector::start(&[
        "--housekeeping-interval",
        "1s",
        "--cgroup-root",
        &fixture("cgroup-v1-cgroupfs"),
        "--problem-detector-config",
        cfg.to_str().unwrap(),
    ]);
    let (s, body) = get(&format!("{}/conditions", c.base));
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("KernelDeadlock"), "{body}");
    let metrics = c.metrics();
    assert!(
        metrics.contains("problem_gauge"),
        "problem metrics appended to /metrics"
    );
    assert!(metrics.contains("container_cpu_usage_seconds_total"));
}

/// `--problem-detector-kubernetes` outside a cluster (no KUBERNETES_SERVICE_HOST, or no service
/// account) stops start-up with a message naming the flag and what is missing; without a
/// monitor config it is a config error naming the key.
#[test]
fn problem_detector_kubernetes_without_credentials_fails_start_up() {
    let monitor = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector/testdata/problems/config/kernel-monitor.json");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("collector")
            .args(args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run vigil");
        assert!(!out.status.success(), "expected a start-up failure");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[
        "--listen",
        "127.0.0.1:0",
        "--cgroup-root",
        &fixture("cgroup-v1-cgroupfs"),
        "--problem-detector-config",
        monitor.to_str().unwrap(),
        "--problem-detector-kubernetes",
    ]);
    assert!(
        err.contains("--problem-detector-kubernetes")
            && err.contains("not running in a cluster")
            && err.contains("KUBERNETES_SERVICE_HOST"),
        "{err}"
    );
    // The YAML key does the same.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    write(
        &cfg,
        &format!(
            "listen: 127.0.0.1:0\nproblem_detector_kubernetes: true\nproblem_detector_config: [{:?}]\n",
            monitor.to_str().unwrap()
        ),
    );
    let err = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--cgroup-root",
        &fixture("cgroup-v1-cgroupfs"),
    ]);
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    let err = run(&["--listen", "127.0.0.1:0", "--problem-detector-kubernetes"]);
    assert!(
        err.contains("problem_detector_kubernetes") && err.contains("problem_detector_config"),
        "{err}"
    );
    // The variables set but no service account mounted (as on this machine, which is not a
    // pod): the error names the service account directory kube reads.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    if !Path::new(sa).exists() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["collector", "--listen", "127.0.0.1:0", "--cgroup-root"])
            .arg(fixture("cgroup-v1-cgroupfs"))
            .args(["--problem-detector-config", monitor.to_str().unwrap()])
            .arg("--problem-detector-kubernetes")
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run vigil");
        assert!(!out.status.success(), "expected a start-up failure");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--problem-detector-kubernetes")
                && err.contains("in-cluster configuration")
                && err.contains(sa),
            "{err}"
        );
    }
}

/// A one-route HTTP server on 127.0.0.1 answering `/pods` like the kubelet's read API.
fn fake_kubelet(body: String) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(false).unwrap();
    let handle = std::thread::spawn(move || {
        // Serve a bounded number of requests, then stop.
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let (status, text) = if request_line.starts_with("GET /pods ") {
                ("200 OK", body.as_str())
            } else {
                ("404 Not Found", "")
            };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        }
    });
    (port, handle)
}

#[test]
fn kubelet_pods_give_images_and_opt_in_labels() {
    let pods = std::fs::read_to_string(fixture("kubelet-pods.json")).unwrap();
    let (port, _server) = fake_kubelet(pods);
    let c = Collector::start(&[
        "--housekeeping-interval",
        "1s",
        "--cgroup-root",
        &fixture("cgroup-v2-systemd"),
        // No log layout at all: names come from the kubelet alone.
        "--pod-log-root",
        "/nonexistent/pods",
        "--kubelet-url",
        &format!("http://127.0.0.1:{port}"),
        "--pod-labels",
        "app",
    ]);
    let id = format!("cri-containerd-{}.scope", "a".repeat(64));
    let s = until_blocking(
        "nginx named by the kubelet",
        Duration::from_secs(20),
        || {
            parse_exposition(&c.metrics()).into_iter().find(|s| {
                s.name == "container_cpu_usage_seconds_total"
                    && s.label("id").is_some_and(|i| i.ends_with(&id))
                    && s.label("container") == Some("nginx")
            })
        },
    );
    assert_eq!(s.label("image"), Some("docker.io/library/nginx:1.25"));
    assert_eq!(s.label("pod"), Some("web-0"));
    assert_eq!(s.label("container_label_app"), Some("web"));
    // Without --pod-labels no runtime label is copied (the cardinality trap is opt-in).
    let plain = Collector::start(&[
        "--housekeeping-interval",
        "1s",
        "--cgroup-root",
        &fixture("cgroup-v2-systemd"),
        "--pod-log-root",
        "/nonexistent/pods",
    ]);
    assert!(!plain.metrics().contains("container_label_"));
}

/// Review #24: the DaemonSet binds the collector to the node IP (status.hostIP), through the
/// VIGIL_COLLECTOR_LISTEN variable that Kubernetes expands from NODE_IP defined before it; the
/// real binary listens where that variable says.
#[test]
fn daemonset_binds_the_node_ip_through_the_environment() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/collector-daemonset.yaml");
    let doc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let spec = &doc["spec"]["template"]["spec"];
    assert_eq!(
        spec["hostNetwork"],
        serde_json::Value::Bool(true),
        "the node IP is only bindable on the host network"
    );
    assert_eq!(
        spec["hostPID"],
        serde_json::Value::Bool(true),
        "cgroup.procs shows other pid namespaces' pids as 0: pod network needs the host's pids"
    );
    let c = &spec["containers"][0];
    assert_eq!(
        c["securityContext"]["capabilities"]["add"],
        serde_json::json!(["SYS_PTRACE"]),
        "other processes' descriptor links (container_sockets) need CAP_SYS_PTRACE"
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        !args.iter().any(|a| a.starts_with("--listen")),
        "a --listen flag would override the environment: {args:?}"
    );
    // Expand the env list as the kubelet does: $(VAR) of a variable defined earlier.
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = match (
            e["value"].as_str(),
            e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Some(v), _) => env
                .iter()
                .fold(v.to_string(), |v, (k, x)| v.replace(&format!("$({k})"), x)),
            (None, Some("status.hostIP")) => "127.0.0.1".to_string(),
            (None, Some("spec.nodeName")) => "manifest-node".to_string(),
            other => panic!("unexpected env source {other:?}"),
        };
        env.push((name, value));
    }
    let listen = env
        .iter()
        .find(|(k, _)| k == "VIGIL_COLLECTOR_LISTEN")
        .map(|(_, v)| v.clone())
        .expect("VIGIL_COLLECTOR_LISTEN");
    assert_eq!(listen, "127.0.0.1:4194");
    // The binary honours the variable (on a free port rather than 4194).
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "collector",
            "--cgroup-root",
            &fixture("cgroup-v2-systemd"),
            "--pod-log-root",
            &fixture("logs/pods"),
        ])
        .env(
            "VIGIL_COLLECTOR_LISTEN",
            listen.replace(":4194", &format!(":{port}")),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let _proc = Proc {
        child,
        name: "vigil".into(),
    };
    until_blocking(
        "collector on the address from VIGIL_COLLECTOR_LISTEN",
        Duration::from_secs(30),
        || (get(&format!("http://127.0.0.1:{port}/healthz")).0 == 200).then_some(()),
    );
}
