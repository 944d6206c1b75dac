//! A minimal W3C WebDriver client for the browser test: Debian's `chromedriver` on a free
//! loopback port, headless `chromium`, and the handful of commands the test needs, spoken as
//! JSON over HTTP/1.1 on a tokio `TcpStream` (one connection per command).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skybridge_cli::http;

/// The W3C name of the key that carries an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Debian's paths.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver, killed by PID when dropped.
pub struct Driver {
    child: Child,
    pub addr: SocketAddr,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it answers `/status`.
    pub async fn start(log: &Path) -> Driver {
        let addr = crate::free_tcp(1)[0];
        let log_file = std::fs::File::create(log).expect("creating the chromedriver log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", addr.port()))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER} (apt-get install chromium-driver): {e}"));
        let driver = Driver { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, v)) = request(addr, "GET", "/status", None).await
                && v["value"]["ready"] == true
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a headless chromium session with a fresh profile in `profile`, a 1366×768 window
    /// and browser console logging.
    pub async fn session(&self, profile: &Path) -> Session {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            // Without these a machine with no network fills the logs with refused connections.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1366,768",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (status, v) = request(self.addr, "POST", "/session", Some(&caps)).await.expect("new session");
        assert_eq!(status, 200, "new session: {v}");
        let id = v["value"]["sessionId"].as_str().expect("a session id").to_owned();
        Session { driver: self.addr, id }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session; deleted (closing the browser) when dropped.
pub struct Session {
    driver: SocketAddr,
    id: String,
}

/// A reference to an element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session {
    async fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let full = format!("/session/{}{path}", self.id);
        let (status, v) = request(self.driver, method, &full, body).await.unwrap_or_else(|e| panic!("{full}: {e}"));
        assert_eq!(status, 200, "{method} {full}: {v}");
        v["value"].clone()
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({"url": url}))).await;
    }

    /// Every element matching the CSS `selector`.
    pub async fn find_all(&self, selector: &str) -> Vec<Element> {
        let v = self.cmd("POST", "/elements", Some(&json!({"using": "css selector", "value": selector}))).await;
        v.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT_KEY].as_str()).map(|s| Element(s.into())).collect()
    }

    /// An element's rendered text.
    pub async fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None).await.as_str().unwrap_or_default().to_owned()
    }

    /// An element's attribute (`None` when absent).
    pub async fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None).await.as_str().map(str::to_owned)
    }

    /// Clicks an element.
    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(&json!({}))).await;
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(&json!({"script": script, "args": []}))).await
    }

    /// Resizes the browser window (screenshots cover the viewport).
    pub async fn set_window_size(&self, width: u64, height: u64) {
        self.cmd("POST", "/window/rect", Some(&json!({"width": width, "height": height}))).await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None).await;
        base64_decode(v.as_str().expect("base64 screenshot"))
    }

    /// The browser console entries since the last call (chromedriver's `goog:loggingPrefs`
    /// extension): each has `level` (`SEVERE`, `WARNING`, `INFO`, ...) and `message`.
    pub async fn browser_logs(&self) -> Vec<Value> {
        let v = self.cmd("POST", "/se/log", Some(&json!({"type": "browser"}))).await;
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Drop cannot await: a blocking DELETE so chromedriver closes the browser before the
        // driver itself is killed (killing it first would orphan chromium).
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.driver, Duration::from_secs(2)) {
            // The answer comes once the browser is closed; the connection may stay open after.
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.id, self.driver
            );
            let _ = s.write_all(req.as_bytes());
            let _ = s.read(&mut [0u8; 1024]);
        }
    }
}

/// One request to chromedriver; the status and the JSON body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let headers = [("Content-Type", "application/json; charset=utf-8")];
    let host = addr.to_string();
    let req = http::Request { method, host: &host, path, headers: &headers, body: body.as_bytes(), tls: None };
    let (status, body) = http::request(&host, req, Duration::from_secs(60), 64 << 20).await.map_err(|e| {
        format!("{method} {path}: {e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default())
    })?;
    let v = serde_json::from_slice(&body).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)))?;
    Ok((status, v))
}

/// Standard base64 (the screenshot), without pulling in a crate for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: u32 = chunk.iter().enumerate().map(|(i, c)| u32::from(val(*c)) << (18 - 6 * i)).sum();
        out.extend_from_slice(&v.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(super::base64_decode("aGVsbG8="), b"hello");
        assert_eq!(super::base64_decode("aGk="), b"hi");
        assert_eq!(super::base64_decode("YWJj"), b"abc");
    }
}
