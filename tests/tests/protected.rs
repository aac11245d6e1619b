//! `#[clerk_protected]` at runtime: 200 / 401 / 403 across return types, attribute orders,
//! registration styles, nested rules, stacked attributes, v1 and v2 tokens.

#![allow(clippy::unwrap_used)]

use actix_web::{get, http::StatusCode, post, test, web, App, HttpResponse, Responder};
use clerk_actix::{clerk_protected, testing::MockClerk, ClerkMiddleware, ClerkSession};
use clerk_actix_tests::bearer;
use serde::Deserialize;

#[get("/any-user")]
#[clerk_protected]
async fn any_user() -> &'static str {
    "hello"
}

// The guard attribute above the route attribute.
#[clerk_protected(role = "org:admin")]
#[get("/admin")]
async fn admin(session: ClerkSession) -> impl Responder {
    HttpResponse::Ok().body(session.user_id().to_owned())
}

#[get("/invoices")]
#[clerk_protected(permission = "org:invoices:read")]
async fn invoices() -> HttpResponse {
    HttpResponse::Ok().body("invoices")
}

#[derive(Debug)]
struct Teapot;
impl std::fmt::Display for Teapot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("teapot")
    }
}
impl actix_web::ResponseError for Teapot {
    fn status_code(&self) -> StatusCode {
        StatusCode::IM_A_TEAPOT
    }
}

#[get("/result/{n}")]
#[clerk_protected(feature = "o:billing", plan = "pro")]
async fn result(n: web::Path<u32>) -> Result<String, Teapot> {
    if *n == 0 {
        return Err(Teapot);
    }
    Ok(format!("n={n}"))
}

#[derive(Deserialize)]
struct Invoice {
    amount: u32,
}

#[post("/pay")]
#[clerk_protected(any(
    role = "org:admin",
    all(permission = "org:billing:manage", plan = "pro")
))]
async fn pay(body: web::Json<Invoice>) -> String {
    format!("paid {}", body.amount)
}

// Stacked: both must hold.
#[clerk_protected(role = "org:admin")]
#[clerk_protected(feature = "dashboard")]
async fn stacked() -> &'static str {
    "stacked"
}

async fn app(
    clerk: clerk_actix::Clerk,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk))
            .service(any_user)
            .service(admin)
            .service(invoices)
            .service(result)
            .service(pay)
            .route("/stacked", web::get().to(stacked)),
    )
    .await
}

async fn call(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    req: test::TestRequest,
    token: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let req = match token {
        Some(t) => req.insert_header(bearer(t)),
        None => req,
    };
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    (status, challenge, body)
}

#[actix_web::test]
async fn statuses_across_return_types_orders_and_registrations() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap()).await;
    let member = mock
        .token()
        .subject("user_member")
        .org_v1("org_1", "org:member", "acme", &["org:invoices:read"])
        .build();
    let admin_v2 = mock
        .token()
        .subject("user_admin")
        .v2()
        .org_v2("org_1", "admin", "acme", "manage,read", "3")
        .features("o:billing,o:dashboard")
        .plans("o:pro")
        .build();

    let get = |p: &str| test::TestRequest::get().uri(p);
    // Anonymous: 401 with a bare challenge, everywhere.
    for p in ["/any-user", "/admin", "/invoices", "/result/1", "/stacked"] {
        let (s, c, _) = call(&app, get(p), None).await;
        assert_eq!(
            (s, c.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("Bearer")),
            "{p}"
        );
    }
    // Any signed-in user.
    assert_eq!(call(&app, get("/any-user"), Some(&member)).await.2, "hello");

    // Role (attribute above #[get]).
    let (s, c, body) = call(&app, get("/admin"), Some(&member)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(c.as_deref(), Some("Bearer error=\"insufficient_scope\""));
    assert!(body.contains("insufficient-scope"), "{body}");
    assert_eq!(
        call(&app, get("/admin"), Some(&admin_v2)).await,
        (StatusCode::OK, None, "user_admin".into())
    );

    // Permission: v1 list and v2 fpm-decoded.
    assert_eq!(
        call(&app, get("/invoices"), Some(&member)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, get("/invoices"), Some(&admin_v2)).await.0,
        StatusCode::FORBIDDEN,
        "v2 admin has billing perms, not invoices"
    );

    // Result return type with an early return; feature + plan (v1 tokens never have them).
    assert_eq!(
        call(&app, get("/result/1"), Some(&member)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(call(&app, get("/result/1"), Some(&admin_v2)).await.2, "n=1");
    assert_eq!(
        call(&app, get("/result/0"), Some(&admin_v2)).await.0,
        StatusCode::IM_A_TEAPOT
    );

    // .route(...) with stacked attributes: both must hold.
    assert_eq!(
        call(&app, get("/stacked"), Some(&admin_v2)).await.2,
        "stacked"
    );
    let admin_without_feature = mock
        .token()
        .org_v1("org_1", "org:admin", "acme", &[])
        .build();
    assert_eq!(
        call(&app, get("/stacked"), Some(&admin_without_feature))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[actix_web::test]
async fn nested_rules_and_the_body_is_not_read_when_refused() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap()).await;
    let pay_req = |body: &'static str| {
        test::TestRequest::post()
            .uri("/pay")
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
    };
    // Refused before the (invalid) JSON body is parsed: 401 / 403, not 400.
    assert_eq!(
        call(&app, pay_req("{not json"), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let nobody = mock.token().build();
    assert_eq!(
        call(&app, pay_req("{not json"), Some(&nobody)).await.0,
        StatusCode::FORBIDDEN
    );
    // any(role = org:admin, ...)
    let admin_token = mock
        .token()
        .org_v1("org_1", "org:admin", "acme", &[])
        .build();
    assert_eq!(
        call(&app, pay_req(r#"{"amount": 5}"#), Some(&admin_token))
            .await
            .2,
        "paid 5"
    );
    assert_eq!(
        call(&app, pay_req("{not json"), Some(&admin_token)).await.0,
        StatusCode::BAD_REQUEST
    );
    // ... or all(permission = org:billing:manage, plan = pro)
    let billing = mock
        .token()
        .v2()
        .org_v2("org_1", "member", "acme", "manage", "1")
        .features("o:billing")
        .plans("o:pro")
        .build();
    assert_eq!(
        call(&app, pay_req(r#"{"amount": 7}"#), Some(&billing))
            .await
            .2,
        "paid 7"
    );
    let billing_no_plan = mock
        .token()
        .v2()
        .org_v2("org_1", "member", "acme", "manage", "1")
        .features("o:billing")
        .build();
    assert_eq!(
        call(&app, pay_req(r#"{"amount": 7}"#), Some(&billing_no_plan))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[actix_web::test]
async fn refusals_go_through_the_global_error_hook() {
    let mock = MockClerk::start();
    let clerk = mock
        .clerk_builder()
        .error_response(|err, _| {
            HttpResponse::build(err.status()).body(format!("hooked {}", err.reason()))
        })
        .build()
        .unwrap();
    let app = app(clerk).await;
    let member = mock
        .token()
        .org_v1("org_1", "org:member", "acme", &[])
        .build();
    let get = test::TestRequest::get().uri("/admin");
    assert_eq!(
        call(&app, get, Some(&member)).await,
        (
            StatusCode::FORBIDDEN,
            None,
            "hooked insufficient-scope".into()
        )
    );
    let get = test::TestRequest::get().uri("/admin");
    assert_eq!(
        call(&app, get, None).await.2,
        "hooked session-token-missing"
    );
}

// Clerk's has() reads "admin" as "org:admin"; so does the guard.
#[clerk_protected(role = "admin", permission = "invoices:read")]
async fn bare_role() -> &'static str {
    "bare"
}

#[clerk_protected(reverification = "strict")]
async fn fresh_second_factor() -> &'static str {
    "fresh"
}

#[actix_web::test]
async fn roles_without_org_prefix_and_reverification_guards() {
    let mock = MockClerk::start();
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(mock.clerk_builder().build().unwrap()))
            .route("/bare", web::get().to(bare_role))
            .route("/fresh", web::get().to(fresh_second_factor)),
    )
    .await;
    let org_admin = mock
        .token()
        .org_v1("org_1", "org:admin", "acme", &["org:invoices:read"])
        .build();
    let member = mock
        .token()
        .org_v1("org_1", "org:member", "acme", &["org:invoices:read"])
        .build();
    let get = |p: &str| test::TestRequest::get().uri(p);
    assert_eq!(
        call(&app, get("/bare"), Some(&org_admin)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, get("/bare"), Some(&member)).await.0,
        StatusCode::FORBIDDEN
    );
    // `strict`: a second factor within 10 minutes.
    let fresh = mock.token().fva(3, 2).build();
    let stale = mock.token().fva(3, 30).build();
    let never = mock.token().build();
    assert_eq!(
        call(&app, get("/fresh"), Some(&fresh)).await.0,
        StatusCode::OK
    );
    for token in [&stale, &never] {
        let (status, challenge, _) = call(&app, get("/fresh"), Some(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"insufficient_scope\"")
        );
    }
}

/// A pending session (v2 `sts: pending`, e.g. an organization still to choose) is signed out
/// for the guards too: 401 `session-pending`, never the handler, even with the right role;
/// with `treat_pending_as_signed_out(false)` the guard judges it like any session.
#[actix_web::test]
async fn a_pending_session_is_refused_by_the_guards() {
    let mock = MockClerk::start();
    let pending_admin = mock
        .token()
        .v2()
        .org_v2("org_1", "admin", "acme", "manage,read", "3")
        .session_status("pending")
        .build();
    let app1 = app(mock.clerk_builder().build().unwrap()).await;
    let get = |p: &str| test::TestRequest::get().uri(p);
    for p in ["/any-user", "/admin"] {
        let (status, _, body) = call(&app1, get(p), Some(&pending_admin)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
        assert!(body.contains("session-pending"), "{p}: {body}");
    }
    let app2 = app(mock
        .clerk_builder()
        .treat_pending_as_signed_out(false)
        .build()
        .unwrap())
    .await;
    assert_eq!(
        call(&app2, get("/any-user"), Some(&pending_admin)).await.2,
        "hello"
    );
    assert_eq!(
        call(&app2, get("/admin"), Some(&pending_admin)).await.0,
        StatusCode::OK
    );
}
