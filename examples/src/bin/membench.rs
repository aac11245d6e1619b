//! Memory benchmark: `cargo run --release --bin membench`.
//!
//! Passes `MEMBENCH_TOKENS` (default 100,000) distinct valid session tokens through
//! `Clerk::authenticate_token` and `MEMBENCH_USERS` (default 100,000) distinct users through the
//! user cache, with the default cache bounds (10,000 tokens, 10,000 users; override with
//! `MEMBENCH_TOKEN_CAP` / `MEMBENCH_USER_CAP`), and prints the process RSS along the way and
//! the per-entry cost it implies. No network: the key is a PEM, users come from an in-memory
//! store. Tokens are signed in batches of 1,000 on two threads and dropped after use, so what
//! stays resident is what the caches keep.

use std::time::Instant;

use clerk_actix::{
    store::{ClerkUserRecord, Metadata},
    sync::StoreError,
    testing::{unix_now, TokenBuilder, TEST_KEYS},
    Clerk, ClerkUserData, DeletedUserPolicy, TokenCarrier, UserStore,
};
use futures_util::future::BoxFuture;

/// Resident set size of this process, KiB.
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

/// Serves a synthetic row for any user: the user cache is what is measured, not a database.
struct InMemory;

fn record(id: &str) -> ClerkUserRecord {
    ClerkUserRecord {
        id: 1,
        clerk_user_id: id.to_owned(),
        email: Some(format!("{id}@example.com")),
        username: Some(id.to_owned()),
        first_name: Some("Test".into()),
        last_name: Some("User".into()),
        image_url: Some(format!("https://img.clerk.com/{id}.png")),
        phone: None,
        external_id: None,
        public_metadata: Metadata(serde_json::json!({})),
        last_active_at: Some(unix_now() * 1000),
        last_sign_in_at: Some(unix_now() * 1000),
        banned: false,
        locked: false,
        is_active: true,
        created_at: unix_now() * 1000,
        updated_at: unix_now() * 1000,
        synced_at: unix_now() * 1000,
    }
}

impl UserStore for InMemory {
    type User = ClerkUserRecord;
    fn upsert<'a>(
        &'a self,
        u: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Option<ClerkUserRecord>, StoreError>> {
        Box::pin(async move { Ok(Some(record(&u.id))) })
    }
    fn find<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClerkUserRecord>, StoreError>> {
        Box::pin(async move { Ok(Some(record(id))) })
    }
    fn mark_deleted<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: DeletedUserPolicy,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async { Ok(false) })
    }
    fn deleted_at<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 1,000 distinct tokens, signed on two threads.
fn batch(start: u64) -> Vec<String> {
    let exp = unix_now() + 3600;
    let half = |from: u64, to: u64| {
        std::thread::spawn(move || {
            (from..to)
                .map(|i| {
                    TokenBuilder::new()
                        .subject(&format!("user_t{i}"))
                        .session_id(&format!("sess_{i}"))
                        .expires_at(exp)
                        .build()
                })
                .collect::<Vec<_>>()
        })
    };
    let a = half(start, start + 500);
    let b = half(start + 500, start + 1000);
    let mut v = a.join().unwrap_or_default();
    v.extend(b.join().unwrap_or_default());
    v
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n_tokens = env_num("MEMBENCH_TOKENS", 100_000) / 1000 * 1000;
    let n_users = env_num("MEMBENCH_USERS", 100_000);
    let token_cap = env_num("MEMBENCH_TOKEN_CAP", 10_000);
    let user_cap = env_num("MEMBENCH_USER_CAP", 10_000);
    let clerk = Clerk::builder()
        .jwt_key(TEST_KEYS[0].public_pem)
        .token_cache_capacity(token_cap)
        .user_cache_capacity(user_cap)
        .user_store(InMemory)
        .build()?;

    // Warm up the allocator and code paths with one batch that is not counted.
    for t in batch(10_000_000) {
        clerk.authenticate_token(&t, TokenCarrier::Header).await?;
    }
    let base = rss_kib();
    println!("membench: token cache bound {token_cap}, user cache bound {user_cap}");
    println!("RSS at start (after warm-up): {base} KiB");

    let started = Instant::now();
    let mut at_bound = None;
    let mut done = 0;
    while done < n_tokens {
        for t in batch(done) {
            clerk.authenticate_token(&t, TokenCarrier::Header).await?;
        }
        done += 1000;
        if done == token_cap.min(n_tokens) {
            at_bound = Some(rss_kib());
        }
        if done % 25_000 == 0 || done == n_tokens {
            println!(
                "  {done:>7} tokens: RSS {} KiB, cached tokens {}",
                rss_kib(),
                clerk.cached_tokens()
            );
        }
    }
    let after_tokens = rss_kib();
    println!(
        "{n_tokens} tokens in {:.1} s (signing included): RSS {after_tokens} KiB, cached {}",
        started.elapsed().as_secs_f64(),
        clerk.cached_tokens()
    );
    if let Some(rss) = at_bound {
        let entries = token_cap.min(n_tokens);
        println!(
            "  per cached token: ~{} bytes (RSS growth while the first {entries} filled the cache)",
            (rss.saturating_sub(base) * 1024) / entries.max(1)
        );
    }

    let before_users = rss_kib();
    let mut user_bound = None;
    for i in 0..n_users {
        let _: ClerkUserRecord = clerk.user(&format!("user_u{i}")).await?;
        if i + 1 == user_cap.min(n_users) {
            user_bound = Some(rss_kib());
        }
        if (i + 1) % 25_000 == 0 {
            println!(
                "  {:>7} users: RSS {} KiB, cached users {}",
                i + 1,
                rss_kib(),
                clerk.cached_users::<ClerkUserRecord>().await
            );
        }
    }
    let after_users = rss_kib();
    println!(
        "{n_users} users: RSS {after_users} KiB, cached users {}",
        clerk.cached_users::<ClerkUserRecord>().await
    );
    if let Some(rss) = user_bound {
        let entries = user_cap.min(n_users);
        println!(
            "  per cached user: ~{} bytes (RSS growth while the first {entries} filled the cache)",
            (rss.saturating_sub(before_users) * 1024) / entries.max(1)
        );
    }
    println!(
        "growth after the bounds were reached: tokens {} KiB, users {} KiB",
        after_tokens as i64 - at_bound.unwrap_or(after_tokens) as i64,
        after_users as i64 - user_bound.unwrap_or(after_users) as i64
    );
    Ok(())
}
