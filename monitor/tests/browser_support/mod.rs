//! The browser harness the dashboard's browser tests share: chromedriver on a free port,
//! headless Chromium with a fresh profile, and waiting for, clicking and logging in through the
//! page.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tapgate_testkit::free_port;

use crate::support::Dashboard;

/// How long a page has to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);

/// The first of `names` found on `PATH` or where Debian puts Chromium.
pub fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([
        PathBuf::from("/usr/bin"),
        PathBuf::from("/usr/lib/chromium"),
    ]) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A chromedriver process on a free port, killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver; fails saying how to install it when it is missing.
    pub fn start() -> Self {
        let bin = find(&["chromedriver"]).unwrap_or_else(|| {
            panic!("`chromedriver` is not installed: this test drives real Chromium. Install it with `apt-get install -y chromium chromium-driver`.")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// A new browser with its own fresh profile.
    pub async fn browser(&self, profile: &std::path::Path) -> Client {
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
            panic!("`chromium` is not installed: install it with `apt-get install -y chromium chromium-driver`.")
        });
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1440,1300", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Chromium through chromedriver: {e}\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the text of `css` satisfies `ok`; returns it.
pub async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
        }
        if Instant::now() >= deadline {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let source = c.source().await.unwrap_or_default();
            panic!("`{css}` never matched; last text: {last:?}\nat {url}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the element `css` names.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Logs in through the login page as `who` (name, password) and waits for the live view.
pub async fn log_in(c: &Client, dash: &Dashboard, who: (&str, &str)) {
    c.goto(&dash.url("/")).await.expect("open dashboard");
    let url = c.current_url().await.expect("url");
    assert_eq!(
        url.path(),
        "/login",
        "not logged in: sent to the login page"
    );
    c.find(Locator::Css("#name"))
        .await
        .expect("name field")
        .send_keys(who.0)
        .await
        .expect("type name");
    c.find(Locator::Css("#password"))
        .await
        .expect("password field")
        .send_keys(who.1)
        .await
        .expect("type password");
    click(c, "#login-submit").await;
    wait_text(c, "#live-status", |t| t == "live").await;
    wait_text(c, "#operator", |t| t.contains(who.0)).await;
}
