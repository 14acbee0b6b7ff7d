//! A small Chrome DevTools Protocol client: Chromium started headless with
//! `--remote-debugging-pipe` (JSON messages ended by a NUL byte on file descriptors 3 and 4, so no
//! debugging port is opened), one page attached in flat session mode, and the page's console
//! errors, exceptions and failed requests collected from its events.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::libc;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::process::Daemon;

/// How long one protocol call may take on a loaded machine.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

type Reply = Result<Value, Value>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// The Chromium binary: `$CHROMIUM`, or `chromium` on PATH. Fails (never skips) when missing.
pub fn chromium_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "CHROMIUM={} is not a file", path.display());
        return path;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Chromium is missing: the web page tests need Debian's `chromium` package \
             (`apt-get install -y chromium`, which .ci/run does), or CHROMIUM=/path/to/chromium"
        )
    })
}

/// A headless Chromium driven over its DevTools pipe. Killed when dropped (and when the test
/// process ends).
pub struct Browser {
    process: Daemon,
    to_browser: Mutex<io::PipeWriter>,
    pending: Pending,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: AtomicU64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile; its output goes to `<log_dir>/<name>.log`.
    pub fn launch(name: &str, log_dir: &Path) -> Browser {
        let binary = chromium_binary();
        let profile = tempfile::tempdir().expect("temporary Chromium profile");
        let (browser_reads, to_browser) = io::pipe().expect("pipe to Chromium");
        let (from_browser, browser_writes) = io::pipe().expect("pipe from Chromium");
        let (read_fd, write_fd) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        let mut cmd = Command::new(&binary);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-sync",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-breakpad",
            "--no-proxy-server",
            "--mute-audio",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank");
        // SAFETY: only fcntl and dup2 (async-signal-safe) run between fork and exec. Both pipe
        // ends are first copied above 4 so that neither is overwritten by the other's dup2; dup2
        // clears close-on-exec on 3 and 4, the originals stay close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10);
                let w = libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = Daemon::spawn(name, cmd, log_dir)
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        drop(browser_reads);
        drop(browser_writes);

        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (p, ev) = (pending.clone(), events.clone());
        std::thread::spawn(move || read_messages(from_browser, p, ev));
        Browser {
            process,
            to_browser: Mutex::new(to_browser),
            pending,
            events,
            next_id: AtomicU64::new(1),
            _profile: profile,
        }
    }

    /// Sends one command (to the browser, or to a page's session) and waits for its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending calls").insert(id, tx);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("CDP message");
        bytes.push(0);
        if let Err(e) = self
            .to_browser
            .lock()
            .expect("pipe to Chromium")
            .write_all(&bytes)
        {
            panic!("sending {method} to Chromium: {e}\n{}", self.log_tail());
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(error))) => panic!("Chromium refused {method} {params}: {error}"),
            Ok(Err(_)) => panic!(
                "Chromium went away during {method}; its log:\n{}",
                self.log_tail()
            ),
            Err(_) => panic!(
                "Chromium did not answer {method} within {CALL_TIMEOUT:?}; its log:\n{}",
                self.log_tail()
            ),
        }
    }

    fn log_tail(&self) -> String {
        self.process.log_tail(30)
    }

    /// A new tab with the given viewport, its page, runtime, network and log events enabled.
    pub async fn new_page(&self, width: u32, height: u32) -> Page<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let page = Page {
            browser: self,
            session,
        };
        for domain in ["Page", "Runtime", "Network", "Log"] {
            page.call(&format!("{domain}.enable"), json!({})).await;
        }
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        page
    }
}

/// Splits the pipe into messages: replies go to their caller, events into the log.
fn read_messages(from_browser: io::PipeReader, pending: Pending, events: Arc<Mutex<Vec<Value>>>) {
    let mut reader = BufReader::new(from_browser);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(0, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        let Ok(message) = serde_json::from_slice::<Value>(&buf) else {
            continue;
        };
        match message.get("id").and_then(Value::as_u64) {
            Some(id) => {
                let waiter = pending.lock().expect("pending calls").remove(&id);
                if let Some(tx) = waiter {
                    let reply = match message.get("error") {
                        Some(error) => Err(error.clone()),
                        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    let _ = tx.send(reply);
                }
            }
            None => events.lock().expect("events").push(message),
        }
    }
    // The browser is gone: waiting callers learn it at once.
    pending.lock().expect("pending calls").clear();
}

/// One tab, attached through a flat session.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

impl Page<'_> {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// This page's events so far.
    fn events(&self) -> Vec<Value> {
        self.browser
            .events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| e["sessionId"] == self.session.as_str())
            .cloned()
            .collect()
    }

    /// Opens `url` and waits for its load event.
    pub async fn navigate(&self, url: &str) {
        let before = self.events().len();
        let result = self.call("Page.navigate", json!({"url": url})).await;
        assert!(
            result.get("errorText").is_none(),
            "opening {url}: {}",
            result["errorText"]
        );
        let deadline = Instant::now() + CALL_TIMEOUT;
        while !self.events()[before..]
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            assert!(
                Instant::now() < deadline,
                "{url} did not finish loading within {CALL_TIMEOUT:?}; problems: {:?}",
                self.problems()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and returns its JSON value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(ex) = result.get("exceptionDetails") {
            let why = ex["exception"]["description"]
                .as_str()
                .or(ex["text"].as_str())
                .unwrap_or("exception");
            panic!("evaluating `{expression}` in the page threw: {why}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it gives a truthy value, returned; fails after `timeout`
    /// naming `what`, the last value and the page's problems.
    pub async fn wait_until(&self, what: &str, timeout: Duration, expression: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: last value {value}; \
                     page problems: {:?}",
                    self.problems()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the middle of the element `selector` with the mouse, as a person would.
    pub async fn click(&self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()"
            ))
            .await;
        assert!(!at.is_null(), "nothing on the page matches {selector}");
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": at["x"], "y": at["y"], "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Focuses the field `selector` and types `text` into it.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        let focused = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return false; \
                 e.focus(); return document.activeElement === e; }})()"
            ))
            .await;
        assert_eq!(focused, true, "could not focus {selector}");
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Presses one key (`Tab`, `Space`, `Enter`) on the focused element, as a keyboard would.
    pub async fn press(&self, key: &str) {
        let (name, code, vk, text) = match key {
            "Tab" => ("Tab", "Tab", 9, ""),
            "Space" => (" ", "Space", 32, " "),
            "Enter" => ("Enter", "Enter", 13, "\r"),
            other => panic!("no key {other} in this client"),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({"type": kind, "key": name, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk});
            if kind == "keyDown" && !text.is_empty() {
                event["text"] = json!(text);
            }
            self.call("Input.dispatchKeyEvent", event).await;
        }
    }

    /// Every URL the page requested.
    pub fn requested_urls(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }

    /// What a person with the developer tools open would see go wrong: console errors,
    /// uncaught exceptions, error log entries (CSP violations among them), failed requests and
    /// HTTP error answers. Requests the page cancelled itself are not problems.
    pub fn problems(&self) -> Vec<String> {
        let events = self.events();
        let urls: HashMap<&str, &str> = events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| {
                Some((
                    e["params"]["requestId"].as_str()?,
                    e["params"]["request"]["url"].as_str()?,
                ))
            })
            .collect();
        let mut problems = Vec::new();
        for e in &events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or_default() {
                "Runtime.exceptionThrown" => problems.push(format!(
                    "exception: {}",
                    p["exceptionDetails"]["exception"]["description"]
                        .as_str()
                        .or(p["exceptionDetails"]["text"].as_str())
                        .unwrap_or_default()
                )),
                "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                    let args: Vec<String> = p["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            a["value"]
                                .as_str()
                                .or(a["description"].as_str())
                                .map_or_else(|| a["value"].to_string(), str::to_string)
                        })
                        .collect();
                    problems.push(format!("console.error: {}", args.join(" ")));
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" => problems.push(format!(
                    "log ({}): {} [{}]",
                    p["entry"]["source"].as_str().unwrap_or_default(),
                    p["entry"]["text"].as_str().unwrap_or_default(),
                    p["entry"]["url"].as_str().unwrap_or_default()
                )),
                "Network.loadingFailed" if p["canceled"] != true => problems.push(format!(
                    "request failed: {} [{}]",
                    p["errorText"].as_str().unwrap_or_default(),
                    p["requestId"]
                        .as_str()
                        .and_then(|id| urls.get(id))
                        .unwrap_or(&"?")
                )),
                "Network.responseReceived"
                    if p["response"]["status"].as_u64().is_some_and(|s| s >= 400) =>
                {
                    problems.push(format!(
                        "HTTP {} [{}]",
                        p["response"]["status"],
                        p["response"]["url"].as_str().unwrap_or_default()
                    ))
                }
                _ => {}
            }
        }
        problems
    }

    /// A PNG of the whole page, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true, "clip": {
                    "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}),
            )
            .await;
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Page<'_> {
    /// A PNG of the element `selector` (scrolled into view first), written to `path`.
    pub async fn screenshot_of(&self, selector: &str, path: &Path) {
        let sel = serde_json::to_string(selector).expect("selector");
        let rect = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 const r = e.getBoundingClientRect(); return {{x: r.x + window.scrollX, \
                 y: r.y + window.scrollY, width: r.width, height: r.height}}; }})()"
            ))
            .await;
        assert!(!rect.is_null(), "nothing on the page matches {selector}");
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true, "clip": {
                    "x": rect["x"], "y": rect["y"], "width": rect["width"],
                    "height": rect["height"], "scale": 1}}),
            )
            .await;
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

#[test]
fn base64_decodes_what_chromium_sends() {
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    assert_eq!(base64_decode("YQ=="), b"a");
    assert_eq!(base64_decode("YWI="), b"ab");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
