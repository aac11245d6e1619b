//! The handshake of server-rendered pages, end to end (handshake.md §14.7): a browser with a
//! real cookie jar, the mock Frontend API and Backend API, and an actix app in handshake mode,
//! all over real HTTP on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use actix_web::http::Method;
use clerk_actix::{
    testing::{Endpoint, Fault, FrontendFault, MockClerk},
    ClerkMiddleware,
};
use clerk_actix_tests::{
    browser::Browser,
    pages::{client_from, made_up, made_up_nonce_request, start, Setup},
};

fn query_pairs(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[actix_web::test]
async fn production_sign_in_then_one_handshake_per_missing_or_expired_cookie() {
    let s = start(false);
    let mut browser = Browser::new();
    let page = s.sign_in(&mut browser).await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert!(page.body.contains("signed in as user_1"), "{}", page.body);
    assert_eq!(page.url, s.home(), "no handshake parameter left in the URL");
    // Sign-in (302), the app's handshake (307), the Frontend API (307), the page.
    let redirects = page.redirects_from(&s.app);
    assert_eq!(redirects.len(), 1, "{page:#?}");
    let hop = redirects[0];
    assert_eq!(hop.cache_control.as_deref(), Some("no-store"));
    assert_eq!(
        hop.set_cookies,
        ["__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"]
    );
    let location = hop.location.as_deref().unwrap();
    assert!(
        location.starts_with(&format!("{}/v1/client/handshake?", s.mock.url())),
        "{location}"
    );
    let names: Vec<String> = query_pairs(location).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "redirect_url",
            "__clerk_api_version",
            "suffixed_cookies",
            "__clerk_hs_reason",
            "format"
        ]
    );
    let params = query_pairs(location);
    assert_eq!(params[0].1, s.home());
    assert_eq!(params[2].1, "false");
    assert_eq!(params[3].1, "client-uat-but-no-session-token");
    assert_eq!(params[4].1, "nonce");
    assert_eq!(s.mock.requests(Endpoint::ClientHandshake), 1);
    assert_eq!(s.mock.requests(Endpoint::HandshakePayload), 1);
    // The page that ends the handshake carries the new cookies and must not be cached.
    let last = page.hops.last().unwrap();
    assert_eq!(last.cache_control.as_deref(), Some("no-store"));
    let token = browser
        .cookie(&s.app, "__session")
        .expect("a fresh __session");
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], "user_1");
    assert_eq!(claims["azp"], s.app.as_str());
    assert!(
        browser
            .cookie_names(&s.app)
            .iter()
            .all(|n| !n.contains("handshake")),
        "no handshake cookie is left: {:?}",
        browser.cookie_names(&s.app)
    );
    assert_eq!(
        s.handshakes(),
        [
            "redirect:client-uat-but-no-session-token",
            "resolved:signed-in"
        ]
    );

    // A reload: signed in from the cookie, no round trip.
    let reload = browser.navigate(&s.home()).await;
    assert_eq!(reload.hops.len(), 1);
    assert!(reload.body.contains("signed in as user_1"));
    assert_eq!(s.mock.requests(Endpoint::HandshakePayload), 1);

    // The cookie removed (a returning visitor whose __session is gone): exactly one more 307.
    browser.remove_cookie(&s.app, "__session");
    let back = browser.navigate(&s.home()).await;
    assert_eq!(back.redirects_from(&s.app).len(), 1, "{back:#?}");
    assert!(back.body.contains("signed in as user_1"), "{}", back.body);
    assert_eq!(s.mock.requests(Endpoint::HandshakePayload), 2);

    // An expired cookie (the 60 s token of an idle tab): one 307 with Clerk's reason.
    let uat: i64 = browser
        .cookie(&s.app, "__client_uat")
        .unwrap()
        .parse()
        .unwrap();
    let expired = s
        .mock
        .token()
        .subject("user_1")
        .authorized_party(&s.app)
        .issued_at(uat)
        .not_before(uat - 10)
        .expires_at(uat - 10)
        .build();
    browser.set_cookie(&s.app, &format!("__session={expired}; Path=/"));
    s.handshakes();
    let refreshed = browser.navigate(&s.home()).await;
    let redirects = refreshed.redirects_from(&s.app);
    assert_eq!(redirects.len(), 1, "{refreshed:#?}");
    let params = query_pairs(redirects[0].location.as_deref().unwrap());
    assert_eq!(
        params[3].1,
        "session-token-expired-refresh-non-eligible-no-refresh-cookie"
    );
    assert_eq!(params[5], ("__session".to_owned(), expired.clone()));
    assert!(refreshed.body.contains("signed in as user_1"));
    assert_ne!(browser.cookie(&s.app, "__session").unwrap(), expired);
    assert_eq!(
        s.handshakes(),
        [
            "redirect:session-token-expired-refresh-non-eligible-no-refresh-cookie",
            "resolved:signed-in"
        ]
    );
}

#[actix_web::test]
async fn signed_out_at_clerk_clears_the_cookies_and_stays_signed_out() {
    let s = start(false);
    let mut browser = Browser::new();
    assert!(s.sign_in(&mut browser).await.body.contains("signed in"));
    s.mock.sign_out("user_1");
    browser.remove_cookie(&s.app, "__session");
    let page = browser.navigate(&s.home()).await;
    assert!(
        page.body.contains("signed out: session-token-missing"),
        "{page:#?}"
    );
    assert_eq!(browser.cookie(&s.app, "__session"), None);
    assert_eq!(browser.cookie(&s.app, "__client_uat").as_deref(), Some("0"));
    s.handshakes();
    // Signed out everywhere: no more handshakes.
    let reload = browser.navigate(&s.home()).await;
    assert_eq!(reload.hops.len(), 1, "{reload:#?}");
    assert!(reload.body.contains("<p id=\"auth\">signed out</p>"));
    assert!(s.handshakes().is_empty());
}

#[actix_web::test]
async fn a_misbehaving_frontend_api_is_stopped_by_the_loop_guard() {
    for fault in [FrontendFault::ExpiredToken, FrontendFault::NoPayload] {
        let s = start(false);
        // The loop counter lives 2 s: on a slow machine three hops could outlast it and the
        // guard would never see 3. Time stands still for the browser's cookies instead, and the
        // counter's end is the test's own step below.
        let mut browser = Browser::new().frozen_clock();
        s.mock.set_frontend_fault(Some(fault));
        let page = s.sign_in(&mut browser).await;
        assert_eq!(page.status, 200, "{fault:?}: {page:#?}");
        assert!(
            page.url.starts_with(&s.app),
            "ends on the app: {}",
            page.url
        );
        assert!(page.body.contains("signed out"), "{fault:?}: {}", page.body);
        assert_eq!(page.redirects_from(&s.app).len(), 3, "{fault:?}: {page:#?}");
        let events = s.handshakes();
        assert_eq!(
            events.iter().filter(|e| e.starts_with("redirect:")).count(),
            3,
            "{events:?}"
        );
        assert!(
            events.last().unwrap().starts_with("stopped:"),
            "{fault:?}: {events:?}"
        );
        // A spent nonce is not left behind: once the Frontend API behaves again (and the 2 s
        // loop counter is gone: removed here, as its Max-Age would), the next navigation is one
        // fresh handshake, signed in.
        assert_eq!(
            browser.cookie(&s.app, "__clerk_handshake_nonce"),
            None,
            "{fault:?}"
        );
        s.mock.set_frontend_fault(None);
        browser.remove_cookie(&s.app, "__clerk_redirect_count");
        let page = browser.navigate(&s.home()).await;
        assert!(
            page.body.contains("signed in as user_1"),
            "{fault:?}: {page:#?}"
        );
        assert_eq!(page.redirects_from(&s.app).len(), 1, "{fault:?}: {page:#?}");
        assert_eq!(
            s.handshakes().last().map(String::as_str),
            Some("resolved:signed-in"),
            "{fault:?}"
        );
    }
}

#[actix_web::test]
async fn api_requests_and_posts_are_never_redirected() {
    let s = start(false);
    let mut browser = Browser::new();
    assert!(s.sign_in(&mut browser).await.body.contains("signed in"));
    browser.remove_cookie(&s.app, "__session");
    s.handshakes();
    let before = s.mock.requests(Endpoint::ClientHandshake);
    let (hop, body) = browser
        .fetch(Method::GET, &format!("{}/api/me", s.app))
        .await;
    assert_eq!(hop.status, 401, "{body}");
    assert!(hop.location.is_none());
    let (hop, body) = browser.document(Method::POST, &s.home(), &[]).await;
    assert_eq!(hop.status, 200);
    assert!(body.contains("signed out: session-token-missing"), "{body}");
    assert_eq!(s.mock.requests(Endpoint::ClientHandshake), before);
    assert!(!s.handshakes().iter().any(|e| e.starts_with("redirect:")));
}

#[actix_web::test]
async fn the_authorization_header_keeps_priority() {
    let s = start(false);
    let mut browser = Browser::new();
    assert!(s.sign_in(&mut browser).await.body.contains("signed in"));
    let expired = s
        .mock
        .token()
        .subject("user_2")
        .authorized_party(&s.app)
        .expires_in(-60)
        .build();
    let bearer = format!("Bearer {expired}");
    let (hop, _) = browser
        .document(Method::GET, &s.home(), &[("Authorization", &bearer)])
        .await;
    assert_eq!(
        hop.status, 401,
        "an invalid header token is refused, not redirected"
    );
    let valid = s
        .mock
        .token()
        .subject("user_2")
        .authorized_party(&s.app)
        .build();
    let bearer = format!("Bearer {valid}");
    let (hop, body) = browser
        .document(Method::GET, &s.home(), &[("Authorization", &bearer)])
        .await;
    assert_eq!(hop.status, 200);
    assert!(body.contains("signed in as user_2"), "{body}");
}

#[actix_web::test]
async fn development_instance_with_a_dev_browser_and_the_clean_up_redirect() {
    let s = start(true);
    let mut browser = Browser::new();
    let page = s.sign_in(&mut browser).await;
    assert!(page.body.contains("signed in as user_1"), "{page:#?}");
    assert_eq!(page.url, s.home());
    let redirects = page.redirects_from(&s.app);
    assert_eq!(
        redirects.len(),
        2,
        "handshake, then the clean-up: {page:#?}"
    );
    let params = query_pairs(redirects[0].location.as_deref().unwrap());
    assert_eq!(params[3].1, "dev-browser-missing");
    // The return leg came in the URL; the app sends the browser to the clean URL.
    let nonce_hop = page
        .hops
        .iter()
        .find(|h| h.url.contains("__clerk_handshake_nonce="))
        .expect("the return leg");
    assert_eq!(nonce_hop.status, 307);
    assert_eq!(nonce_hop.location.as_deref(), Some(s.home().as_str()));
    assert_eq!(nonce_hop.cache_control.as_deref(), Some("no-store"));
    assert!(browser.cookie(&s.app, "__clerk_db_jwt").is_some());
    assert!(browser.cookie(&s.app, "__session").is_some());

    // The cookie removed: the dev browser travels to the Frontend API in the URL.
    browser.remove_cookie(&s.app, "__session");
    let back = browser.navigate(&s.home()).await;
    assert!(back.body.contains("signed in as user_1"), "{back:#?}");
    let params = query_pairs(back.redirects_from(&s.app)[0].location.as_deref().unwrap());
    assert_eq!(params[3].1, "client-uat-but-no-session-token");
    let dvb = browser.cookie(&s.app, "__clerk_db_jwt").unwrap();
    assert!(params.contains(&("__clerk_db_jwt".to_owned(), dvb)));
}

#[actix_web::test]
async fn suffixed_cookies_are_read_and_refreshed() {
    let s = start(false);
    let mut browser = Browser::new();
    assert!(s.sign_in(&mut browser).await.body.contains("signed in"));
    let uat = browser.cookie(&s.app, "__client_uat").unwrap();
    let suffix = suffix_of(&browser, &s);
    // A multi-app browser: only the suffixed pair, and its session cookie gone.
    browser.remove_cookie(&s.app, "__session");
    browser.remove_cookie(&s.app, "__client_uat");
    browser.set_cookie(&s.app, &format!("__client_uat_{suffix}={uat}; Path=/"));
    let page = browser.navigate(&s.home()).await;
    assert!(page.body.contains("signed in as user_1"), "{page:#?}");
    let params = query_pairs(page.redirects_from(&s.app)[0].location.as_deref().unwrap());
    assert_eq!(
        params[2],
        ("suffixed_cookies".to_owned(), "true".to_owned())
    );
    assert!(browser
        .cookie(&s.app, &format!("__session_{suffix}"))
        .is_some());
}

/// The instance's cookie suffix, as the mock's Frontend API names suffixed cookies.
fn suffix_of(_browser: &Browser, s: &Setup) -> String {
    use sha1_suffix::suffix;
    suffix(s.mock.publishable_key())
}

mod sha1_suffix {
    /// `base64url(SHA-1(publishable key))[..8]` (Clerk's `getCookieSuffix`), recomputed here
    /// so the test does not trust the library's own function.
    pub fn suffix(pk: &str) -> String {
        use base64::Engine as _;
        use sha1::Digest as _;
        let digest = sha1::Sha1::digest(pk.as_bytes());
        let mut s = base64::engine::general_purpose::URL_SAFE.encode(digest);
        s.truncate(8);
        s
    }
}

#[actix_web::test]
async fn an_outage_during_the_exchange_is_a_503_and_a_forged_nonce_signs_out() {
    let s = start(false);
    let mut browser = Browser::new();
    s.mock
        .set_fault(Endpoint::HandshakePayload, Fault::Status(503));
    let page = s.sign_in(&mut browser).await;
    assert_eq!(page.status, 503, "{page:#?}");
    assert!(page.hops.last().unwrap().retry_after.is_some());
    s.mock.clear_faults();
    // A forged nonce cookie: signed out, the page renders, the nonce cookie is cleared.
    browser.set_cookie(&s.app, "__clerk_handshake_nonce=forged; Path=/");
    s.handshakes();
    let (hop, body) = browser.document(Method::GET, &s.home(), &[]).await;
    assert_eq!(hop.status, 200, "{body}");
    assert!(body.contains("signed out: session-token-missing"), "{body}");
    assert_eq!(browser.cookie(&s.app, "__clerk_handshake_nonce"), None);
    assert_eq!(s.handshakes(), ["resolved:nonce-refused"]);
    // A forged nonce in the URL (where the return leg carries it): refused the same way, one
    // exchange asked of Clerk, signed out.
    s.mock.reset_counters();
    let (hop, body) = browser
        .document(
            Method::GET,
            &format!("{}?__clerk_handshake_nonce=forged-in-the-url", s.home()),
            &[],
        )
        .await;
    assert_eq!(s.handshakes(), ["resolved:nonce-refused"]);
    assert_eq!(s.mock.requests(Endpoint::HandshakePayload), 1);
    assert_eq!(hop.status, 200, "{body}");
    assert!(body.contains("signed out: session-token-missing"), "{body}");
    // Then the next navigation hands over again and signs in.
    let page = browser.navigate(&s.home()).await;
    assert!(page.body.contains("signed in as user_1"), "{page:#?}");
}

#[test]
fn configuration_mistakes_are_named() {
    use clerk_actix::{Clerk, ConfigError};
    let mock = MockClerk::start();
    let build = |pk: &str, proxy: Option<&str>| {
        let mut b = mock.clerk_builder().publishable_key(pk);
        if let Some(p) = proxy {
            b = b.proxy_url(p);
        }
        b.build().map(|_| ())
    };
    assert_eq!(
        build("pk_live_bm90LWEtaG9zdA", None),
        Err(ConfigError::InvalidPublishableKey),
        "no `$`, no `.`"
    );
    assert_eq!(
        build("sk_test_abc", None),
        Err(ConfigError::SecretKeyAsPublishable)
    );
    assert_eq!(
        build(mock.publishable_key(), Some("/__clerk")),
        Err(ConfigError::InvalidProxyUrl)
    );
    assert_eq!(
        build(mock.publishable_key(), Some("https://app.test/__clerk")),
        Ok(())
    );
    // The mode cannot run without a publishable key: it says so when the app is built.
    let without_pk = Clerk::builder()
        .secret_key(mock.secret_key())
        .api_url(mock.api_url())
        .authorized_parties(["http://localhost:3000"])
        .build()
        .unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ClerkMiddleware::new(without_pk).handshake()
    }))
    .expect_err("handshake() without a publishable key");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("CLERK_PUBLISHABLE_KEY"), "{message}");
}

#[actix_web::test]
async fn made_up_nonces_cost_a_bounded_number_of_calls_and_a_genuine_handshake_still_completes() {
    let s = start(false);
    let flood = client_from("127.0.0.2");
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..1_000 {
        let req = made_up_nonce_request(&flood, &s.home(), i);
        let res = req.send().await.unwrap();
        *statuses.entry(res.status().as_u16()).or_default() += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = s.mock.requests(Endpoint::HandshakePayload);
    // The client's budget: 3 refused exchanges, then one per 10 s; fetches exchange nothing.
    let bound = 3 + (elapsed / 10.0).ceil() as u64;
    println!("1,000 made-up nonces in {elapsed:.1} s: {calls} handshake_payload calls, statuses {statuses:?}");
    assert!(calls <= bound, "{calls} calls > {bound}");
    assert!(calls <= 100);
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "no 5xx"
    );
    let outcomes = s.handshakes();
    assert!(outcomes.contains(&"resolved:not-exchanged".to_owned()));
    assert!(!outcomes.iter().any(|o| o.starts_with("redirect:")));

    // One nonce presented by many at once: one call, then remembered as refused.
    let third = client_from("127.0.0.3");
    let nonce = made_up(32);
    let before = s.mock.requests(Endpoint::HandshakePayload);
    let url = format!("{}?__clerk_handshake_nonce={nonce}", s.home());
    let all = futures_util::future::join_all((0..50).map(|_| {
        third
            .get(&url)
            .insert_header(("sec-fetch-dest", "document"))
            .send()
    }))
    .await;
    assert!(all.iter().all(|r| r.as_ref().unwrap().status() == 200));
    for _ in 0..10 {
        let res = third
            .get(&url)
            .insert_header(("sec-fetch-dest", "document"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(s.mock.requests(Endpoint::HandshakePayload) - before, 1);

    // A genuine browser (127.0.0.1) signs in through a real handshake meanwhile.
    s.handshakes();
    let mut browser = Browser::new();
    let page = s.sign_in(&mut browser).await;
    assert!(page.body.contains("signed in as user_1"), "{page:#?}");
    assert_eq!(
        s.handshakes(),
        [
            "redirect:client-uat-but-no-session-token",
            "resolved:signed-in"
        ]
    );
}
