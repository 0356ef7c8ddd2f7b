//! Test support for the web UI: Debian's headless Chromium driven through the DevTools protocol
//! (a small client over one WebSocket per page), with console errors and failed requests recorded.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use super::free_port;

/// Headless Chromium with a DevTools port, killed when dropped.
pub struct Browser {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` (Debian's package; scripts/test.sh installs it). Panics if it is missing.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-default-apps",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--remote-debugging-port={port}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium (Debian package `chromium`; scripts/test.sh installs it)");
        let b = Browser { child, port, _profile: profile };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("http://127.0.0.1:{port}/json/version")).is_err() {
            assert!(Instant::now() < deadline, "chromium's DevTools port {port} did not open");
            std::thread::sleep(Duration::from_millis(100));
        }
        b
    }

    /// A new tab, attached.
    pub fn page(&self) -> Page {
        let target: Value = reqwest::blocking::Client::new()
            .put(format!("http://127.0.0.1:{}/json/new?about:blank", self.port))
            .send()
            .and_then(|r| r.json())
            .expect("open a tab");
        let ws_url = target["webSocketDebuggerUrl"].as_str().expect("webSocketDebuggerUrl").to_string();
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("connect to the tab's DevTools socket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        }
        let mut p = Page { ws, next_id: 0, events: Vec::new(), requests: Vec::new(), problems: Vec::new() };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable", "Network.enable"] {
            p.call(domain, json!({}));
        }
        p
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab: commands, and what it saw (requests sent; console errors and failed requests).
pub struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    pub events: Vec<Value>,
    /// URLs of the requests the page sent, in order.
    pub requests: Vec<String>,
    /// Console errors, exceptions and failed requests (status >= 400 or network failure).
    pub problems: Vec<String>,
}

impl Page {
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str(t.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("DevTools socket: {e}"),
        }
    }

    fn note(&mut self, ev: &Value) {
        let params = &ev["params"];
        match ev["method"].as_str().unwrap_or("") {
            "Runtime.consoleAPICalled" if matches!(params["type"].as_str(), Some("error" | "assert")) => {
                let text: Vec<String> = params["args"].as_array().into_iter().flatten().map(|a| a["value"].to_string()).collect();
                self.problems.push(format!("console.error: {}", text.join(" ")));
            }
            "Runtime.exceptionThrown" => {
                let d = &params["exceptionDetails"];
                self.problems.push(format!("exception: {} {}", d["text"], d["exception"]["description"]));
            }
            "Log.entryAdded" if params["entry"]["level"] == "error" => {
                self.problems.push(format!("log error: {} {}", params["entry"]["text"], params["entry"]["url"]));
            }
            "Network.requestWillBeSent" => {
                if let Some(u) = params["request"]["url"].as_str() {
                    self.requests.push(u.to_string());
                }
            }
            "Network.responseReceived" => {
                let status = params["response"]["status"].as_u64().unwrap_or(0);
                if status >= 400 {
                    self.problems.push(format!("HTTP {status}: {}", params["response"]["url"]));
                }
            }
            "Network.loadingFailed" if params["canceled"] != true => {
                self.problems.push(format!("request failed: {} ({})", params["errorText"], params["type"]));
            }
            _ => {}
        }
    }

    /// Sends a command and returns its result; events seen meanwhile are recorded.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send(Message::text(json!({"id": id, "method": method, "params": params}).to_string()))
            .expect("send to DevTools");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let Some(v) = self.read() else { continue };
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            self.note(&v);
            self.events.push(v);
        }
    }

    /// Reads the events that arrived (for at most `d`).
    pub fn pump(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if let Some(v) = self.read() {
                self.note(&v);
                self.events.push(v);
            }
        }
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its JSON value.
    pub fn eval(&mut self, expr: &str) -> Value {
        self.try_eval(expr).unwrap_or_else(|ex| panic!("evaluating {expr}: {ex}"))
    }

    /// [`Page::eval`], with the exception as the error.
    pub fn try_eval(&mut self, expr: &str) -> Result<Value, Value> {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}));
        match r.get("exceptionDetails") {
            Some(ex) => Err(ex.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Polls `expr` until it is truthy; panics with `what` after `timeout`.
    pub fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            // While the document loads, `document.body` may not exist yet: not ready.
            let v = self.try_eval(expr);
            if let Ok(v) = &v {
                if !(v.is_null() || *v == false || *v == 0 || *v == "") {
                    return v.clone();
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what} ({expr}): last {v:?}; problems: {:?}", self.problems);
            self.pump(Duration::from_millis(100));
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Sets the viewport (CSS pixels).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Saves a PNG of the page (the whole page when `full`) to `path`.
    pub fn screenshot(&mut self, path: &Path, full: bool) {
        use base64::Engine as _;
        let r = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": full}));
        let bytes = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Where the browser tests put their screenshots: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots")
}
