//! What abuse at the edges costs in Backend API calls (issue 28): `cargo run --release --bin
//! abusebench`.
//!
//! One client address per edge (127.0.0.2 to 127.0.0.5) sends 1,000 made-up credentials at that
//! edge of an app served over HTTP on 127.0.0.1, against a MockClerk that counts calls:
//!
//! - handshake nonces: a production-keyed app in handshake mode; half the nonces in the query,
//!   half in the nonce cookie, half on document `GET`s, half on `fetch`es;
//! - unknown API keys (`ak_…`), M2M tokens (`mt_…`) and OAuth tokens (`oat_…`) on a route that
//!   accepts every machine type.
//!
//! Then another address (127.0.0.1) presents 20 genuine first-time API keys, and a browser signs
//! in through a real handshake: the report says how many of those were served. It uses only the
//! public API and the test kit, so the same program runs against earlier versions for a
//! before/after.
//!
//! The last line is `PASS` when every edge made at most 100 calls per 1,000 requests, no request
//! got a 5xx other than a budget's 503, and the genuine callers were all served; otherwise
//! `FAIL: …` and a non-zero exit.

use std::collections::BTreeMap;

use clerk_actix::{
    testing::{Endpoint, MockClerk},
    TokenTypes,
};
use clerk_actix_tests::{
    browser::Browser,
    pages::{self, client_from, made_up},
};

type Statuses = BTreeMap<u16, u32>;

fn report(edge: &str, calls: u64, statuses: &Statuses, failures: &mut Vec<String>) {
    println!("| {edge} | 1000 | {calls} | {statuses:?} |");
    if calls > 100 {
        failures.push(format!("{edge}: {calls} Backend API calls"));
    }
    if statuses.keys().any(|s| *s >= 500 && *s != 503) {
        failures.push(format!("{edge}: a 5xx other than 503: {statuses:?}"));
    }
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flood = client_from("127.0.0.2");
    let mut failures = Vec::new();
    println!("| edge | made-up requests from one address | Backend API calls | statuses |");
    println!("|---|---|---|---|");

    // Handshake nonces.
    let s = pages::start(false);
    let mut statuses = Statuses::new();
    for i in 0..1_000 {
        let req = pages::made_up_nonce_request(&flood, &s.home(), i);
        let status = req.send().await.map_or(0, |r| r.status().as_u16());
        *statuses.entry(status).or_default() += 1;
    }
    report(
        "handshake nonces (query/cookie, documents/fetches)",
        s.mock.requests(Endpoint::HandshakePayload),
        &statuses,
        &mut failures,
    );

    // Unknown machine tokens.
    let mock = MockClerk::start();
    let base =
        clerk_actix_tests::http::serve_machine(mock.clerk_builder().build()?, TokenTypes::ANY);
    for (edge, prefix, endpoint, from) in [
        (
            "unknown API keys",
            "ak_",
            Endpoint::ApiKeysVerify,
            "127.0.0.3",
        ),
        (
            "unknown M2M tokens",
            "mt_",
            Endpoint::M2mTokensVerify,
            "127.0.0.4",
        ),
        (
            "unknown OAuth tokens",
            "oat_",
            Endpoint::OAuthTokensVerify,
            "127.0.0.5",
        ),
    ] {
        let flood = client_from(from);
        let mut statuses = Statuses::new();
        for _ in 0..1_000 {
            let status = flood
                .get(format!("{base}/machine"))
                .bearer_auth(format!("{prefix}{}", made_up(32)))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            *statuses.entry(status).or_default() += 1;
        }
        report(edge, mock.requests(endpoint), &statuses, &mut failures);
    }

    // Genuine callers elsewhere, right after.
    let genuine = client_from("127.0.0.1");
    let mut served = 0;
    for i in 0..20 {
        let key = mock.create_api_key(&format!("user_genuine_{i}"), "first-time", &[]);
        let ok = genuine
            .get(format!("{base}/machine"))
            .bearer_auth(&key)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        served += u32::from(ok);
    }
    println!("genuine first-time API keys from 127.0.0.1 right after: {served}/20 served");
    if served < 20 {
        failures.push(format!("{served}/20 genuine first-time keys served"));
    }
    let mut browser = Browser::new();
    let page = s.sign_in(&mut browser).await;
    let signed_in = page.body.contains("signed in as user_1");
    println!("a browser on 127.0.0.1 signing in through a handshake right after: {signed_in}");
    if !signed_in {
        failures.push("the genuine handshake did not sign in".to_owned());
    }

    if failures.is_empty() {
        println!("PASS");
        Ok(())
    } else {
        for f in &failures {
            println!("FAIL: {f}");
        }
        Err(format!("{} check(s) failed", failures.len()).into())
    }
}
