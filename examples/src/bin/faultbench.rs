//! Faults under load: `cargo run --release --bin faultbench -- <scenario>` (several separated
//! by commas, or `all`).
//!
//! One actix server on 127.0.0.1 (`GET /user`: `ClerkUser<ClerkUserRecord>` on PostgreSQL,
//! `GET /session`: `ClerkSession`) talks to a `MockClerk` and to PostgreSQL through a TCP
//! proxy it can cut. A load generator sends, for `FAULTBENCH_SECS` (default 20) seconds, two
//! streams: 8 connections cycling through 200 users signed in before the run ("known": cached)
//! and 50 requests per second from users never seen before ("new"). From second 3 to second 13
//! a fault is injected:
//!
//! - `clerk-down`: JWKS and Backend API answer 503;
//! - `slow-api`: the Backend API answers after 2 s (the handle's `api_timeout` is 1 s);
//! - `rate-limited`: the Backend API answers 429 with `Retry-After: 5`;
//! - `pg-restart`: every PostgreSQL connection is cut and new ones refused (the proxy), then
//!   it comes back;
//! - `key-rotation`: at second 3 Clerk rotates its signing key (old and new keys published);
//!   the known users then also present tokens signed with the new key.
//!
//! Every answer is counted by phase (before / during / after the fault), stream and status,
//! with calls to Clerk by endpoint and the recovery time (end of the fault to the first 200 of
//! a new user). Each scenario checks its claims and the run exits non-zero if one fails; the
//! figures are recorded in RELIABILITY.md. PostgreSQL: `DATABASE_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres), in which `clerk_actix_faultbench` is recreated.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpResponse, HttpServer};
use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    testing::{Endpoint, Fault, MockClerk},
    ClerkMiddleware, ClerkSession, ClerkUser,
};
use clerk_actix_tests::pgproxy::PgProxy;
use diesel_async::SimpleAsyncConnection;

const FAULT_START: Duration = Duration::from_secs(3);
const FAULT_LEN: Duration = Duration::from_secs(10);
const KNOWN_USERS: usize = 200;
const KNOWN_CONNECTIONS: usize = 8;
const NEW_PER_SEC: u64 = 50;

async fn user(u: ClerkUser<ClerkUserRecord>) -> HttpResponse {
    HttpResponse::Ok().body(u.clerk_user_id.clone())
}

async fn session(s: ClerkSession) -> HttpResponse {
    HttpResponse::Ok().body(s.user_id().to_owned())
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Stream {
    Known,
    New,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    Before,
    During,
    After,
}

/// One answer.
#[derive(Clone, Debug)]
struct Rec {
    sent: Duration,
    stream: Stream,
    status: u16,
    retry_after: Option<u64>,
    latency: Duration,
    user: usize,
}

impl Rec {
    fn phase(&self) -> Phase {
        if self.sent < FAULT_START {
            Phase::Before
        } else if self.sent < FAULT_START + FAULT_LEN {
            Phase::During
        } else {
            Phase::After
        }
    }
}

/// What the load generator sends: tokens of the known users (grows on a key rotation) and of
/// new users (each sent once), and which path.
struct Plan {
    known: RwLock<Vec<String>>,
    new: Vec<String>,
    path: &'static str,
}

fn serve(clerk: clerk_actix::Clerk) -> (String, ServerHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(ClerkMiddleware::new(clerk.clone()))
                    .route("/user", web::get().to(user))
                    .route("/session", web::get().to(session))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("listen")
            .run();
            let _ = tx.send((url, server.handle()));
            let _ = server.await;
        });
    });
    rx.recv().expect("server started")
}

/// Runs the load for `secs` from `start`; returns every answer.
fn drive(url: String, plan: Arc<Plan>, start: Instant, secs: Duration) -> Vec<Rec> {
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .connector(awc::Connector::new().limit(512))
                .finish();
            let records = Arc::new(std::sync::Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let send = {
                let (client, url, records) = (client.clone(), url.clone(), records.clone());
                move |stream: Stream, user: usize, token: String, path: &'static str| {
                    let (client, url, records) = (client.clone(), url.clone(), records.clone());
                    async move {
                        let sent = start.elapsed();
                        let t0 = Instant::now();
                        let res = client
                            .get(format!("{url}{path}"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                        let (status, retry_after) = match res {
                            Ok(mut r) => {
                                let _ = r.body().await;
                                let retry = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse().ok());
                                (r.status().as_u16(), retry)
                            }
                            Err(_) => (0, None),
                        };
                        let rec = Rec {
                            sent,
                            stream,
                            status,
                            retry_after,
                            latency: t0.elapsed(),
                            user,
                        };
                        records
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(rec);
                    }
                }
            };
            let mut tasks = Vec::new();
            for c in 0..KNOWN_CONNECTIONS {
                let (send, plan, stop) = (send.clone(), plan.clone(), stop.clone());
                tasks.push(actix_web::rt::spawn(async move {
                    let mut i = c * 31;
                    while !stop.load(Ordering::Relaxed) {
                        let token = {
                            let known = plan.known.read().unwrap_or_else(|e| e.into_inner());
                            i = (i + 7) % known.len();
                            known[i].clone()
                        };
                        send(Stream::Known, i % KNOWN_USERS, token, plan.path).await;
                    }
                }));
            }
            {
                let (send, plan, stop) = (send.clone(), plan.clone(), stop.clone());
                tasks.push(actix_web::rt::spawn(async move {
                    let mut tick =
                        actix_web::rt::time::interval(Duration::from_millis(1000 / NEW_PER_SEC));
                    let mut inflight = Vec::new();
                    for (n, token) in plan.new.iter().enumerate() {
                        tick.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        inflight.push(actix_web::rt::spawn(send(
                            Stream::New,
                            n,
                            token.clone(),
                            "/user",
                        )));
                    }
                    for t in inflight {
                        let _ = t.await;
                    }
                }));
            }
            actix_web::rt::time::sleep(secs.saturating_sub(start.elapsed())).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                let _ = t.await;
            }
            let records = records
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            records
        })
    })
    .join()
    .expect("load thread")
}

/// Counts of answers by phase, stream and status.
fn table(records: &[Rec]) -> BTreeMap<(Phase, Stream), BTreeMap<u16, usize>> {
    let mut t: BTreeMap<(Phase, Stream), BTreeMap<u16, usize>> = BTreeMap::new();
    for r in records {
        *t.entry((r.phase(), r.stream))
            .or_default()
            .entry(r.status)
            .or_default() += 1;
    }
    t
}

fn count(
    t: &BTreeMap<(Phase, Stream), BTreeMap<u16, usize>>,
    p: Phase,
    s: Stream,
    status: u16,
) -> usize {
    t.get(&(p, s))
        .and_then(|m| m.get(&status))
        .copied()
        .unwrap_or(0)
}

fn total(t: &BTreeMap<(Phase, Stream), BTreeMap<u16, usize>>, p: Phase, s: Stream) -> usize {
    t.get(&(p, s)).map_or(0, |m| m.values().sum())
}

#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            self.failed.push(what);
        }
    }
}

struct Env {
    admin_url: String,
    db: String,
    proxy: PgProxy,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    actix_web::rt::System::new().block_on(f)
}

/// Starts the proxy on a runtime of its own (it must keep serving while the main thread
/// sleeps through the scenario).
fn start_proxy() -> PgProxy {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let _ = tx.send(PgProxy::plain().await);
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("proxy started")
}

fn scenario(env: &Env, name: &str, checks: &mut Checks) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== {name} ==");
    let mock = MockClerk::try_start()?;
    let url = env.proxy.url("127.0.0.1", &env.db, "sslmode=disable");
    let store: DieselUserStore = block_on(DieselUserStore::connect(&url))?;
    let mut builder = mock.clerk_builder().user_store(store);
    if name == "slow-api" {
        builder = builder.api_timeout(Duration::from_secs(1));
    }
    let clerk = builder.build()?;
    let (base, handle) = serve(clerk);
    let prefix = name.replace('-', "_");
    let known_ids: Vec<String> = (0..KNOWN_USERS)
        .map(|i| format!("user_{prefix}_k{i}"))
        .collect();
    let known: Vec<String> = known_ids
        .iter()
        .map(|id| mock.token().subject(id).build())
        .collect();
    let secs = Duration::from_secs(
        std::env::var("FAULTBENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    let new_count = usize::try_from(secs.as_secs() * NEW_PER_SEC).unwrap_or(1000) + 10;
    let new: Vec<String> = (0..new_count)
        .map(|i| mock.token().subject(&format!("user_{prefix}_n{i}")).build())
        .collect();
    let path = if name == "key-rotation" {
        "/session"
    } else {
        "/user"
    };
    // Sign the known users in (warm caches), then start from zero.
    let warm = drive_once(&base, &known, path);
    checks.check(
        warm == KNOWN_USERS,
        format!("{name}: {warm}/{KNOWN_USERS} known users signed in before the run"),
    );
    mock.reset_counters();
    let plan = Arc::new(Plan {
        known: RwLock::new(known.clone()),
        new,
        path,
    });
    let start = Instant::now();
    let load = {
        let (base, plan) = (base.clone(), plan.clone());
        std::thread::spawn(move || drive(base, plan, start, secs))
    };
    std::thread::sleep(FAULT_START.saturating_sub(start.elapsed()));
    let calls_before = calls(&mock);
    match name {
        "clerk-down" => {
            mock.set_fault(Endpoint::Jwks, Fault::Status(503));
            mock.set_fault(Endpoint::User, Fault::Status(503));
        }
        "slow-api" => mock.set_fault(Endpoint::User, Fault::Delay(Duration::from_secs(2))),
        "rate-limited" => mock.set_fault(
            Endpoint::User,
            Fault::RateLimited {
                retry_after_secs: 5,
            },
        ),
        "pg-restart" => env.proxy.down(),
        "key-rotation" => {
            mock.rotate_keys();
            let rotated: Vec<String> = known_ids
                .iter()
                .map(|id| mock.token().subject(id).build())
                .collect();
            plan.known
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(rotated);
        }
        _ => return Err(format!("unknown scenario {name}").into()),
    }
    std::thread::sleep((FAULT_START + FAULT_LEN).saturating_sub(start.elapsed()));
    let calls_during = calls(&mock);
    mock.clear_faults();
    env.proxy.up();
    let records = load.join().map_err(|_| "load thread panicked")?;
    let calls_after = calls(&mock);
    let fault_end = FAULT_START + FAULT_LEN;

    // Report.
    let t = table(&records);
    for ((phase, stream), statuses) in &t {
        let max = records
            .iter()
            .filter(|r| r.phase() == *phase && r.stream == *stream)
            .map(|r| r.latency)
            .max()
            .unwrap_or_default();
        println!(
            "  {phase:?} {stream:?}: {statuses:?}  max latency {} ms",
            max.as_millis()
        );
    }
    let diff = |a: &BTreeMap<&'static str, u64>, b: &BTreeMap<&'static str, u64>| {
        b.iter()
            .map(|(k, v)| (*k, v - a.get(k).copied().unwrap_or(0)))
            .collect::<BTreeMap<_, _>>()
    };
    let zero = calls(&MockClerkZero);
    println!(
        "  calls to Clerk: before {:?}, during {:?}, after {:?}",
        diff(&zero, &calls_before),
        diff(&calls_before, &calls_during),
        diff(&calls_during, &calls_after)
    );
    let recovery = records
        .iter()
        .filter(|r| r.stream == Stream::New && r.sent >= fault_end && r.status == 200)
        .map(|r| r.sent + r.latency)
        .min()
        .map(|t| t.saturating_sub(fault_end));
    println!("  recovery (end of fault to first new user's 200): {recovery:?}");
    let during_503: Vec<&Rec> = records
        .iter()
        .filter(|r| r.phase() == Phase::During && r.stream == Stream::New && r.status == 503)
        .collect();
    let retry_after = during_503.iter().filter_map(|r| r.retry_after).max();

    // Claims common to every scenario: no answer but 200 and 503, 503 always with Retry-After,
    // known users always 200, new users 200 before the fault.
    let others: usize = records
        .iter()
        .filter(|r| r.status != 200 && r.status != 503)
        .count();
    checks.check(
        others == 0,
        format!("{name}: {others} answers other than 200/503"),
    );
    let bare_503 = records
        .iter()
        .filter(|r| r.status == 503 && r.retry_after.is_none())
        .count();
    checks.check(
        bare_503 == 0,
        format!("{name}: {bare_503} 503s without Retry-After"),
    );
    for phase in [Phase::Before, Phase::During, Phase::After] {
        let n = total(&t, phase, Stream::Known);
        let ok = count(&t, phase, Stream::Known, 200);
        checks.check(
            n > 0 && ok == n,
            format!("{name}: known users {phase:?}: {ok}/{n} answered 200"),
        );
    }
    // New users before the fault: 200, unless still in flight when it began.
    let n = total(&t, Phase::Before, Stream::New);
    let caught = records
        .iter()
        .filter(|r| r.phase() == Phase::Before && r.stream == Stream::New && r.status != 200)
        .filter(|r| r.sent + r.latency >= FAULT_START)
        .count();
    checks.check(
        n > 0 && count(&t, Phase::Before, Stream::New, 200) + caught == n,
        format!(
            "{name}: new users before the fault: 200 ({n}, {caught} still in flight when it began)"
        ),
    );
    let new_during = total(&t, Phase::During, Stream::New);
    // A request sent during the fault whose retries ended after it may rightly succeed.
    let ok_inside = records
        .iter()
        .filter(|r| r.phase() == Phase::During && r.stream == Stream::New && r.status == 200)
        .filter(|r| r.sent + r.latency < fault_end)
        .count();
    let ok_late = count(&t, Phase::During, Stream::New, 200) - ok_inside;
    let new_during_ok = count(&t, Phase::During, Stream::New, 200);
    let new_during_calls = diff(&calls_before, &calls_during)
        .get("users")
        .copied()
        .unwrap_or(0);
    match name {
        "clerk-down" | "pg-restart" => {
            checks.check(
                ok_inside == 0 && during_503.len() + ok_late == new_during,
                format!(
                    "{name}: new users during the fault: {} of {new_during} got 503 + Retry-After, {ok_late} answered 200 after the fault ended",
                    during_503.len()
                ),
            );
            if name == "clerk-down" {
                checks.check(
                    new_during_calls as usize <= 3 * new_during,
                    format!("{name}: {new_during_calls} user calls for {new_during} new users (at most 3 attempts each)"),
                );
            }
            let bound = Duration::from_secs(retry_after.unwrap_or(0));
            checks.check(
                recovery.is_some_and(|r| r <= bound.max(Duration::from_secs(1))),
                format!(
                    "{name}: recovered in {recovery:?}, within one retry interval ({}s)",
                    bound.as_secs()
                ),
            );
        }
        "slow-api" => {
            let max = records
                .iter()
                .filter(|r| r.stream == Stream::New)
                .map(|r| r.latency)
                .max()
                .unwrap_or_default();
            // 3 attempts of 1 s with ≈200/400 ms back-off (up to 2x jitter) and some slack.
            checks.check(
                max < Duration::from_millis(5_000),
                format!(
                    "{name}: slowest new-user answer {} ms (3 x 1 s timeout + back-off)",
                    max.as_millis()
                ),
            );
            checks.check(new_during_calls as usize <= 3 * new_during, format!("{name}: {new_during_calls} user calls for {new_during} new users during the fault (at most 3 attempts each)"));
            checks.check(
                recovery.is_some(),
                format!("{name}: recovered in {recovery:?}"),
            );
        }
        "rate-limited" => {
            checks.check(
                ok_inside == 0 && during_503.len() + ok_late == new_during,
                format!(
                    "{name}: new users during the fault: {} of {new_during} got 503 + Retry-After",
                    during_503.len()
                ),
            );
            // One call opens each 5 s hold: 10 s of fault are 2 or 3 calls, not one per user.
            checks.check((1..=3).contains(&new_during_calls), format!("{name}: {new_during_calls} Backend API calls for {new_during} new users during the fault (no retry storm)"));
            checks.check(
                recovery.is_some_and(|r| r <= Duration::from_secs(5)),
                format!("{name}: recovered in {recovery:?}, within the 5 s Retry-After"),
            );
        }
        "key-rotation" => {
            let jwks = diff(&calls_before, &calls_after)
                .get("jwks")
                .copied()
                .unwrap_or(0);
            checks.check(
                jwks == 1,
                format!("{name}: {jwks} JWKS fetch for the rotation"),
            );
            checks.check(
                new_during_ok == new_during,
                format!(
                    "{name}: new users during the rotation: {new_during_ok}/{new_during} got 200"
                ),
            );
        }
        _ => {}
    }
    if name == "pg-restart" {
        // Every new user refused (during the outage, or in flight when the connections were
        // cut: its row may be committed while the answer was lost) signs in now, with no second
        // row; every row is whole.
        let refused_users: std::collections::BTreeSet<usize> = records
            .iter()
            .filter(|r| r.stream == Stream::New && r.status == 503)
            .map(|r| r.user)
            .collect();
        let refused: Vec<String> = refused_users.iter().map(|&u| plan.new[u].clone()).collect();
        let again = drive_once(&base, &refused, "/user");
        checks.check(
            again == refused.len(),
            format!(
                "{name}: {again}/{} users refused during the outage (or at the cut) signed in after it",
                refused.len()
            ),
        );
        let (rows, whole) = block_on(rows(&env.admin_url, &env.db, &prefix))?;
        let served: std::collections::HashSet<usize> = records
            .iter()
            .filter(|r| r.stream == Stream::New && r.status == 200)
            .map(|r| r.user)
            .chain(refused_users.iter().copied())
            .collect();
        let expected = KNOWN_USERS + served.len();
        checks.check(
            rows == expected as i64 && whole == rows,
            format!("{name}: {rows} rows ({whole} whole) for {expected} users served"),
        );
    }
    actix_web::rt::System::new().block_on(handle.stop(true));
    Ok(())
}

/// Stand-in for "no calls yet".
struct MockClerkZero;

trait Calls {
    fn count(&self, e: Endpoint) -> u64;
}
impl Calls for MockClerk {
    fn count(&self, e: Endpoint) -> u64 {
        self.requests(e)
    }
}
impl Calls for MockClerkZero {
    fn count(&self, _: Endpoint) -> u64 {
        0
    }
}

fn calls(mock: &impl Calls) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("jwks", mock.count(Endpoint::Jwks)),
        ("users", mock.count(Endpoint::User)),
    ])
}

/// Each token once, 16 at a time; how many answered 200.
fn drive_once(base: &str, tokens: &[String], path: &'static str) -> usize {
    let (base, tokens) = (base.to_owned(), tokens.to_vec());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish();
            let next = Arc::new(AtomicUsize::new(0));
            let ok = Arc::new(AtomicUsize::new(0));
            let tokens = Arc::new(tokens);
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let (client, base, next, ok, tokens) = (
                        client.clone(),
                        base.clone(),
                        next.clone(),
                        ok.clone(),
                        tokens.clone(),
                    );
                    actix_web::rt::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(t) = tokens.get(i) else { break };
                            if let Ok(mut r) = client
                                .get(format!("{base}{path}"))
                                .bearer_auth(t)
                                .send()
                                .await
                            {
                                let _ = r.body().await;
                                if r.status().is_success() {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            ok.load(Ordering::Relaxed)
        })
    })
    .join()
    .unwrap_or(0)
}

/// Rows of this scenario's users, and how many are whole (email and name written).
async fn rows(
    admin_url: &str,
    db: &str,
    prefix: &str,
) -> Result<(i64, i64), Box<dyn std::error::Error>> {
    use clerk_actix::store::clerk_users::dsl::{clerk_user_id, clerk_users, email, first_name};
    use diesel::prelude::*;
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => return Err("DATABASE_URL".into()),
    };
    let mut c = clerk_actix::store::establish_postgres(&url).await?;
    let pattern = format!("user_{prefix}_%");
    let all = diesel_async::RunQueryDsl::get_result::<i64>(
        clerk_users.filter(clerk_user_id.like(&pattern)).count(),
        &mut c,
    )
    .await?;
    let whole = diesel_async::RunQueryDsl::get_result::<i64>(
        clerk_users
            .filter(clerk_user_id.like(&pattern))
            .filter(email.is_not_null())
            .filter(first_name.is_not_null())
            .count(),
        &mut c,
    )
    .await?;
    Ok((all, whole))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let all = [
        "clerk-down",
        "slow-api",
        "rate-limited",
        "pg-restart",
        "key-rotation",
    ];
    // `all`, one scenario, or several separated by commas.
    let scenarios: Vec<&str> = if which == "all" {
        all.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in which.split(',') {
            match all.iter().copied().find(|s| *s == name) {
                Some(s) => chosen.push(s),
                None => {
                    return Err(format!("unknown scenario {name}: one of {all:?} or all").into())
                }
            }
        }
        chosen
    };
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = "clerk_actix_faultbench".to_owned();
    block_on(async {
        let mut admin = clerk_actix::store::establish_postgres(&admin_url).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await?;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db}"),
            None => return Err::<(), Box<dyn std::error::Error>>("DATABASE_URL".into()),
        };
        let store: DieselUserStore = DieselUserStore::connect(&url).await?;
        store.run_migrations().await?;
        Ok(())
    })?;
    let env = Env {
        admin_url: admin_url.clone(),
        db: db.clone(),
        proxy: start_proxy(),
    };
    let mut checks = Checks::default();
    for s in scenarios {
        scenario(&env, s, &mut checks)?;
    }
    block_on(async {
        if let Ok(mut admin) = clerk_actix::store::establish_postgres(&admin_url).await {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await;
        }
    });
    if checks.failed.is_empty() {
        println!("\nall checks passed");
        Ok(())
    } else {
        Err(format!("{} checks failed: {:?}", checks.failed.len(), checks.failed).into())
    }
}
