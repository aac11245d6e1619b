//! Why one file over 900 lines: these are tests only, one per row group of handshake.md §4, in
//! the spec's order, so the file reads as the table it checks.
//!
//! handshake.md §4 as tables: every row and modifier, with Clerk's reason codes, and the
//! `usesSuffixedCookies` rules. Case ids in names are the harness's (`fixtures/clerk-handshake-
//! harness.mjs`). Verification itself is the caller's: a row that reaches it names the verdict
//! the verifier gives (those verdicts are tested against Clerk's vectors elsewhere).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::{json, Value};

use super::*;

const NOW: i64 = 1_760_000_000;
const PROD_KEY: &str = "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k"; // clerk.example.com, suffix naoXFJnI
const DEV_KEY: &str = "pk_test_Zm9vLWJhci0xMy5jbGVyay5hY2NvdW50cy5kZXYk"; // suffix nx2hSE6I
const PROD_SFX: &str = "naoXFJnI";

fn prod() -> Instance {
    Instance::new(PublishableKey::parse(PROD_KEY).expect("prod key"), None)
}

fn dev() -> Instance {
    Instance::new(PublishableKey::parse(DEV_KEY).expect("dev key"), None)
}

/// An (unsigned) token with these claims over the harness's defaults.
fn token_with(fapi: &str, claims: Value, header: Value) -> String {
    let mut payload = json!({
        "sub": "user_1", "sid": "sess_1", "azp": "https://app.example.com",
        "iss": format!("https://{fapi}"), "iat": NOW, "nbf": NOW - 10, "exp": NOW + 60, "v": 2,
    });
    let mut head = json!({"alg": "RS256", "typ": "JWT", "kid": "ins_test"});
    for (target, extra) in [(&mut payload, claims), (&mut head, header)] {
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                target.as_object_mut().expect("object").remove(k);
            } else {
                target[k] = v.clone();
            }
        }
    }
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(&head),
        part(&payload),
        URL_SAFE_NO_PAD.encode("signature")
    )
}

fn token(claims: Value) -> String {
    token_with("clerk.example.com", claims, json!({}))
}

#[derive(Debug)]
struct Req {
    method: &'static str,
    dest: Option<&'static str>,
    accept: Option<&'static str>,
    query: String,
    cookies: Vec<(String, String)>,
    header_token: Option<String>,
}

impl Default for Req {
    fn default() -> Self {
        Self {
            method: "GET",
            dest: Some("document"),
            accept: None,
            query: "x=1".into(),
            cookies: Vec::new(),
            header_token: None,
        }
    }
}

impl Req {
    fn cookie(mut self, name: &str, value: impl Into<String>) -> Self {
        self.cookies.push((name.into(), value.into()));
        self
    }

    fn session(self, token: String, uat: i64) -> Self {
        self.cookie("__session", token)
            .cookie("__client_uat", uat.to_string())
    }
}

/// What a row expects; `Verdict` is what the verifier says when the row gets that far.
#[derive(Debug, PartialEq)]
enum Expect {
    In,
    Out(&'static str),
    Redirect(&'static str),
}

type Verdict = Option<Result<(), AuthErrorReason>>;

/// Runs the cookie path; returns the resolution and whether verification was asked for.
fn run(instance: &Instance, req: &Req, verdict: Verdict) -> (Resolution, bool) {
    let cookie_header = req
        .cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let request = DocumentRequest {
        method: req.method,
        sec_fetch_dest: req.dest,
        accept: req.accept,
        origin: "https://app.example.com",
        path: "/dashboard",
        query: &req.query,
        cookie_header: &cookie_header,
        header_token: req.header_token.as_deref(),
    };
    let path = CookiePath::new(instance, &request, NOW);
    match path.start() {
        Step::Done(outcome) => (path.resolve(outcome), false),
        Step::Verify { token, .. } => {
            let verdict = verdict.unwrap_or_else(|| panic!("{req:?} asks for verification"));
            (path.resolve(path.verified(&token, verdict)), true)
        }
        Step::ReturnLeg { .. } => panic!("{req:?} is not a return leg"),
    }
}

fn check(
    name: &str,
    instance: &Instance,
    req: Req,
    verdict: Verdict,
    expect: Expect,
) -> Resolution {
    let (resolution, verified) = run(instance, &req, verdict);
    let got = match &resolution {
        Resolution::SignedIn { .. } => Expect::In,
        Resolution::SignedOut { reason } => Expect::Out(leak(reason)),
        Resolution::Redirect { reason, .. } => Expect::Redirect(leak(reason)),
    };
    assert_eq!(got, expect, "{name}");
    assert_eq!(
        verified,
        verdict.is_some(),
        "{name}: verification asked for"
    );
    resolution
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The query parameters of a redirect's `Location`, in order.
fn params(resolution: &Resolution) -> Vec<(String, String)> {
    let Resolution::Redirect { location, .. } = resolution else {
        panic!("not a redirect: {resolution:?}");
    };
    let (base, query) = location.split_once('?').expect("a query");
    assert!(base.ends_with("/v1/client/handshake"), "{base}");
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const EXPIRED_NO_REFRESH: &str = "session-token-expired-refresh-non-eligible-no-refresh-cookie";

#[test]
fn decision_table_rows() {
    let p = prod();
    let valid = token(json!({}));
    let expired = token(json!({"iat": NOW - 600, "exp": NOW - 540}));
    let rows: Vec<(&str, Req, Verdict, Expect)> = vec![
        (
            "1 P01 no cookies",
            Req::default(),
            None,
            Expect::Out("session-token-and-uat-missing"),
        ),
        (
            "1 P02 uat=0",
            Req::default().cookie("__client_uat", "0"),
            None,
            Expect::Out("session-token-and-uat-missing"),
        ),
        (
            "1 uat non-numeric",
            Req::default().cookie("__client_uat", "abc"),
            None,
            Expect::Out("session-token-and-uat-missing"),
        ),
        (
            "2 P03 uat>0 only",
            Req::default().cookie("__client_uat", NOW.to_string()),
            None,
            Expect::Redirect("client-uat-but-no-session-token"),
        ),
        (
            "3 P04 session, no uat",
            Req::default().cookie("__session", valid.clone()),
            None,
            Expect::Redirect("session-token-but-no-client-uat"),
        ),
        (
            "3 P05 session, uat=0",
            Req::default().session(valid.clone(), 0),
            None,
            Expect::Redirect("session-token-but-no-client-uat"),
        ),
        (
            "3 P22 session, uat=abc",
            Req::default()
                .cookie("__session", valid.clone())
                .cookie("__client_uat", "abc"),
            None,
            Expect::Redirect("session-token-but-no-client-uat"),
        ),
        (
            "3 garbage session, no uat",
            Req::default().cookie("__session", "abc"),
            None,
            Expect::Redirect("session-token-but-no-client-uat"),
        ),
        (
            "4 P14 not a JWT",
            Req::default().session("abc".into(), NOW),
            None,
            Expect::Out("token-invalid"),
        ),
        (
            "5 P25 JWT-template cat",
            Req::default().session(
                token_with(
                    "clerk.example.com",
                    json!({}),
                    json!({"cat": "cl_B7d4PD222AAA"}),
                ),
                NOW,
            ),
            None,
            Expect::Out("token-type-mismatch"),
        ),
        (
            "5 OAuth access token (typ at+jwt)",
            Req::default().session(
                token_with("clerk.example.com", json!({}), json!({"typ": "at+jwt"})),
                NOW,
            ),
            None,
            Expect::Out("token-type-mismatch"),
        ),
        (
            "5 M2M token (sub mch_)",
            Req::default().session(token(json!({"sub": "mch_1"})), NOW),
            None,
            Expect::Out("token-type-mismatch"),
        ),
        (
            "6 P07 iat < uat",
            Req::default().session(valid.clone(), NOW + 5),
            None,
            Expect::Redirect("session-token-iat-before-client-uat"),
        ),
        (
            "6 iat < uat even with a bad signature (checked first)",
            Req::default().session(token(json!({"iat": NOW - 100})), NOW),
            None,
            Expect::Redirect("session-token-iat-before-client-uat"),
        ),
        (
            "7 P08 expired",
            Req::default().session(expired.clone(), NOW - 600),
            Some(Err(AuthErrorReason::TokenExpired)),
            Expect::Redirect(EXPIRED_NO_REFRESH),
        ),
        (
            "8 P11 nbf in the future",
            Req::default().session(token(json!({"nbf": NOW + 600})), NOW),
            Some(Err(AuthErrorReason::TokenNotActiveYet)),
            Expect::Redirect("session-token-nbf"),
        ),
        (
            "9 P12 iat in the future",
            Req::default().session(token(json!({"iat": NOW + 600, "nbf": null})), NOW),
            Some(Err(AuthErrorReason::TokenIatInTheFuture)),
            Expect::Redirect("session-token-iat-in-the-future"),
        ),
        (
            "10 P13 bad signature",
            Req::default().session(valid.clone(), NOW),
            Some(Err(AuthErrorReason::TokenInvalidSignature)),
            Expect::Out("token-invalid-signature"),
        ),
        (
            "10 algorithm",
            Req::default().session(valid.clone(), NOW),
            Some(Err(AuthErrorReason::TokenInvalidAlgorithm)),
            Expect::Out("token-invalid-algorithm"),
        ),
        (
            "10 azp",
            Req::default().session(valid.clone(), NOW),
            Some(Err(AuthErrorReason::TokenInvalidAuthorizedParties)),
            Expect::Out("token-invalid-authorized-parties"),
        ),
        (
            "10 kid",
            Req::default().session(valid.clone(), NOW),
            Some(Err(AuthErrorReason::JwkKidMismatch)),
            Expect::Out("jwk-kid-mismatch"),
        ),
        (
            "10 JWKS failure",
            Req::default().session(valid.clone(), NOW),
            Some(Err(AuthErrorReason::RemoteJwkFailedToLoad)),
            Expect::Out("jwk-remote-failed-to-load"),
        ),
        (
            "11 P06 valid, uat = iat",
            Req::default().session(valid.clone(), NOW),
            Some(Ok(())),
            Expect::In,
        ),
        (
            "11 valid, uat < iat",
            Req::default().session(valid.clone(), NOW - 30),
            Some(Ok(())),
            Expect::In,
        ),
    ];
    for (name, req, verdict, expect) in rows {
        check(name, &p, req, verdict, expect);
    }
}

#[test]
fn handshake_redirects_carry_every_parameter_in_order() {
    let p = prod();
    let expired = token(json!({"iat": NOW - 600, "exp": NOW - 540}));
    let r = check(
        "P08",
        &p,
        Req::default().session(expired.clone(), NOW - 600),
        Some(Err(AuthErrorReason::TokenExpired)),
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
    let Resolution::Redirect {
        location,
        set_cookie,
        ..
    } = &r
    else {
        unreachable!()
    };
    assert!(
        location.starts_with("https://clerk.example.com/v1/client/handshake?"),
        "{location}"
    );
    assert_eq!(
        set_cookie,
        "__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"
    );
    let names: Vec<&str> = params(&r).iter().map(|(k, _)| leak(k)).collect();
    assert_eq!(
        names,
        [
            "redirect_url",
            "__clerk_api_version",
            "suffixed_cookies",
            "__clerk_hs_reason",
            "format",
            "__session"
        ]
    );
    let ps = params(&r);
    assert_eq!(
        param(&ps, "redirect_url"),
        Some("https://app.example.com/dashboard?x=1")
    );
    assert_eq!(param(&ps, "__clerk_api_version"), Some("2026-05-12"));
    assert_eq!(param(&ps, "suffixed_cookies"), Some("false"));
    assert_eq!(param(&ps, "__clerk_hs_reason"), Some(EXPIRED_NO_REFRESH));
    assert_eq!(param(&ps, "format"), Some("nonce"));
    assert_eq!(param(&ps, "__session"), Some(expired.as_str()));

    // Without a session cookie there is no __session parameter (P03).
    let r = check(
        "P03",
        &p,
        Req::default().cookie("__client_uat", NOW.to_string()),
        None,
        Expect::Redirect("client-uat-but-no-session-token"),
    );
    assert_eq!(param(&params(&r), "__session"), None);

    // A proxy URL replaces the host and keeps its path (M07).
    let proxied = Instance::new(
        PublishableKey::parse(PROD_KEY).expect("key"),
        Some("https://app.example.com/__clerk".into()),
    );
    let (r, _) = run(
        &proxied,
        &Req::default().cookie("__client_uat", NOW.to_string()),
        None,
    );
    let Resolution::Redirect { location, .. } = r else {
        panic!("{r:?}")
    };
    assert!(
        location.starts_with("https://app.example.com/__clerk/v1/client/handshake?redirect_url="),
        "{location}"
    );
}

#[test]
fn requests_that_are_not_document_gets_are_signed_out_with_the_same_reason() {
    let p = prod();
    let expired = token(json!({"iat": NOW - 600, "exp": NOW - 540}));
    let expired_req = |method, dest, accept| Req {
        method,
        dest,
        accept,
        ..Req::default().session(expired.clone(), NOW - 600)
    };
    let exp = Some(Err(AuthErrorReason::TokenExpired));
    check(
        "P09 fetch",
        &p,
        expired_req("GET", Some("empty"), None),
        exp,
        Expect::Out(EXPIRED_NO_REFRESH),
    );
    check(
        "P10 POST document",
        &p,
        expired_req("POST", Some("document"), None),
        exp,
        Expect::Out("session-token-expired-refresh-non-eligible-non-get"),
    );
    check(
        "P17 Accept text/html without Sec-Fetch-Dest",
        &p,
        expired_req("GET", None, Some("text/html,application/xhtml+xml")),
        exp,
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
    check(
        "P17b Accept */*",
        &p,
        expired_req("GET", None, Some("*/*")),
        exp,
        Expect::Out(EXPIRED_NO_REFRESH),
    );
    let uat_only = |method, dest| Req {
        method,
        dest,
        ..Req::default().cookie("__client_uat", NOW.to_string())
    };
    check(
        "P23 iframe",
        &p,
        uat_only("GET", Some("iframe")),
        None,
        Expect::Redirect("client-uat-but-no-session-token"),
    );
    check(
        "P24 HEAD",
        &p,
        uat_only("HEAD", Some("document")),
        None,
        Expect::Out("client-uat-but-no-session-token"),
    );
}

#[test]
fn the_loop_guard_stops_at_exactly_three() {
    let p = prod();
    let expired = token(json!({"iat": NOW - 600, "exp": NOW - 540}));
    let exp = Some(Err(AuthErrorReason::TokenExpired));
    let with_count = |n: &str| {
        Req::default()
            .session(expired.clone(), NOW - 600)
            .cookie("__clerk_redirect_count", n)
    };
    let r = check(
        "P16 count 2",
        &p,
        with_count("2"),
        exp,
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
    let Resolution::Redirect { set_cookie, .. } = r else {
        unreachable!()
    };
    assert_eq!(
        set_cookie,
        "__clerk_redirect_count=3; SameSite=Lax; HttpOnly; Max-Age=2"
    );
    check(
        "P15 count 3",
        &p,
        with_count("3"),
        exp,
        Expect::Out(EXPIRED_NO_REFRESH),
    );
    // Clerk compares with `=== 3`: a larger number redirects again (its cookie lives 2 s).
    check(
        "count 4",
        &p,
        with_count("4"),
        exp,
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
    check(
        "count garbage",
        &p,
        with_count("x"),
        exp,
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
}

#[test]
fn the_header_token_takes_priority_and_never_mixes_with_cookies() {
    let p = prod();
    let valid = token(json!({}));
    let expired = token(json!({"iat": NOW - 600, "exp": NOW - 540}));
    let bearer = |t: &str| Req {
        header_token: Some(t.to_owned()),
        ..Req::default()
    };
    // P19b: a valid Bearer with an expired cookie is signed in with the header token.
    let (r, verified) = run(
        &p,
        &Req {
            header_token: Some(valid.clone()),
            ..Req::default().session(expired.clone(), NOW)
        },
        Some(Ok(())),
    );
    assert!(verified);
    assert_eq!(
        r,
        Resolution::SignedIn {
            token: valid.clone()
        }
    );
    // P18: an expired Bearer on a document GET hands over the header token.
    let r = check(
        "P18",
        &p,
        bearer(&expired),
        Some(Err(AuthErrorReason::TokenExpired)),
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
    assert_eq!(param(&params(&r), "__session"), Some(expired.as_str()));
    check(
        "header not a JWT",
        &p,
        bearer("abc"),
        None,
        Expect::Out("token-invalid"),
    );
    check(
        "header M2M",
        &p,
        bearer(&token(json!({"sub": "mch_1"}))),
        None,
        Expect::Out("token-type-mismatch"),
    );
    check(
        "header bad signature",
        &p,
        bearer(&valid),
        Some(Err(AuthErrorReason::TokenInvalidSignature)),
        Expect::Out("token-invalid-signature"),
    );
    // A nonce cookie does not turn a header request into a return leg.
    check(
        "header + nonce cookie",
        &p,
        Req {
            header_token: Some(valid.clone()),
            ..Req::default().cookie("__clerk_handshake_nonce", "N1")
        },
        Some(Ok(())),
        Expect::In,
    );
}

#[test]
fn a_refresh_cookie_is_reported_but_the_handshake_refreshes() {
    let p = prod();
    let expired = token(json!({"iat": NOW - 600, "exp": NOW - 540}));
    let exp = Some(Err(AuthErrorReason::TokenExpired));
    check(
        "F01 suffixed __refresh",
        &p,
        Req::default()
            .session(expired.clone(), NOW - 600)
            .cookie(&format!("__refresh_{PROD_SFX}"), "rt_1"),
        exp,
        Expect::Redirect("session-token-expired-refresh-missing-api-client"),
    );
    check(
        "F03 un-suffixed __refresh is ignored",
        &p,
        Req::default()
            .session(expired.clone(), NOW - 600)
            .cookie("__refresh", "rt_1"),
        exp,
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
}

#[test]
fn return_legs_come_first_and_the_nonce_wins() {
    let p = prod();
    let d = dev();
    let valid = token(json!({}));
    let start = |instance: &Instance, query: &str, cookies: &str| {
        let request = DocumentRequest {
            method: "GET",
            sec_fetch_dest: Some("document"),
            accept: None,
            origin: "https://app.example.com",
            path: "/p",
            query,
            cookie_header: cookies,
            header_token: None,
        };
        CookiePath::new(instance, &request, NOW).start()
    };
    let leg = |nonce: Option<&str>, token: Option<&str>| Step::ReturnLeg {
        nonce: nonce.map(Into::into),
        token: token.map(Into::into),
    };
    let session = format!("__session={valid}; __client_uat={NOW}");
    assert_eq!(
        start(&p, "", &format!("__clerk_handshake_nonce=N1; {session}")),
        leg(Some("N1"), None),
        "R01"
    );
    assert_eq!(
        start(&p, "x=1&__clerk_handshake_nonce=N2", ""),
        leg(Some("N2"), None),
        "R02"
    );
    assert_eq!(
        start(
            &p,
            "__clerk_handshake_nonce=Q",
            "__clerk_handshake_nonce=C; __clerk_handshake=T"
        ),
        leg(Some("Q"), Some("T")),
        "query before cookie; both kept, the nonce is used first"
    );
    assert_eq!(
        start(&p, "", "__clerk_handshake=T"),
        leg(None, Some("T")),
        "R06"
    );
    // In development, before the dev-browser checks (D07).
    assert_eq!(
        start(
            &d,
            "y=2&__clerk_handshake_nonce=DN1&__clerk_db_jwt=dvb_1",
            ""
        ),
        leg(Some("DN1"), None),
        "D07"
    );
    // An empty nonce is no nonce.
    assert!(matches!(
        start(&p, "__clerk_handshake_nonce=", &session),
        Step::Verify { .. }
    ));
}

#[test]
fn development_instances_check_the_dev_browser_first() {
    let d = dev();
    let fapi = "foo-bar-13.clerk.accounts.dev";
    let valid = token_with(fapi, json!({}), json!({}));
    let expired = token_with(fapi, json!({"iat": NOW - 600, "exp": NOW - 540}), json!({}));
    check(
        "D01 no cookies",
        &d,
        Req::default(),
        None,
        Expect::Redirect("dev-browser-missing"),
    );
    let r = check(
        "D06 valid session, no dev browser",
        &d,
        Req::default().session(valid.clone(), NOW),
        None,
        Expect::Redirect("dev-browser-missing"),
    );
    let ps = params(&r);
    assert_eq!(param(&ps, "__clerk_db_jwt"), None);
    assert_eq!(param(&ps, "__session"), Some(valid.as_str()));
    check(
        "D02 dev browser only",
        &d,
        Req::default().cookie("__clerk_db_jwt", "dvb_1"),
        None,
        Expect::Out("session-token-and-uat-missing"),
    );
    let r = check(
        "D03 ?__clerk_db_jwt",
        &d,
        Req {
            query: "__clerk_db_jwt=dvb_2&y=2".into(),
            ..Req::default().cookie("__clerk_db_jwt", "dvb_1")
        },
        None,
        Expect::Redirect("dev-browser-sync"),
    );
    let ps = params(&r);
    assert_eq!(
        param(&ps, "__clerk_db_jwt"),
        Some("dvb_2"),
        "the query wins"
    );
    assert_eq!(
        param(&ps, "redirect_url"),
        Some("https://app.example.com/dashboard?y=2")
    );
    let r = check(
        "D04 expired with a dev browser",
        &d,
        Req::default()
            .cookie("__clerk_db_jwt", "dvb_1")
            .session(expired.clone(), NOW - 600),
        Some(Err(AuthErrorReason::TokenExpired)),
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
    let Resolution::Redirect { location, .. } = &r else {
        unreachable!()
    };
    assert!(location.starts_with(&format!("https://{fapi}/v1/client/handshake?")));
    assert_eq!(param(&params(&r), "__clerk_db_jwt"), Some("dvb_1"));
    check(
        "D05 valid with a dev browser",
        &d,
        Req::default()
            .cookie("__clerk_db_jwt", "dvb_1")
            .session(valid.clone(), NOW),
        Some(Ok(())),
        Expect::In,
    );
    // Production ignores the dev browser entirely.
    let p = prod();
    let r = check(
        "prod ignores ?__clerk_db_jwt",
        &p,
        Req {
            query: "__clerk_db_jwt=dvb_2".into(),
            ..Req::default().cookie("__client_uat", NOW.to_string())
        },
        None,
        Expect::Redirect("client-uat-but-no-session-token"),
    );
    assert_eq!(param(&params(&r), "__clerk_db_jwt"), None);
}

#[test]
fn suffixed_cookies_are_chosen_as_clerk_chooses_them() {
    let p = prod();
    let valid = token(json!({}));
    let expired = token(json!({"iat": NOW - 600, "exp": NOW - 540}));
    let s = |name: &str| format!("{name}_{PROD_SFX}");
    // S01: the suffixed pair, valid → signed in with the suffixed token.
    let (r, _) = run(
        &p,
        &Req::default()
            .cookie(&s("__session"), valid.clone())
            .cookie(&s("__client_uat"), NOW.to_string()),
        Some(Ok(())),
    );
    assert_eq!(
        r,
        Resolution::SignedIn {
            token: valid.clone()
        }
    );
    // S02: suffixed and expired → handshake with suffixed_cookies=true.
    let r = check(
        "S02",
        &p,
        Req::default()
            .cookie(&s("__session"), expired.clone())
            .cookie(&s("__client_uat"), (NOW - 600).to_string()),
        Some(Err(AuthErrorReason::TokenExpired)),
        Expect::Redirect(EXPIRED_NO_REFRESH),
    );
    assert_eq!(param(&params(&r), "suffixed_cookies"), Some("true"));
    // S03: both pairs, the un-suffixed token is newer → un-suffixed.
    let older = token(json!({"iat": NOW - 20}));
    let (r, _) = run(
        &p,
        &Req::default()
            .cookie(&s("__session"), older.clone())
            .cookie(&s("__client_uat"), (NOW - 20).to_string())
            .session(valid.clone(), NOW),
        Some(Ok(())),
    );
    assert_eq!(
        r,
        Resolution::SignedIn {
            token: valid.clone()
        }
    );
    // S04: a suffixed uat only, un-suffixed uat 0 → suffixed: uat > 0 without a session.
    let r = check(
        "S04",
        &p,
        Req::default()
            .cookie(&s("__client_uat"), NOW.to_string())
            .cookie("__client_uat", "0"),
        None,
        Expect::Redirect("client-uat-but-no-session-token"),
    );
    assert_eq!(param(&params(&r), "suffixed_cookies"), Some("true"));
    // S05: a suffixed session without a suffixed uat → un-suffixed: uat > 0, no session.
    let r = check(
        "S05",
        &p,
        Req::default()
            .cookie(&s("__session"), valid.clone())
            .cookie("__client_uat", NOW.to_string()),
        None,
        Expect::Redirect("client-uat-but-no-session-token"),
    );
    assert_eq!(param(&params(&r), "suffixed_cookies"), Some("false"));
    // P21: an un-suffixed token of another instance → suffixed cookies, which are absent.
    check(
        "P21",
        &p,
        Req::default().session(token_with("clerk.other.com", json!({}), json!({})), NOW),
        None,
        Expect::Out("session-token-and-uat-missing"),
    );
}

#[test]
fn suffix_rules_one_by_one() {
    let p = prod();
    let d = dev();
    let s = |name: &str| format!("{name}_{PROD_SFX}");
    let uses = |instance: &Instance, cookies: &[(&str, &str)]| {
        let header = cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        cookies::uses_suffixed_cookies(&Cookies::parse(&header), instance.key(), NOW)
    };
    let ours = token(json!({"iat": NOW}));
    let no_iss = token(json!({"iss": null}));
    let http_iss = token(json!({"iss": "HTTP://clerk.example.com"}));
    let numeric_iss = token(json!({"iss": 5}));
    let ss = s("__session");
    let us = s("__client_uat");
    // 1. An un-suffixed cookie that is not a JWT, or has no issuer.
    assert!(!uses(&p, &[("__session", "abc"), (&ss, &ours), (&us, "1")]));
    assert!(!uses(
        &p,
        &[("__session", &no_iss), (&ss, &ours), (&us, "1")]
    ));
    // 2. A foreign or non-string issuer; the scheme is stripped case-insensitively.
    assert!(uses(&p, &[("__session", &numeric_iss)]));
    assert!(
        !uses(&p, &[("__session", &http_iss)]),
        "ours, no suffixed cookies: rule 3"
    );
    // 3. No suffixed cookies.
    assert!(!uses(&p, &[("__session", &ours), ("__client_uat", "1")]));
    assert!(!uses(&p, &[(&ss, ""), (&us, "")]), "empty counts as absent");
    // 4. Both signed in, un-suffixed newer.
    let newer = token(json!({"iat": NOW + 1}));
    assert!(!uses(
        &p,
        &[
            ("__session", &newer),
            (&ss, &ours),
            (&us, "1"),
            ("__client_uat", "1")
        ]
    ));
    assert!(uses(
        &p,
        &[
            ("__session", &ours),
            (&ss, &newer),
            (&us, "1"),
            ("__client_uat", "1")
        ]
    ));
    // 5. Suffixed signed out, un-suffixed not (a missing cookie is "not 0").
    assert!(!uses(&p, &[(&us, "0")]));
    assert!(uses(&p, &[(&us, "0"), ("__client_uat", "0")]));
    // 6. Development: an expired suffixed session while the un-suffixed pair is signed out.
    let ds = "__session_nx2hSE6I";
    let dus = "__client_uat_nx2hSE6I";
    let dexpired = token_with(
        "foo-bar-13.clerk.accounts.dev",
        json!({"exp": NOW}),
        json!({}),
    );
    assert!(!uses(
        &d,
        &[(ds, &dexpired), (dus, "1"), ("__client_uat", "0")]
    ));
    let p_expired = token(json!({"exp": NOW}));
    assert!(
        uses(&p, &[(&ss, &p_expired), (&us, "1"), ("__client_uat", "0")]),
        "production does not apply rule 6"
    );
    // 7. A suffixed session without a suffixed uat.
    assert!(!uses(&p, &[(&ss, &ours)]));
    // 8. Otherwise suffixed.
    assert!(uses(&p, &[(&ss, &ours), (&us, "1")]));
}
