//! A real browser for the handshake's end-to-end tests (handshake.md §14.6): headless Chromium
//! driven over WebDriver (ChromeDriver) by fantoccini.
//!
//! It needs Debian's `chromium` and `chromium-driver` packages (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; `CHROMIUM` and `CHROMEDRIVER` point elsewhere). `.ci/run` installs
//! them and runs the browser tests; without them, [`Chromium::start`] panics saying what to
//! install. The browser runs with a fresh profile, offline: background services are off and
//! every host name but the loopback addresses fails to resolve, so it never talks to anything
//! but the test's own servers on 127.0.0.1.

use std::{
    net::TcpStream,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::process::free_port;

/// Where a program is: the environment variable `var`, else `default`.
fn program(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: the browser tests need Debian's chromium and chromium-driver packages \
         (apt-get install -y chromium chromium-driver), or {var} set to the program",
        path.display()
    );
    path
}

/// One headless Chromium with its own ChromeDriver and profile; both are stopped when it is
/// dropped (call [`close`](Self::close) to end the session cleanly first).
pub struct Chromium {
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("profile", &self.profile)
            .field("open", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl Chromium {
    /// Starts ChromeDriver on a free port and opens a headless Chromium session.
    pub async fn start() -> Self {
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        // A port can be taken between choosing it and ChromeDriver's bind (it then exits): then
        // another one.
        let (driver, port) = (0..5)
            .find_map(|_| {
                let port = free_port();
                // Its own process group, which the browser it starts joins: dropping kills both.
                let mut driver = Command::new(&chromedriver)
                    .process_group(0)
                    .arg(format!("--port={port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
                for _ in 0..100 {
                    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Some((driver, port));
                    }
                    if let Ok(Some(_)) = driver.try_wait() {
                        return None;
                    }
                    sleep(Duration::from_millis(100));
                }
                let _ = driver.kill();
                let _ = driver.wait();
                None
            })
            .unwrap_or_else(|| panic!("{} did not start", chromedriver.display()));
        let profile = std::env::temp_dir().join(format!(
            "clerk-actix-chromium-{}-{port}",
            std::process::id()
        ));
        let mut this = Self {
            client: None,
            driver,
            profile,
        };
        std::fs::create_dir_all(&this.profile).expect("a profile directory");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--no-pings".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-domain-reliability".to_owned(),
            "--disable-client-side-phishing-detection".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication"
                .to_owned(),
            "--metrics-recording-only".to_owned(),
            // Nothing but the test's own servers: every name fails to resolve, and the tests
            // only use 127.0.0.1.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".to_owned(),
            format!("--user-data-dir={}", this.profile.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("json! object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("opening a Chromium session through ChromeDriver: {e}"));
        this.client = Some(client);
        this
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    /// Navigates to `url` as a user typing it would (a top-level document GET), following
    /// every redirect, and returns where the browser ended.
    pub async fn goto(&self, url: &str) -> String {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
        self.url().await
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client()
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// The text of the element with id `id` on the current page.
    pub async fn text(&self, id: &str) -> String {
        let source = self.client().source().await.unwrap_or_default();
        let element = self
            .client()
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no element #{id} on the page ({e}): {source}"));
        element.text().await.expect("the element's text")
    }

    /// The value of the cookie `name` the browser would send to the current page.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.cookies()
            .await
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every cookie (name, value) the browser would send to the current page.
    pub async fn cookies(&self) -> Vec<(String, String)> {
        self.client()
            .get_all_cookies()
            .await
            .expect("the cookies")
            .into_iter()
            .map(|c| (c.name().to_owned(), c.value().to_owned()))
            .collect()
    }

    /// Sets a host-only cookie `name=value; Path=/; SameSite=Lax` for the current page's host
    /// from the page's JavaScript (replacing the one the page's server set, as Clerk's JS does
    /// with `__session`), e.g. an expired or stale token.
    pub async fn set_cookie(&self, name: &str, value: &str) {
        self.client()
            .execute(
                "document.cookie = arguments[0] + '=' + arguments[1] + '; Path=/; SameSite=Lax';\
                 return document.cookie;",
                vec![json!(name), json!(value)],
            )
            .await
            .unwrap_or_else(|e| panic!("setting the cookie {name}: {e}"));
        assert_eq!(
            self.cookie(name).await.as_deref(),
            Some(value),
            "the cookie {name} was set"
        );
    }

    /// Runs `fetch(path)` from the current page (an API call of its JavaScript: `Sec-Fetch-Dest:
    /// empty`, never a navigation) and returns the response's status and whether it was
    /// redirected.
    pub async fn fetch(&self, path: &str) -> (u16, bool) {
        let answer = self
            .client()
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 fetch(arguments[0], {redirect: 'manual', credentials: 'same-origin'})\
                   .then(r => done([r.status, r.type === 'opaqueredirect' || r.redirected]))\
                   .catch(e => done([0, String(e)]));",
                vec![json!(path)],
            )
            .await
            .unwrap_or_else(|e| panic!("fetch({path}): {e}"));
        let status = answer[0].as_u64().and_then(|s| u16::try_from(s).ok());
        let redirected = answer[1].as_bool();
        match (status, redirected) {
            (Some(status), Some(redirected)) => (status, redirected),
            _ => panic!("fetch({path}) failed: {answer}"),
        }
    }

    /// Ends the browser session.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The driver's process group (the browser too, when a session was not closed: a failed
        // assertion), then whatever still runs with this profile.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", self.driver.id()))
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(self.profile.as_os_str())
            .status();
        remove_profile(&self.profile);
    }
}

fn remove_profile(profile: &Path) {
    for _ in 0..10 {
        if std::fs::remove_dir_all(profile).is_ok() || !profile.exists() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
}
