//! Memory soak: `cargo run --release --bin soak` (`SOAK_MINUTES`, default 30).
//!
//! One process: an actix server whose `GET /user` takes `ClerkUser<ClerkUserRecord>` on
//! PostgreSQL, a `MockClerk`, and a load generator cycling through 20,000 distinct session
//! tokens of 5,000 users — ten times the verified-token cache (2,000) and five times the user
//! cache (1,000) configured here, so both caches evict all the time. Every
//! `SOAK_SAMPLE_SECS` (default 60) it prints the process's resident memory (VmRSS), requests
//! served and the cache sizes. The run fails if RSS at the end exceeds the RSS after warm-up
//! (the first quarter) by more than 10 % + 8 MiB, or if any request failed. Figures in
//! RELIABILITY.md. PostgreSQL: `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres),
//! in which `clerk_actix_soak` is recreated.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{web, App, HttpResponse, HttpServer};
use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    testing::{unix_now, MockClerk},
    ClerkMiddleware, ClerkUser,
};
use diesel_async::SimpleAsyncConnection;

const USERS: usize = 5_000;
const SESSIONS_PER_USER: usize = 4;
const TOKEN_CACHE: u64 = 2_000;
const USER_CACHE: u64 = 1_000;
const CONNECTIONS: usize = 8;

async fn user(u: ClerkUser<ClerkUserRecord>) -> HttpResponse {
    HttpResponse::Ok().body(u.clerk_user_id.clone())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let minutes = env_num("SOAK_MINUTES", 30);
    let sample = Duration::from_secs(env_num("SOAK_SAMPLE_SECS", 60));
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db_url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/clerk_actix_soak"),
        None => return Err("DATABASE_URL must be postgres://.../<db>".into()),
    };
    {
        let mut admin = clerk_actix::store::establish_postgres(&admin_url).await?;
        admin
            .batch_execute("DROP DATABASE IF EXISTS clerk_actix_soak WITH (FORCE)")
            .await?;
        admin
            .batch_execute("CREATE DATABASE clerk_actix_soak")
            .await?;
    }
    let store: DieselUserStore = DieselUserStore::connect(&db_url).await?;
    store.run_migrations().await?;
    let mock = MockClerk::try_start()?;
    let clerk = mock
        .clerk_builder()
        .user_store(store)
        .token_cache_capacity(TOKEN_CACHE)
        .user_cache_capacity(USER_CACHE)
        .build()?;
    let exp = unix_now() + i64::try_from(minutes * 60 + 3600).unwrap_or(i64::MAX / 2);
    println!("minting {} tokens...", USERS * SESSIONS_PER_USER);
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..USERS * SESSIONS_PER_USER)
            .map(|i| {
                mock.token()
                    .subject(&format!("user_soak{}", i % USERS))
                    .session_id(&format!("sess_{i}"))
                    .expires_at(exp)
                    .build()
            })
            .collect(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/user", listener.local_addr()?);
    let served_clerk = clerk.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(ClerkMiddleware::new(served_clerk.clone()))
            .route("/user", web::get().to(user))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, tokens, ok, failed, stop) = (
            url.clone(),
            tokens.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let client = awc::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .finish();
                let tasks: Vec<_> = (0..CONNECTIONS)
                    .map(|c| {
                        let (client, url, tokens, ok, failed, stop) = (
                            client.clone(),
                            url.clone(),
                            tokens.clone(),
                            ok.clone(),
                            failed.clone(),
                            stop.clone(),
                        );
                        actix_web::rt::spawn(async move {
                            // A stride co-prime with the token count: every token in turn.
                            let mut i = c * 2_503;
                            while !stop.load(Ordering::Relaxed) {
                                i = (i + 7_919) % tokens.len();
                                match client.get(&url).bearer_auth(&tokens[i]).send().await {
                                    Ok(mut r) if r.status().is_success() => {
                                        let _ = r.body().await;
                                        ok.fetch_add(1, Ordering::Relaxed);
                                    }
                                    _ => {
                                        failed.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };

    let start = Instant::now();
    let total = Duration::from_secs(minutes * 60);
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    println!(
        "{:>7} {:>10} {:>12} {:>8} {:>13} {:>12}",
        "minute", "RSS MiB", "requests", "failed", "cached tokens", "cached users"
    );
    loop {
        actix_web::rt::time::sleep(sample).await;
        let now = start.elapsed();
        let rss = rss_kib();
        samples.push((now, rss));
        println!(
            "{:>7.1} {:>10.1} {:>12} {:>8} {:>13} {:>12}",
            now.as_secs_f64() / 60.0,
            rss as f64 / 1024.0,
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            clerk.cached_tokens(),
            clerk.cached_users::<ClerkUserRecord>().await
        );
        if now >= total {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = actix_web::rt::task::spawn_blocking(move || load.join()).await;
    handle.stop(true).await;

    let warm = samples
        .iter()
        .find(|(t, _)| *t >= total / 4)
        .map_or(0, |(_, r)| *r);
    let peak_after_warm = samples
        .iter()
        .filter(|(t, _)| *t >= total / 4)
        .map(|(_, r)| *r)
        .max()
        .unwrap_or(0);
    let last = samples.last().map_or(0, |(_, r)| *r);
    let bound = warm + warm / 10 + 8 * 1024;
    println!(
        "\nRSS after warm-up {:.1} MiB, peak after {:.1} MiB, at the end {:.1} MiB (bound {:.1} MiB); {} requests, {} failed",
        warm as f64 / 1024.0,
        peak_after_warm as f64 / 1024.0,
        last as f64 / 1024.0,
        bound as f64 / 1024.0,
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    {
        let mut admin = clerk_actix::store::establish_postgres(&admin_url).await?;
        let _ = admin
            .batch_execute("DROP DATABASE IF EXISTS clerk_actix_soak WITH (FORCE)")
            .await;
    }
    if failed.load(Ordering::Relaxed) > 0 {
        return Err("requests failed during the soak".into());
    }
    if peak_after_warm > bound {
        return Err("RSS grew after warm-up".into());
    }
    println!("flat: ok");
    Ok(())
}
