//! Tracing spans: one per authentication, user load, Backend API call and webhook, with their
//! outcome as fields (what an OpenTelemetry subscriber turns into traces); never the token.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use actix_web::{test, web, App, HttpResponse};
use clerk_actix::{
    store::ClerkUserRecord,
    testing::{unix_now, MockClerk},
    webhooks, ClerkMachine, ClerkMiddleware, ClerkUser, TokenTypes,
};
use clerk_actix_tests::{
    bearer, call_json,
    db::{Backend, TestDb},
    http::user_json,
};
use tracing_subscriber::fmt::{format::FmtSpan, MakeWriter};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The closing line of each span named `name` (the innermost span of the line's path).
fn closed<'t>(out: &'t str, name: &str) -> Vec<&'t str> {
    out.lines()
        .filter(|l| {
            l.split_once(": clerk_actix: close")
                .is_some_and(|(path, _)| {
                    // Spans are `clerk.*`, nested with `:`; field values hold no `clerk.`.
                    let innermost = path.rfind(":clerk.").max(path.rfind(" clerk."));
                    innermost.is_some_and(|at| path[at + 1..].starts_with(&format!("{name}{{")))
                })
        })
        .collect()
}

#[actix_web::test]
async fn spans_for_authentication_user_loads_backend_api_calls_and_webhooks() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (db, store) = TestDb::new(Backend::Sqlite).await;
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().user_store(store).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk).accepts_token(TokenTypes::ANY))
            .service(webhooks::resource::<ClerkUserRecord>("/webhooks/clerk"))
            .route(
                "/machine",
                web::get()
                    .to(|m: ClerkMachine| async move { HttpResponse::Ok().json(m.into_inner()) }),
            )
            .route(
                "/me/user",
                web::get().to(|u: ClerkUser<ClerkUserRecord>| async move {
                    HttpResponse::Ok().body(u.clerk_user_id.clone())
                }),
            ),
    )
    .await;
    let good = mock.token().subject("user_spans").build();
    let expired = mock.token().expires_at(unix_now() - 60).build();
    for token in [&good, &good, &expired] {
        let req = test::TestRequest::get()
            .uri("/me/user")
            .insert_header(bearer(token))
            .to_request();
        call_json(&app, req).await;
    }
    let api_key = mock.create_api_key("user_spans", "ci", &[]);
    let expired_m2m = mock.m2m_jwt("mch_spans", &[], -60);
    let mut api_key_id = String::new();
    for token in [&api_key, &api_key, &expired_m2m] {
        let req = test::TestRequest::get()
            .uri("/machine")
            .insert_header(bearer(token))
            .to_request();
        let (status, _, body) = call_json(&app, req).await;
        if status == 200 {
            api_key_id = body["id"].as_str().unwrap().to_owned();
        }
    }
    let delivery = mock.webhook("user.updated", user_json("user_spans", i64::MAX / 2, "Ada"));
    let mut req = test::TestRequest::post()
        .uri("/webhooks/clerk")
        .set_payload(delivery.body.clone());
    for (name, value) in delivery.headers() {
        req = req.insert_header((name, value));
    }
    assert_eq!(call_json(&app, req.to_request()).await.0, 200);

    let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let auth = closed(&out, "clerk.authenticate");
    assert_eq!(auth.len(), 3, "{out}");
    assert!(
        auth[0].contains("source=\"verified\"") && auth[0].contains("carrier=\"header\""),
        "{}",
        auth[0]
    );
    assert!(auth[1].contains("source=\"cache\""), "{}", auth[1]);
    assert!(auth[2].contains("reason=\"token-expired\""), "{}", auth[2]);
    // One user-cache miss (the first request), loaded from the Backend API.
    let users = closed(&out, "clerk.user");
    assert_eq!(users.len(), 1, "{out}");
    assert!(users[0].contains("source=\"api\""));
    let api = closed(&out, "clerk.backend_api");
    assert!(api
        .iter()
        .any(|l| l.contains("endpoint=\"jwks\"") && l.contains("status=\"2xx\"")));
    assert!(api
        .iter()
        .any(|l| l.contains("endpoint=\"users\"") && l.contains("status=\"2xx\"")));
    let hooks = closed(&out, "clerk.webhook");
    assert_eq!(hooks.len(), 1);
    assert!(
        hooks[0].contains("event_type=\"user.updated\"")
            && hooks[0].contains("outcome=\"applied\"")
    );
    // Machine tokens: one span each, with the type, the form and the outcome.
    let machines = closed(&out, "clerk.authenticate_machine");
    assert_eq!(machines.len(), 3, "{out}");
    assert!(
        machines[0].contains("token_type=\"api_key\"")
            && machines[0].contains("form=\"opaque\"")
            && machines[0].contains("source=\"verified\"")
            && machines[0].contains(&format!("id=\"{}\"", api_key_id)),
        "{}",
        machines[0]
    );
    assert!(machines[1].contains("source=\"cache\""), "{}", machines[1]);
    assert!(
        machines[2].contains("token_type=\"m2m_token\"")
            && machines[2].contains("form=\"jwt\"")
            && machines[2].contains("reason=\"token-expired\""),
        "{}",
        machines[2]
    );
    assert!(!out.contains(&api_key) && !out.contains(&expired_m2m));
    // Durations come with every closed span; the token never appears.
    assert!(auth.iter().all(|l| l.contains("time.busy")));
    assert!(!out.contains(&good) && !out.contains(&expired));
    db.cleanup().await;
}
