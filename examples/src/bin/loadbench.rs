//! Load benchmark: `cargo run --release --bin loadbench`.
//!
//! Starts, on 127.0.0.1, the same handler three ways — no auth, `ClerkSession`,
//! `ClerkUser<ClerkUserRecord>` on PostgreSQL — each an actix server with one worker, and drives
//! each from a client thread (awc, `LOADBENCH_CONCURRENCY` connections, default 32) for
//! `LOADBENCH_SECS` seconds (default 5) with:
//!
//! - (a) one repeated token;
//! - (b) 1,000 users rotating their tokens (caches warmed first);
//! - (c) a fresh verification every request: the verified-token cache is disabled, so every
//!   request pays decoding + RSA + claims, as a never-seen token does (minting 100k distinct
//!   tokens up front would take minutes of RSA signing).
//!
//! Then a first-login storm: 1,000 new users, 10 concurrent requests each, counting Backend
//! API calls (MockClerk) and upserts (rows, store calls). Prints requests/s, p50/p99 and
//! ratios to no-auth. Loopback only, bounded, and every server it starts is stopped.
//! PostgreSQL: `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres, in which a
//! database `clerk_actix_loadbench` is recreated).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpResponse, HttpServer};
use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    sync::StoreError,
    testing::{unix_now, Endpoint, MockClerk},
    Clerk, ClerkMiddleware, ClerkSession, ClerkUser, ClerkUserData, DeletedUserPolicy, UserStore,
};
use diesel_async::SimpleAsyncConnection;
use futures_util::future::BoxFuture;

async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn with_session(s: ClerkSession) -> HttpResponse {
    HttpResponse::Ok().body(if s.user_id().is_empty() { "?" } else { "ok" })
}

async fn with_user(u: ClerkUser<ClerkUserRecord>) -> HttpResponse {
    HttpResponse::Ok().body(if u.clerk_user_id.is_empty() {
        "?"
    } else {
        "ok"
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    NoAuth,
    Session,
    User,
}

/// Pins the calling thread to one core (`LOADBENCH_PIN=0` disables): the server worker on core
/// 0, the load generator on core 1, so the two do not trade places between runs.
fn pin(core: usize) {
    if std::env::var("LOADBENCH_PIN").as_deref() == Ok("0") {
        return;
    }
    if let Some(id) = core_affinity::get_core_ids().and_then(|ids| ids.get(core).copied()) {
        core_affinity::set_for_current(id);
    }
}

/// Starts one server (one worker) on its own thread; returns its URL and handle.
fn serve(variant: Variant, clerk: Option<Clerk>) -> (String, ServerHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}/", listener.local_addr().expect("addr"));
            let server = match (variant, clerk) {
                (Variant::Session, Some(c)) => HttpServer::new(move || {
                    pin(0);
                    App::new()
                        .wrap(ClerkMiddleware::new(c.clone()))
                        .route("/", web::get().to(with_session))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run(),
                (Variant::User, Some(c)) => HttpServer::new(move || {
                    pin(0);
                    App::new()
                        .wrap(ClerkMiddleware::new(c.clone()))
                        .route("/", web::get().to(with_user))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run(),
                _ => HttpServer::new(|| {
                    pin(0);
                    App::new().route("/", web::get().to(plain))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run(),
            };
            let _ = tx.send((url, server.handle()));
            let _ = server.await;
        });
    });
    rx.recv().expect("server started")
}

struct Run {
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    errors: usize,
}

/// Drives `url` with `concurrency` connections for `secs`, cycling through `tokens`.
async fn drive(url: &str, tokens: Arc<Vec<String>>, concurrency: usize, secs: f64) -> Run {
    let url = url.to_owned();
    std::thread::spawn(move || {
        pin(1);
        actix_web::rt::System::new().block_on(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .connector(awc::Connector::new().limit(concurrency * 2))
                .finish();
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            let next = Arc::new(AtomicUsize::new(0));
            let errors = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, url, tokens, next, errors) = (
                        client.clone(),
                        url.clone(),
                        tokens.clone(),
                        next.clone(),
                        errors.clone(),
                    );
                    actix_web::rt::spawn(async move {
                        let mut lat = Vec::with_capacity(1 << 16);
                        while Instant::now() < deadline {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let token = &tokens[i % tokens.len()];
                            let t0 = Instant::now();
                            match client.get(&url).bearer_auth(token).send().await {
                                Ok(mut res) if res.status().is_success() => {
                                    let _ = res.body().await;
                                }
                                _ => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            lat.push(t0.elapsed().as_micros() as u64);
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap_or_default());
            }
            let elapsed = start.elapsed().as_secs_f64();
            all.sort_unstable();
            let pct = |p: f64| {
                all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0)
            };
            Run {
                rps: all.len() as f64 / elapsed,
                p50_us: pct(0.50),
                p99_us: pct(0.99),
                errors: errors.load(Ordering::Relaxed),
            }
        })
    })
    .join_without_blocking()
    .await
}

/// Counts upserts, for the first-login storm.
struct Counting<S> {
    inner: S,
    upserts: AtomicUsize,
}

impl<S: UserStore> UserStore for Counting<S> {
    type User = S::User;
    fn upsert<'a>(
        &'a self,
        u: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Option<S::User>, StoreError>> {
        self.upserts.fetch_add(1, Ordering::Relaxed);
        self.inner.upsert(u)
    }
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<S::User>, StoreError>> {
        self.inner.find(id)
    }
    fn mark_deleted<'a>(
        &'a self,
        id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.mark_deleted(id, deleted_at, policy)
    }
    fn deleted_at<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        self.inner.deleted_at(id)
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = env_num("LOADBENCH_SECS", 5.0);
    let concurrency: usize = env_num("LOADBENCH_CONCURRENCY", 32);
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (url, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    let db_url = match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/clerk_actix_loadbench{query}"),
        None => return Err("DATABASE_URL must be postgres://.../<db>".into()),
    };
    {
        let mut admin = clerk_actix::store::establish_postgres(&admin_url).await?;
        admin
            .batch_execute("DROP DATABASE IF EXISTS clerk_actix_loadbench WITH (FORCE)")
            .await?;
        admin
            .batch_execute("CREATE DATABASE clerk_actix_loadbench")
            .await?;
    }
    let store: DieselUserStore = DieselUserStore::connect(&db_url).await?;
    store.run_migrations().await?;

    let mock = MockClerk::try_start()?;
    let exp = unix_now() + 3600;
    let one = Arc::new(vec![mock
        .token()
        .subject("user_load")
        .expires_at(exp)
        .build()]);
    let thousand = Arc::new(
        (0..1000)
            .map(|i| {
                mock.token()
                    .subject(&format!("user_rot{i}"))
                    .expires_at(exp)
                    .build()
            })
            .collect::<Vec<_>>(),
    );
    let cached = mock.clerk_builder().user_store(store).build()?;
    let store2: DieselUserStore = DieselUserStore::connect(&db_url).await?;
    let uncached = mock
        .clerk_builder()
        .token_cache_capacity(0)
        .user_store(store2)
        .build()?;

    let rounds: usize = env_num("LOADBENCH_ROUNDS", 3);
    println!(
        "loadbench: {secs} s per run, {concurrency} connections, 1 server worker, loopback, \
         {rounds} interleaved rounds (medians shown)\n"
    );
    // Every configuration runs once per round, in turn, so drift hits all of them alike.
    /// name, server variant, Clerk configuration, tokens to cycle through
    type Row = (String, Variant, Option<Clerk>, Arc<Vec<String>>);
    let rows: Vec<Row> = vec![
        ("no auth".into(), Variant::NoAuth, None, one.clone()),
        (
            "ClerkSession (a) repeated token".into(),
            Variant::Session,
            Some(cached.clone()),
            one.clone(),
        ),
        (
            "ClerkSession (b) 1000 users".into(),
            Variant::Session,
            Some(cached.clone()),
            thousand.clone(),
        ),
        (
            "ClerkSession (c) verify each request".into(),
            Variant::Session,
            Some(uncached.clone()),
            one.clone(),
        ),
        (
            "ClerkUser<U> PG (a) repeated token".into(),
            Variant::User,
            Some(cached.clone()),
            one.clone(),
        ),
        (
            "ClerkUser<U> PG (b) 1000 users".into(),
            Variant::User,
            Some(cached.clone()),
            thousand.clone(),
        ),
        (
            "ClerkUser<U> PG (c) verify each req".into(),
            Variant::User,
            Some(uncached.clone()),
            one.clone(),
        ),
    ];
    let servers: Vec<(String, ServerHandle)> = rows
        .iter()
        .map(|(_, variant, clerk, _)| serve(*variant, clerk.clone()))
        .collect();
    // Warm-up: every token and user once, on every server (each request sent, not a time
    // budget: a slow build must not leave first sights in the measured runs), then a second.
    for ((url, _), (name, ..)) in servers.iter().zip(&rows) {
        let (_, errors) = drive_all(url, thousand.clone(), concurrency).await;
        if errors > 0 {
            return Err(format!("warm-up: {errors} of 1000 first requests failed ({name})").into());
        }
        let _ = drive(url, thousand.clone(), concurrency, 1.0).await;
        let _ = drive(url, one.clone(), concurrency, 0.5).await;
    }
    let mut results: Vec<Vec<Run>> = rows.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, _, _, tokens)) in rows.iter().enumerate() {
            results[i].push(drive(&servers[i].0, tokens.clone(), concurrency, secs).await);
        }
    }
    for (_, handle) in &servers {
        handle.stop(true).await;
    }
    let median = |runs: &[Run], f: &dyn Fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base_rps = median(&results[0], &|r| r.rps);
    let base_p99 = median(&results[0], &|r| r.p99_us as f64);
    println!(
        "{:<38} {:>9} {:>8} {:>8} {:>10} {:>9} {:>6}",
        "run", "req/s", "p50 µs", "p99 µs", "rps ratio", "p99 ratio", "errors"
    );
    for (i, (name, ..)) in rows.iter().enumerate() {
        let runs = &results[i];
        let rps = median(runs, &|r| r.rps);
        let p99 = median(runs, &|r| r.p99_us as f64);
        println!(
            "{:<38} {:>9.0} {:>8.0} {:>8.0} {:>9.2}x {:>8.2}x {:>6}",
            name,
            rps,
            median(runs, &|r| r.p50_us as f64),
            p99,
            rps / base_rps,
            p99 / base_p99,
            runs.iter().map(|r| r.errors).sum::<usize>()
        );
    }

    // First-login storm: 1,000 new users × 10 concurrent requests each.
    let storm_store: DieselUserStore = DieselUserStore::connect(&db_url).await?;
    let counting = Arc::new(Counting {
        inner: storm_store,
        upserts: AtomicUsize::new(0),
    });
    let storm_clerk = mock.clerk_builder().user_store(counting.clone()).build()?;
    let (url, handle) = serve(Variant::User, Some(storm_clerk));
    let storm_tokens: Vec<String> = (0..1000)
        .map(|i| {
            mock.token()
                .subject(&format!("user_storm{i}"))
                .expires_at(exp)
                .build()
        })
        .collect();
    let requests: Arc<Vec<String>> = Arc::new(
        storm_tokens
            .iter()
            .flat_map(|t| std::iter::repeat_n(t.clone(), 10))
            .collect(),
    );
    mock.reset_counters();
    let t0 = Instant::now();
    let storm = drive_all(&url, requests, 100).await;
    let took = t0.elapsed();
    handle.stop(true).await;
    let rows = {
        let mut c = clerk_actix::store::establish_postgres(&db_url).await?;
        use clerk_actix::store::clerk_users::dsl::{clerk_user_id, clerk_users};
        use diesel::prelude::*;
        diesel_async::RunQueryDsl::get_result::<i64>(
            clerk_users
                .filter(clerk_user_id.like("user_storm%"))
                .count(),
            &mut c,
        )
        .await?
    };
    println!(
        "\nfirst-login storm: 1000 users x 10 concurrent requests (100 in flight): {} ok, {} errors in {:.2} s\n  Backend API user calls: {}   upserts: {}   rows: {}",
        storm.0,
        storm.1,
        took.as_secs_f64(),
        mock.requests(Endpoint::User),
        counting.upserts.load(Ordering::Relaxed),
        rows
    );
    // The storm's claims, checked: a miscount fails the run instead of printing quietly.
    let calls = mock.requests(Endpoint::User);
    let upserts = counting.upserts.load(Ordering::Relaxed);
    let storm_ok = storm == (10_000, 0) && calls == 1000 && upserts == 1000 && rows == 1000;
    {
        let mut admin = clerk_actix::store::establish_postgres(&admin_url).await?;
        let _ = admin
            .batch_execute("DROP DATABASE IF EXISTS clerk_actix_loadbench WITH (FORCE)")
            .await;
    }
    let run_errors: usize = results.iter().flatten().map(|r| r.errors).sum();
    if run_errors > 0 {
        return Err(format!("{run_errors} requests of the measured runs failed").into());
    }
    if !storm_ok {
        return Err(format!(
            "first-login storm: expected 10000 ok, 0 errors, 1000 Backend API calls, 1000 upserts, \
             1000 rows; got {} ok, {} errors, {calls} calls, {upserts} upserts, {rows} rows",
            storm.0, storm.1
        )
        .into());
    }
    Ok(())
}

/// Sends every request once with `concurrency` in flight; returns (ok, errors).
async fn drive_all(url: &str, requests: Arc<Vec<String>>, concurrency: usize) -> (usize, usize) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        pin(1);
        actix_web::rt::System::new().block_on(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .connector(awc::Connector::new().limit(concurrency * 2))
                .finish();
            let next = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, url, requests, next) =
                        (client.clone(), url.clone(), requests.clone(), next.clone());
                    actix_web::rt::spawn(async move {
                        let (mut ok, mut err) = (0, 0);
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(token) = requests.get(i) else { break };
                            match client.get(&url).bearer_auth(token).send().await {
                                Ok(mut r) if r.status().is_success() => {
                                    let _ = r.body().await;
                                    ok += 1;
                                }
                                Ok(mut r) => {
                                    let body = r.body().await.unwrap_or_default();
                                    eprintln!(
                                        "{url}: {} {}",
                                        r.status(),
                                        String::from_utf8_lossy(&body)
                                    );
                                    err += 1;
                                }
                                Err(e) => {
                                    eprintln!("{url}: request {i}: {e}");
                                    err += 1;
                                }
                            }
                        }
                        (ok, err)
                    })
                })
                .collect();
            let mut total = (0, 0);
            for t in tasks {
                let (o, e) = t.await.unwrap_or((0, 0));
                total.0 += o;
                total.1 += e;
            }
            total
        })
    })
    .join_without_blocking()
    .await
}

/// Joining a load thread without blocking this runtime: the pool's connections made on it (the
/// migrations' included) are driven by it, and a blocked runtime would stall whichever request
/// is handed such a connection.
trait JoinWithoutBlocking<T> {
    async fn join_without_blocking(self) -> T;
}

impl<T: Send + 'static> JoinWithoutBlocking<T> for std::thread::JoinHandle<T> {
    async fn join_without_blocking(self) -> T {
        actix_web::rt::task::spawn_blocking(move || self.join())
            .await
            .expect("the joining task")
            .expect("the load thread")
    }
}
