//! Test support for the notifier's tests: the real Alertmanager and aiosmtpd on loopback ports,
//! a recording webhook receiver, vigil's notifier served on a port, and polling with deadlines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::sync::watch;
use vigil_alerting::notify::{Notifier, NotifyConfig};
use super::{free_port, until};

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Debian's `prometheus-alertmanager`, on a free loopback port; killed when dropped.
pub struct Alertmanager {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts it with `config` (YAML) and waits until it is ready.
    pub async fn start(config: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, config).unwrap();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.external-url=http://vigil.test:9093")
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus-alertmanager must be installed (Debian package prometheus-alertmanager; scripts/test.sh installs it)");
        let am = Alertmanager { child, url, _dir: dir };
        let ready = format!("{}/-/ready", am.url);
        until("alertmanager ready", Duration::from_secs(30), || {
            let ready = ready.clone();
            async move {
                let r = reqwest::get(&ready).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        am
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        let r = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn post_alerts(&self, alerts: &serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(alerts)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST alerts to alertmanager: {}", r.status());
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    pub at: Instant,
}

/// How a webhook path answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Ok,
    Status(u16),
    /// Never answers.
    Hang,
}

/// A webhook receiver recording every POST; `/<anything>` answers per [`WebhookServer::answer`].
pub struct WebhookServer {
    pub base: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<Vec<(String, Answer)>>>,
}

impl WebhookServer {
    pub async fn start() -> WebhookServer {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answers: Arc<Mutex<Vec<(String, Answer)>>> = Arc::default();
        let state = (got.clone(), answers.clone());
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WebhookServer { base, got, answers }
    }

    /// Makes `path` answer `a`.
    pub fn answer(&self, path: &str, a: Answer) {
        self.answers.lock().unwrap().push((path.to_string(), a));
    }

    /// Requests to `path` so far.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits until `path` got `n` requests and returns them.
    pub async fn wait(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        until(&format!("{n} request(s) on {path}"), timeout, || {
            let v = self.at(path);
            async move { (v.len() >= n).then_some(v) }
        })
        .await
    }
}

type HookState = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<Vec<(String, Answer)>>>);

async fn record(
    State((got, answers)): State<HookState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let path = uri.path().to_string();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|e| serde_json::Value::String(format!("not JSON: {e}")));
    got.lock().unwrap().push(Received { path: path.clone(), headers, body, at: Instant::now() });
    let answer = answers
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(p, _)| *p == path)
        .map(|(_, a)| *a)
        .unwrap_or(Answer::Ok);
    match answer {
        Answer::Ok => StatusCode::OK,
        Answer::Status(s) => StatusCode::from_u16(s).unwrap(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}

/// vigil's notifier running and serving `/api/v2` on a free port.
pub struct Vigil {
    pub notifier: Arc<Notifier>,
    pub url: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Vigil {
    pub async fn start(notifier: Notifier) -> Vigil {
        let notifier = Arc::new(notifier);
        let (stop, rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = notifier.clone().router();
        let mut srx = rx.clone();
        let serve = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = srx.changed().await;
                })
                .await
                .unwrap()
        });
        let run = tokio::spawn(notifier.clone().run(rx));
        Vigil { notifier, url, stop, tasks: vec![serve, run] }
    }

    /// Stops serving and dispatching (as at a restart).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Parses a configuration text into a file and loads it as vigil does.
pub fn load_config(dir: &Path, text: &str) -> NotifyConfig {
    let p = dir.join("notify.yml");
    std::fs::write(&p, text).unwrap();
    NotifyConfig::load(&p).unwrap_or_else(|e| panic!("config rejected: {e}"))
}

/// A real SMTP server (aiosmtpd, Debian's python3) saving messages in a directory.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmtpServer {
    /// `extra`: `--reject "550 ..."`, `--cert c --key k`, `--auth user:pass`.
    pub fn start(extra: &[&str]) -> SmtpServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");
        // Debian's package installs for Debian's python3, which a pyenv python3 on PATH may hide.
        let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        let mut child = Command::new(python)
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "READY",
            "aiosmtpd did not start (Debian package python3-aiosmtpd; scripts/test.sh installs it)"
        );
        SmtpServer { child, port, dir, _tmp: tmp }
    }

    /// The saved messages `(raw message, envelope JSON)` so far.
    pub fn messages(&self) -> Vec<(Vec<u8>, serde_json::Value)> {
        let mut out = Vec::new();
        for n in 1.. {
            let eml = self.dir.join(format!("{n}.eml"));
            let Ok(raw) = std::fs::read(&eml) else { break };
            let env = std::fs::read(self.dir.join(format!("{n}.json"))).unwrap();
            out.push((raw, serde_json::from_slice(&env).unwrap()));
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Runs `amtool` against `url` and returns (success, stdout, stderr).
pub fn amtool(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={url}"))
        .args(args)
        .output()
        .expect("amtool must be installed (Debian package prometheus-alertmanager)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
