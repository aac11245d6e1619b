//! The auth hot path, measured: RSA verification of a never-seen token next to a bare
//! jsonwebtoken RS256 verify, a cached token (one, and 1,000 / 100,000 in turn), v2 claim
//! decoding, and the middleware with
//! `ClerkSession` / `ClerkUser<U>` end to end through `actix_web::test` next to no auth.
//!
//! `cargo bench -p clerk-actix --bench auth`; results in BENCHMARKS.md. With `--features
//! metrics`, a Prometheus recorder is installed first, so the figures include recording every
//! metric (the feature's cost when on).

use std::{future::Future, time::SystemTime};

use actix_web::{test, web, App, HttpResponse};
use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    testing::{MockClerk, TokenBuilder, TEST_KEYS},
    ClerkClaims, ClerkMiddleware, ClerkSession, ClerkUser, TokenCarrier, TokenVerifier,
    VerificationKeys,
};
use criterion::{async_executor::AsyncExecutor, criterion_group, criterion_main, Criterion};
use serde_json::Value;

/// Runs criterion's async loops on an actix (tokio current-thread) runtime.
struct Actix(actix_web::rt::Runtime);

impl AsyncExecutor for &Actix {
    fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.0.block_on(future)
    }
}

fn v2_token() -> String {
    TokenBuilder::new()
        .v2()
        .org_v2("org_1", "admin", "acme", "manage,read,write", "7,3,1")
        .features("o:dashboard,o:teams,o:billing,u:profile")
        .plans("o:pro")
        .fva(3, -1)
        .build()
}

fn verification(c: &mut Criterion) {
    let token = v2_token();
    let k = TEST_KEYS[0];
    let keys = VerificationKeys::from_jwks_json(&format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"{}","n":"{}","e":"{}"}}]}}"#,
        k.kid, k.n, k.e
    ))
    .expect("jwks");
    let verifier = TokenVerifier::default();
    let mut g = c.benchmark_group("verify");
    g.bench_function("clerk_actix_rs256_never_seen", |b| {
        b.iter(|| {
            verifier
                .verify_at(&token, &keys, SystemTime::now())
                .expect("valid")
        })
    });
    let bare_key =
        jsonwebtoken::DecodingKey::from_rsa_components(k.n, k.e).expect("rsa components");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    g.bench_function("jsonwebtoken_bare_rs256", |b| {
        b.iter(|| jsonwebtoken::decode::<Value>(&token, &bare_key, &validation).expect("valid"))
    });
    let payload: serde_json::Map<String, Value> = {
        use base64::Engine as _;
        let p = token.split('.').nth(1).expect("payload");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("b64");
        serde_json::from_slice(&bytes).expect("json")
    };
    g.bench_function("v2_claims_decode", |b| {
        b.iter(|| ClerkClaims::from_verified_payload(payload.clone()).expect("claims"))
    });
    g.finish();
}

fn cached_token(c: &mut Criterion) {
    let rt = Actix(actix_web::rt::Runtime::new().expect("runtime"));
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().expect("clerk");
    let token = mock.token().build();
    rt.0.block_on(clerk.authenticate_token(&token, TokenCarrier::Header))
        .expect("warm");
    c.bench_function("clerk/authenticate_cached_token", |b| {
        b.to_async(&rt).iter(|| async {
            clerk
                .authenticate_token(&token, TokenCarrier::Header)
                .await
                .expect("cached")
        })
    });
}

/// `clerk/authenticate_cached_token_rotating/N`: N cached tokens read in turn, so no read finds
/// its token in the CPU's caches or (past 8,192 tokens) in the read slots: the moka path.
/// The tokens are minted and verified inside each benchmark, so a filter that leaves it out
/// skips its setup (100,000 RS256 signatures take a couple of minutes).
fn rotating_cached_tokens(c: &mut Criterion) {
    let rt = Actix(actix_web::rt::Runtime::new().expect("runtime"));
    let mock = MockClerk::start();
    let mut g = c.benchmark_group("clerk/authenticate_cached_token_rotating");
    for n in [1_000usize, 100_000] {
        // Criterion calls the routine more than once (warm-up, samples): set up once.
        let setup = std::cell::OnceCell::new();
        g.bench_function(n.to_string(), |b| {
            let (clerk, tokens) = setup.get_or_init(|| {
                let clerk = mock
                    .clerk_builder()
                    .token_cache_capacity(n as u64)
                    .token_cache_max_bytes(n as u64 * 4096)
                    .build()
                    .expect("clerk");
                // Valid for the whole run: minting 100,000 takes longer than a default token lives.
                let tokens: Vec<String> = (0..n)
                    .map(|i| {
                        mock.token()
                            .subject(&format!("user_{i:06}"))
                            .expires_in(3_600)
                            .build()
                    })
                    .collect();
                for token in &tokens {
                    rt.0.block_on(clerk.authenticate_token(token, TokenCarrier::Header))
                        .expect("warm");
                }
                (clerk, tokens)
            });
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i = (i + 1) % n;
                let token = &tokens[i];
                async move {
                    clerk
                        .authenticate_token(token, TokenCarrier::Header)
                        .await
                        .expect("cached")
                }
            })
        });
    }
    g.finish();
}

async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn with_session(s: ClerkSession) -> HttpResponse {
    let _ = s.user_id();
    HttpResponse::Ok().body("ok")
}

async fn with_user(u: ClerkUser<ClerkUserRecord>) -> HttpResponse {
    let _ = &u.clerk_user_id;
    HttpResponse::Ok().body("ok")
}

fn middleware(c: &mut Criterion) {
    let rt = Actix(actix_web::rt::Runtime::new().expect("runtime"));
    let mock = MockClerk::start();
    let path = std::env::temp_dir().join(format!("clerk_bench_{}.sqlite", std::process::id()));
    let path = path.to_string_lossy().into_owned();
    let store: DieselUserStore = rt.0.block_on(async {
        let s = DieselUserStore::connect(&path).await.expect("sqlite");
        s.run_migrations().await.expect("migrations");
        s
    });
    let clerk = mock
        .clerk_builder()
        .user_store(store)
        .build()
        .expect("clerk");
    let token = mock.token().subject("user_bench").build();
    let auth = format!("Bearer {token}");

    let (no_auth, session_app, user_app) = rt.0.block_on(async {
        let no_auth = test::init_service(App::new().route("/", web::get().to(plain))).await;
        let session_app = test::init_service(
            App::new()
                .wrap(ClerkMiddleware::new(clerk.clone()))
                .route("/", web::get().to(with_session)),
        )
        .await;
        let user_app = test::init_service(
            App::new()
                .wrap(ClerkMiddleware::new(clerk.clone()))
                .route("/", web::get().to(with_user)),
        )
        .await;
        // Warm the token and user caches.
        let req = test::TestRequest::get().insert_header(("authorization", auth.as_str()));
        assert!(test::call_service(&user_app, req.to_request())
            .await
            .status()
            .is_success());
        (no_auth, session_app, user_app)
    });

    let mut g = c.benchmark_group("request");
    g.bench_function("no_auth", |b| {
        b.to_async(&rt).iter(|| async {
            let req = test::TestRequest::get()
                .insert_header(("authorization", auth.as_str()))
                .to_request();
            test::call_service(&no_auth, req).await
        })
    });
    g.bench_function("clerk_session_cached_token", |b| {
        b.to_async(&rt).iter(|| async {
            let req = test::TestRequest::get()
                .insert_header(("authorization", auth.as_str()))
                .to_request();
            test::call_service(&session_app, req).await
        })
    });
    g.bench_function("clerk_user_cached_user", |b| {
        b.to_async(&rt).iter(|| async {
            let req = test::TestRequest::get()
                .insert_header(("authorization", auth.as_str()))
                .to_request();
            test::call_service(&user_app, req).await
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

/// With the `metrics` feature, record into a real exporter, as an application would.
fn recorder(_: &mut Criterion) {
    #[cfg(feature = "metrics")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map(drop)
                .expect("install the Prometheus recorder");
        });
    }
}

criterion_group!(
    benches,
    recorder,
    verification,
    cached_token,
    rotating_cached_tokens,
    middleware
);
criterion_main!(benches);
