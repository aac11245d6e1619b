//! The outbound leg (handshake.md §3.4, §5): which requests may be redirected, the loop guard,
//! and the handshake URL on the Frontend API.

use super::cookies::REDIRECT_COUNT;

/// The Backend API version Clerk's SDK sends along (`SUPPORTED_BAPI_VERSION`).
pub(crate) const API_VERSION: &str = "2026-05-12";

/// How many handshakes in a row before the guard signs the request out instead.
pub(crate) const REDIRECT_LIMIT: f64 = 3.0;

/// `isRequestEligibleForHandshake`: a GET whose `Sec-Fetch-Dest` is `document` or `iframe`, or,
/// without that header, whose `Accept` starts with `text/html` (case-sensitive).
pub(crate) fn eligible(method: &str, sec_fetch_dest: Option<&str>, accept: Option<&str>) -> bool {
    method == "GET"
        && match sec_fetch_dest.filter(|d| !d.is_empty()) {
            Some(dest) => dest == "document" || dest == "iframe",
            None => accept.is_some_and(|a| a.starts_with("text/html")),
        }
}

/// The counter cookie of the next hop: `__clerk_redirect_count=<n+1>; SameSite=Lax; HttpOnly;
/// Max-Age=2` (no `Path`, no `Secure`, exactly as Clerk's SDK sets it).
pub(crate) fn redirect_count_cookie(count: f64) -> String {
    format!(
        "{REDIRECT_COUNT}={}; SameSite=Lax; HttpOnly; Max-Age=2",
        js_number(count + 1.0)
    )
}

/// A number as JavaScript prints it in a template literal (integers without `.0`).
fn js_number(n: f64) -> String {
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

/// The request URL with `__clerk_db_jwt` and `__dev_session` removed from its query, which is
/// re-serialised as `URLSearchParams` does (`%20` → `+`, `?x` → `?x=`, an empty `?` dropped).
pub(crate) fn redirect_url(origin: &str, path: &str, query: &str) -> String {
    url_without(origin, path, query, &["__clerk_db_jwt", "__dev_session"])
}

/// The URL a development instance's return leg redirects to (handshake.md §7.3): the request
/// URL without the handshake's parameters.
pub(crate) fn clean_url(origin: &str, path: &str, query: &str) -> String {
    url_without(
        origin,
        path,
        query,
        &[
            "__clerk_handshake",
            "__clerk_help",
            "__clerk_db_jwt",
            "__clerk_handshake_nonce",
        ],
    )
}

fn url_without(origin: &str, path: &str, query: &str, removed: &[&str]) -> String {
    let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| !removed.contains(&name.as_ref()))
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    let mut url = format!("{origin}{path}");
    if !kept.is_empty() {
        url.push('?');
        url.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish(),
        );
    }
    url
}

/// What goes into the handshake URL besides the request URL.
#[derive(Debug)]
pub(crate) struct HandshakeParams<'a> {
    pub(crate) redirect_url: &'a str,
    pub(crate) suffixed_cookies: bool,
    pub(crate) reason: &'a str,
    pub(crate) session_token: Option<&'a str>,
    pub(crate) dev_browser: Option<&'a str>,
}

/// `buildRedirectToHandshake`: `<frontend api>/v1/client/handshake?redirect_url=…&
/// __clerk_api_version=…&suffixed_cookies=…&__clerk_hs_reason=…&format=nonce[&__session=…]
/// [&__clerk_db_jwt=…]`. `frontend_api` is a host (`https://` is added) or a full proxy URL,
/// whose path is kept.
pub(crate) fn handshake_url(frontend_api: &str, params: &HandshakeParams<'_>) -> String {
    let base = if frontend_api.starts_with("http") {
        frontend_api.to_owned()
    } else {
        format!("https://{frontend_api}")
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("redirect_url", params.redirect_url)
        .append_pair("__clerk_api_version", API_VERSION)
        .append_pair(
            "suffixed_cookies",
            if params.suffixed_cookies {
                "true"
            } else {
                "false"
            },
        )
        .append_pair("__clerk_hs_reason", params.reason)
        .append_pair("format", "nonce");
    if let Some(token) = params.session_token {
        query.append_pair("__session", token);
    }
    if let Some(dev_browser) = params.dev_browser {
        query.append_pair("__clerk_db_jwt", dev_browser);
    }
    format!(
        "{}/v1/client/handshake?{}",
        base.trim_end_matches('/'),
        query.finish()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_document_gets_are_eligible() {
        assert!(eligible("GET", Some("document"), None));
        assert!(eligible("GET", Some("iframe"), Some("*/*")));
        assert!(eligible(
            "GET",
            None,
            Some("text/html,application/xhtml+xml")
        ));
        assert!(
            eligible("GET", Some(""), Some("text/html")),
            "an empty Sec-Fetch-Dest is absent"
        );
        assert!(!eligible("GET", Some("empty"), Some("text/html")), "fetch");
        assert!(!eligible("POST", Some("document"), Some("text/html")));
        assert!(!eligible("HEAD", Some("document"), None));
        assert!(!eligible("GET", None, Some("*/*")));
        assert!(!eligible("GET", None, Some("Text/HTML")), "case-sensitive");
        assert!(!eligible("GET", None, None));
    }

    #[test]
    fn counter_cookie_is_clerks() {
        assert_eq!(
            redirect_count_cookie(0.0),
            "__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"
        );
        assert_eq!(
            redirect_count_cookie(2.0),
            "__clerk_redirect_count=3; SameSite=Lax; HttpOnly; Max-Age=2"
        );
        assert_eq!(
            redirect_count_cookie(f64::INFINITY),
            "__clerk_redirect_count=Infinity; SameSite=Lax; HttpOnly; Max-Age=2"
        );
        assert_eq!(
            redirect_count_cookie(1.5),
            "__clerk_redirect_count=2.5; SameSite=Lax; HttpOnly; Max-Age=2"
        );
    }

    #[test]
    fn redirect_url_drops_dev_browser_params_and_reserialises() {
        let o = "https://app.example.com";
        assert_eq!(
            redirect_url(o, "/a/b", "q=1"),
            "https://app.example.com/a/b?q=1"
        );
        assert_eq!(redirect_url(o, "/", ""), "https://app.example.com/");
        assert_eq!(
            redirect_url(o, "/p", "y=2&__clerk_db_jwt=dvb_1&__dev_session=x&z"),
            "https://app.example.com/p?y=2&z="
        );
        assert_eq!(
            redirect_url(o, "/p", "__clerk_db_jwt=dvb_1"),
            "https://app.example.com/p"
        );
        assert_eq!(
            redirect_url(o, "/p", "a=%20~b"),
            "https://app.example.com/p?a=+%7Eb"
        );
    }

    #[test]
    fn clean_url_drops_the_handshake_params() {
        // [H:D07]
        assert_eq!(
            clean_url(
                "https://app.example.com",
                "/p",
                "y=2&__clerk_handshake_nonce=DN1&__clerk_db_jwt=dvb_1&__clerk_help=1"
            ),
            "https://app.example.com/p?y=2"
        );
        assert_eq!(
            clean_url("http://127.0.0.1:8082", "/", "__clerk_handshake=x"),
            "http://127.0.0.1:8082/"
        );
    }

    #[test]
    fn handshake_url_matches_the_harness() {
        // handshake.md §5, [H:P08].
        let url = handshake_url(
            "clerk.example.com",
            &HandshakeParams {
                redirect_url: "https://app.example.com/dashboard?x=1",
                suffixed_cookies: false,
                reason: "session-token-expired-refresh-non-eligible-no-refresh-cookie",
                session_token: Some("eyJ.a.b"),
                dev_browser: None,
            },
        );
        assert_eq!(
            url,
            "https://clerk.example.com/v1/client/handshake?redirect_url=https%3A%2F%2Fapp.example.com%2Fdashboard%3Fx%3D1\
             &__clerk_api_version=2026-05-12&suffixed_cookies=false\
             &__clerk_hs_reason=session-token-expired-refresh-non-eligible-no-refresh-cookie&format=nonce&__session=eyJ.a.b"
        );
        // A proxy keeps its path [H:M07]; development adds the dev browser [H:D04].
        let url = handshake_url(
            "https://app.example.com/__clerk/",
            &HandshakeParams {
                redirect_url: "https://app.example.com/",
                suffixed_cookies: true,
                reason: "dev-browser-missing",
                session_token: None,
                dev_browser: Some("dvb_1"),
            },
        );
        assert_eq!(
            url,
            "https://app.example.com/__clerk/v1/client/handshake?redirect_url=https%3A%2F%2Fapp.example.com%2F\
             &__clerk_api_version=2026-05-12&suffixed_cookies=true&__clerk_hs_reason=dev-browser-missing\
             &format=nonce&__clerk_db_jwt=dvb_1"
        );
    }
}
