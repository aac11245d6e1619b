//! Replicas on one PostgreSQL database (issue 10), measured: `cargo run --release --bin
//! replicabench`.
//!
//! Three replicas (three `Clerk` handles, each with its own pools, `LISTEN` connection and
//! one-worker HTTP server on 127.0.0.1) share one database and one MockClerk whose user endpoint
//! answers after `REPLICABENCH_API_DELAY_MS` (default 50 ms, a realistic Backend API latency).
//!
//! 1. **Login storm**: `REPLICABENCH_USERS` (default 1 000) new users each sign in on all three
//!    replicas — 3 requests per user, shuffled, 64 in flight — and the Backend API calls are
//!    counted (the ideal is one per user).
//! 2. **Invalidation latency**: `REPLICABENCH_CHANGES` (default 300) `user.updated` webhooks sent
//!    to replica A, one at a time; for each, the time from sending it until replicas B and C have
//!    applied the change (their `UserChangeReceived` event), as p50 / p99 / max. B reaches the
//!    database directly (its feed is woken by `NOTIFY`: push); C through a proxy that drops every
//!    notification, as a transaction-mode pooler does to `LISTEN` (its feed finds out and polls
//!    the change log every second).
//!
//! `REPLICABENCH_POLLING=0` puts C on a direct connection too (push to both, as runs before
//! 2026-12-07 measured); `REPLICABENCH_PGBOUNCER=1` puts C behind a real PgBouncer in
//! transaction mode (`pgbouncer=true`; Debian's package) instead of the proxy. It checks what it measures and exits non-zero, printing `FAIL: ...`, when a request failed,
//! the storm cost more than 1.5 Backend API calls per user, B's p99 exceeded 100 ms, C's
//! maximum exceeded 2 s, or the feeds' modes are not push for B and polling for C. The last line
//! is `PASS` otherwise. The output of a run is committed in `examples/results/`.
//!
//! Needs PostgreSQL at `REPLICABENCH_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! creates and drops the database `clerk_actix_replicabench`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use actix_web::{web, App, HttpResponse, HttpServer};
use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    testing::{mock_user_json, Endpoint, Fault, MockClerk},
    webhooks, Clerk, ClerkEvent, ClerkMiddleware, ClerkUser,
};
use diesel_async::SimpleAsyncConnection;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

async fn me_user(user: ClerkUser<ClerkUserRecord>) -> HttpResponse {
    HttpResponse::Ok().body(user.clerk_user_id.clone())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One replica: its handle, its base URL, and when it applied each user's latest change.
struct Replica {
    clerk: Clerk,
    base: String,
    seen: Seen,
}

async fn replica(mock: &MockClerk, url: &str) -> Result<Replica, Box<dyn std::error::Error>> {
    let store: DieselUserStore = DieselUserStore::connect(url).await?;
    store.run_migrations().await?;
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    let clerk = mock
        .clerk_builder()
        .user_store(store)
        .on_event(move |e| {
            if let ClerkEvent::UserChangeReceived { user_id, .. } = e {
                if let Ok(mut seen) = recorded.lock() {
                    seen.insert(user_id.clone(), Instant::now());
                }
            }
        })
        .build()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let served = clerk.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(ClerkMiddleware::new(served.clone()))
                    .route("/me", web::get().to(me_user))
                    .service(webhooks::resource::<ClerkUserRecord>("/webhooks/clerk"))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("listen")
            .run();
            let _ = tx.send(base);
            let _ = server.await;
        });
    });
    let base = rx.recv()?;
    // Ready: keys loaded and the change feed connected.
    for _ in 0..500 {
        let health = clerk.health().await;
        if health.ready && health.change_feeds.iter().all(|f| f.connected) {
            return Ok(Replica { clerk, base, seen });
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    Err("a replica's change feed did not connect".into())
}

/// Sends every (url, token) once with `concurrency` in flight; (ok, errors).
async fn storm(requests: Arc<Vec<(String, String)>>, concurrency: usize) -> (usize, usize) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(concurrency * 2))
        .finish();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, requests, next) = (client.clone(), requests.clone(), next.clone());
            actix_web::rt::spawn(async move {
                let (mut ok, mut err) = (0, 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((url, token)) = requests.get(i) else {
                        break;
                    };
                    match client.get(url).bearer_auth(token).send().await {
                        Ok(mut r) if r.status().is_success() => {
                            let _ = r.body().await;
                            ok += 1;
                        }
                        _ => err += 1,
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
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin_url = std::env::var("REPLICABENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let users: usize = env_num("REPLICABENCH_USERS", 1_000);
    let changes: usize = env_num("REPLICABENCH_CHANGES", 300);
    let api_delay: u64 = env_num("REPLICABENCH_API_DELAY_MS", 50);
    let mut admin = clerk_actix::store::establish_postgres(&admin_url).await?;
    admin
        .batch_execute("DROP DATABASE IF EXISTS clerk_actix_replicabench WITH (FORCE)")
        .await?;
    admin
        .batch_execute("CREATE DATABASE clerk_actix_replicabench")
        .await?;
    let (url, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    let db_url = match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/clerk_actix_replicabench{query}"),
        None => return Err("REPLICABENCH_PG must end with /<database>".into()),
    };

    let mock = MockClerk::start();
    mock.set_fault(
        Endpoint::User,
        Fault::Delay(Duration::from_millis(api_delay)),
    );
    // C reaches the database through a proxy that drops notifications (sslmode=disable: the
    // proxy reads the server's messages).
    let deaf = clerk_actix_tests::pgproxy::PgProxy::deaf().await;
    let deaf_url = {
        // The proxy forwards to 127.0.0.1:5432 as `postgres`, like the default REPLICABENCH_PG.
        let (_, db) = db_url.rsplit_once('/').ok_or("a database URL")?;
        let db = db.split('?').next().unwrap_or(db);
        deaf.url("127.0.0.1", db, "sslmode=disable")
    };
    // REPLICABENCH_POLLING=0: C direct too (push to both), for comparisons with earlier runs.
    let polling = env_num("REPLICABENCH_POLLING", 1) != 0;
    // REPLICABENCH_PGBOUNCER=1: C through a real PgBouncer in transaction mode instead of the
    // proxy (4 server connections; `pgbouncer=true`).
    let bouncer = (polling && env_num("REPLICABENCH_PGBOUNCER", 0) != 0)
        .then(|| clerk_actix_tests::pgbouncer::PgBouncer::start(4));
    let c_url = match &bouncer {
        Some(b) => b.url("clerk_actix_replicabench"),
        None if polling => deaf_url.clone(),
        None => db_url.clone(),
    };
    let replicas = vec![
        replica(&mock, &db_url).await?,
        replica(&mock, &db_url).await?,
        replica(&mock, &c_url).await?,
    ];
    println!(
        "3 replicas on one PostgreSQL database ({}); Backend API latency {api_delay} ms",
        match (&bouncer, polling) {
            (Some(_), _) => "C through PgBouncer 1.18 in transaction mode, 4 server connections",
            (None, true) => "C through a proxy that drops notifications",
            (None, false) => "all direct",
        }
    );
    let mut failures: Vec<String> = Vec::new();

    // 1. Login storm.
    let tokens: Vec<(String, String)> = (0..users)
        .map(|i| {
            let id = format!("user_storm_{i}");
            (id.clone(), mock.token().subject(&id).build())
        })
        .collect();
    let mut requests: Vec<(String, String)> = tokens
        .iter()
        .flat_map(|(_, token)| {
            replicas
                .iter()
                .map(move |r| (format!("{}/me", r.base), token.clone()))
        })
        .collect();
    fastrand::shuffle(&mut requests);
    mock.reset_counters();
    let started = Instant::now();
    let (ok, errors) = storm(Arc::new(requests), 64).await;
    let elapsed = started.elapsed();
    let calls = mock.requests(Endpoint::User);
    println!(
        "login storm: {users} users x 3 replicas = {} requests in {:.2} s: {ok} ok, {errors} errors; \
         Backend API user calls: {calls} ({:.3} per user)",
        users * 3,
        elapsed.as_secs_f64(),
        calls as f64 / users as f64
    );

    if errors > 0 {
        failures.push(format!("{errors} login storm requests failed"));
    }
    if calls as f64 > 1.5 * users as f64 {
        failures.push(format!("{calls} Backend API calls for {users} users"));
    }

    // The feeds' modes: B hears notifications, C found out it does not (within its 2 s probe).
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let modes: Vec<&'static str> = {
        let mut modes = Vec::new();
        for r in &replicas {
            modes.push(r.clerk.health().await.change_feeds[0].mode);
        }
        modes
    };
    println!("feed modes: A {}, B {}, C {}", modes[0], modes[1], modes[2]);
    let expected_c = if polling { "polling" } else { "listening" };
    if modes[1] != "listening" || modes[2] != expected_c {
        failures.push(format!(
            "feed modes {modes:?}: expected B listening, C {expected_c}"
        ));
    }

    // 2. Invalidation latency: a change on A, applied on B and C.
    mock.clear_faults();
    let hook = format!("{}/webhooks/clerk", replicas[0].base);
    let mut latencies = [Vec::with_capacity(changes), Vec::with_capacity(changes)];
    for i in 0..changes {
        let (id, _) = &tokens[i % tokens.len()];
        let mut data = mock_user_json(id);
        data["updated_at"] = serde_json::json!(2_000_000_000_000_i64 + i as i64);
        data["first_name"] = serde_json::json!(format!("v{i}"));
        let delivery = mock.webhook("user.updated", data);
        for r in &replicas {
            if let Ok(mut seen) = r.seen.lock() {
                seen.remove(id);
            }
        }
        let sent = Instant::now();
        let (status, _) = delivery.send(&hook).await?;
        if status != 200 {
            return Err(format!("webhook answered {status}").into());
        }
        for (r, latencies) in replicas[1..].iter().zip(&mut latencies) {
            let deadline = sent + Duration::from_secs(5);
            loop {
                let at = r.seen.lock().ok().and_then(|s| s.get(id).copied());
                if let Some(at) = at {
                    latencies.push(at.saturating_duration_since(sent));
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{id}: change not applied within 5 s").into());
                }
                actix_web::rt::time::sleep(Duration::from_micros(200)).await;
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let c_how = if polling { "polling" } else { "push" };
    for ((name, how), latencies) in [("B", "push: NOTIFY wakes the feed"), ("C", c_how)]
        .iter()
        .zip(&mut latencies)
    {
        latencies.sort();
        let (p50, p99, max) = (
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
            percentile(latencies, 1.0),
        );
        println!(
            "invalidation to {name} ({how}; {changes} changes, from sending the webhook to A \
             until {name} applied it): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(p50),
            ms(p99),
            ms(max),
        );
        if *name == "B" && p99 > Duration::from_millis(100) {
            failures.push(format!("B's p99 {:.2} ms > 100 ms", ms(p99)));
        }
        if *name == "C" && polling && max > Duration::from_secs(2) {
            failures.push(format!("C's max {:.2} ms > 2 s", ms(max)));
        }
    }
    for (name, r) in ["A", "B", "C"].iter().zip(&replicas) {
        let health = r.clerk.health().await;
        println!(
            "replica {name}: changes applied {}, disconnects {}",
            health.change_feeds[0].changes_applied, health.change_feeds[0].disconnects
        );
    }
    drop(replicas);
    admin
        .batch_execute("DROP DATABASE IF EXISTS clerk_actix_replicabench WITH (FORCE)")
        .await?;
    if failures.is_empty() {
        println!("PASS");
        Ok(())
    } else {
        for failure in &failures {
            println!("FAIL: {failure}");
        }
        Err(format!("{} check(s) failed", failures.len()).into())
    }
}
