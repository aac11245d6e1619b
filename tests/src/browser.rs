//! A browser simulator for the handshake's flow tests (handshake.md §14.5): a real cookie jar
//! (`cookie_store`, which applies `Max-Age`, `Path` and `Domain` as browsers do), redirects
//! followed by hand and recorded hop by hop, and the request headers of a navigation
//! (`Sec-Fetch-Dest: document`, `Accept: text/html`) or of a `fetch`.

use std::time::Duration;

use awc::http::header;
use cookie_store::{CookieStore, RawCookie};
use url::Url;

/// One response on the way.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The URL requested.
    pub url: String,
    /// Its status.
    pub status: u16,
    /// `Location`, for a redirect.
    pub location: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// Every `Set-Cookie`, verbatim.
    pub set_cookies: Vec<String>,
    /// `Retry-After`.
    pub retry_after: Option<String>,
}

/// Where a navigation ended.
#[derive(Debug, Clone)]
pub struct Page {
    /// The final URL.
    pub url: String,
    /// The final status.
    pub status: u16,
    /// The final body, as text.
    pub body: String,
    /// Every response, in order (the last one is the page).
    pub hops: Vec<Hop>,
}

impl Page {
    /// Hops answered by `origin` with a `307`.
    pub fn redirects_from(&self, origin: &str) -> Vec<&Hop> {
        self.hops
            .iter()
            .filter(|h| h.status == 307 && h.url.starts_with(origin))
            .collect()
    }
}

/// A browser: one cookie jar, no cache.
#[derive(Debug)]
pub struct Browser {
    jar: CookieStore,
    /// Redirects followed per navigation, at most (browsers stop at about 20).
    pub max_hops: usize,
    /// Time stands still for cookie lifetimes (see [`Browser::frozen_clock`]).
    frozen: bool,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap_or_else(|e| panic!("not a URL: {s}: {e}"))
}

impl Browser {
    /// A browser with an empty jar.
    pub fn new() -> Self {
        Self {
            jar: CookieStore::default(),
            max_hops: 20,
            frozen: false,
        }
    }

    /// A browser on which no time passes for cookies: a cookie set with a positive `Max-Age`
    /// or an `Expires` lives until it is removed (`Max-Age=0`, or [`Browser::remove_cookie`],
    /// which is how a test makes its lifetime pass). A test of a short-lived cookie (the
    /// handshake's 2 s loop counter) then decides by itself when the time is up, however slow
    /// the machine; the `Set-Cookie` values stay recorded verbatim in the hops.
    pub fn frozen_clock(mut self) -> Self {
        self.frozen = true;
        self
    }

    fn client() -> awc::Client {
        awc::Client::builder()
            .disable_redirects()
            .timeout(Duration::from_secs(20))
            .finish()
    }

    /// The `Cookie` header this browser sends to `to`.
    pub fn cookie_header(&self, to: &str) -> String {
        self.jar
            .get_request_values(&url(to))
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The value of the cookie `name` the browser would send to `to`.
    pub fn cookie(&self, to: &str, name: &str) -> Option<String> {
        self.jar
            .get_request_values(&url(to))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    }

    /// Names of every cookie the browser would send to `to`.
    pub fn cookie_names(&self, to: &str) -> Vec<String> {
        self.jar
            .get_request_values(&url(to))
            .map(|(n, _)| n.to_owned())
            .collect()
    }

    /// Stores a cookie as if `from` had set it (`set_cookie` is a `Set-Cookie` value).
    pub fn set_cookie(&mut self, from: &str, set_cookie: &str) {
        let cookie = RawCookie::parse(set_cookie.to_owned())
            .unwrap_or_else(|e| panic!("not a cookie: {set_cookie}: {e}"));
        self.jar
            .store_response_cookies(std::iter::once(cookie), &url(from));
    }

    /// Removes the cookie `name` (as the user clearing one cookie would).
    pub fn remove_cookie(&mut self, from: &str, name: &str) {
        self.set_cookie(from, &format!("{name}=; Path=/; Max-Age=0"));
    }

    async fn request(
        &mut self,
        method: awc::http::Method,
        to: &str,
        document: bool,
        extra: &[(&str, &str)],
    ) -> (Hop, String) {
        let cookies = self.cookie_header(to);
        let mut req = Self::client().request(method, to);
        if document {
            req = req
                .insert_header(("Sec-Fetch-Dest", "document"))
                .insert_header((header::ACCEPT, "text/html,application/xhtml+xml"));
        } else {
            req = req
                .insert_header(("Sec-Fetch-Dest", "empty"))
                .insert_header((header::ACCEPT, "application/json"));
        }
        for (name, value) in extra {
            req = req.insert_header((*name, *value));
        }
        if !cookies.is_empty() {
            req = req.insert_header((header::COOKIE, cookies));
        }
        let mut res = req.send().await.unwrap_or_else(|e| panic!("GET {to}: {e}"));
        let text = |name: header::HeaderName| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let set_cookies: Vec<String> = res
            .headers()
            .get_all(header::SET_COOKIE)
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let hop = Hop {
            url: to.to_owned(),
            status: res.status().as_u16(),
            location: text(header::LOCATION),
            cache_control: text(header::CACHE_CONTROL),
            set_cookies: set_cookies.clone(),
            retry_after: text(header::RETRY_AFTER),
        };
        let frozen = self.frozen;
        let parsed = set_cookies
            .into_iter()
            .filter_map(|c| RawCookie::parse(c).ok())
            .map(|mut c| {
                let removal = c.max_age().is_some_and(|age| age.whole_seconds() <= 0);
                if frozen && !removal {
                    c.set_max_age(None);
                    c.unset_expires();
                }
                c
            });
        self.jar.store_response_cookies(parsed, &url(to));
        let body = res.body().limit(1 << 20).await.unwrap_or_default();
        (hop, String::from_utf8_lossy(&body).into_owned())
    }

    /// Navigates to `to` as a browser does (a document `GET`), following redirects.
    pub async fn navigate(&mut self, to: &str) -> Page {
        let mut at = to.to_owned();
        let mut hops = Vec::new();
        loop {
            let (hop, body) = self.request(awc::http::Method::GET, &at, true, &[]).await;
            let next = hop
                .location
                .as_ref()
                .filter(|_| (300..400).contains(&hop.status))
                .map(|l| {
                    url(&at)
                        .join(l)
                        .map(String::from)
                        .unwrap_or_else(|_| l.clone())
                });
            let status = hop.status;
            hops.push(hop);
            match next {
                Some(next) if hops.len() < self.max_hops => at = next,
                _ => {
                    return Page {
                        url: at,
                        status,
                        body,
                        hops,
                    }
                }
            }
        }
    }

    /// A `fetch` from a page's script (`Sec-Fetch-Dest: empty`), no redirect followed.
    pub async fn fetch(&mut self, method: awc::http::Method, to: &str) -> (Hop, String) {
        self.request(method, to, false, &[]).await
    }

    /// A document request with extra headers (a form `POST`, an `Authorization` header), no
    /// redirect followed.
    pub async fn document(
        &mut self,
        method: awc::http::Method,
        to: &str,
        extra: &[(&str, &str)],
    ) -> (Hop, String) {
        self.request(method, to, true, extra).await
    }
}
