//! HTTP A/B of the warm path: `cargo run --release --bin httpab`.
//!
//! Where the cached path's microseconds go over real HTTP. Starts, on 127.0.0.1, one actix server
//! (one worker, pinned to core 0) per configuration, all answering the same JSON
//! (`{"user_id":"…"}`):
//!
//! - `bare`: a bare handler;
//! - `noop`: the same behind a middleware that does nothing (actix-web's documented middleware
//!   shape: a `Transform` whose service boxes the inner future) — the ceiling for any middleware;
//! - `session`: [`ClerkMiddleware`] + [`ClerkSession`];
//! - `user`: [`ClerkMiddleware`] + `ClerkUser<ClerkUserRecord>` (SQLite store, users cached);
//! - `machine`: [`ClerkMiddleware`] accepting API keys + [`ClerkMachine`] (opaque keys, cached:
//!   the machine cache's TTL is raised to an hour so no run re-verifies, and the unknown-token
//!   budgets so the warm-up's first sights from one address pass);
//! - `page`: [`ClerkMiddleware::handshake`] + an `AuthState` page, a signed-in document request
//!   (`__session` and `__client_uat` cookies, `Sec-Fetch-Dest: document`).
//!
//! Each is driven by `wrk` (Debian's package; 1 thread, `HTTPAB_CONNECTIONS` connections, default
//! 32), pinned to core 1 with `taskset`, for `HTTPAB_SECS` seconds (default 5) with (1) one
//! repeated token and (2) `HTTPAB_ROTATING` rotating tokens (default 1,000; every one cached
//! during the warm-up). All configurations run once per round, in turn, for `HTTPAB_ROUNDS`
//! rounds (default 5): the ratios (to `bare`, to `noop`) are computed within each round and the
//! median round's is shown, so drift between rounds cancels and runs on noisy machines compare.
//!
//! Heap allocations per request: this binary counts every allocation in the process (a counting
//! global allocator; the load generator is another process), divided by the requests wrk
//! completed — idle servers and housekeeping included, so it is an upper bound.
//!
//! Fails (non-zero exit) on any non-2xx answer, on a Backend API call during a measured run
//! (the paths must be warm), or when wrk is missing. Appends a JSON summary (commit, settings,
//! per-row medians, ratios and allocations) to `examples/results/httpab.jsonl` (`HTTPAB_OUT`,
//! empty for none). `HTTPAB_PIN=0` unpins; `HTTPAB_ROWS=session,user` runs only those
//! configurations (and the two baselines), e.g. under a profiler.

use std::{
    alloc::System,
    future::{ready, Ready},
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use actix_web::{
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    web, App, HttpResponse, HttpServer,
};
use clerk_actix::{
    machine::MachinePolicy,
    store::{ClerkUserRecord, DieselUserStore},
    testing::{unix_now, Endpoint, MockClerk},
    AuthState, Clerk, ClerkMachine, ClerkMiddleware, ClerkSession, ClerkUser, TokenTypes,
};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts every heap allocation of the process (`stats_alloc` wraps the system allocator).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations so far (reallocations included: each may move the block).
fn allocations() -> u64 {
    let stats = GLOBAL.stats();
    (stats.allocations + stats.reallocations) as u64
}

#[derive(Serialize)]
struct Who<'a> {
    user_id: &'a str,
}

fn answer(user_id: &str) -> HttpResponse {
    HttpResponse::Ok().json(Who { user_id })
}

/// The bare handler answers a fixed id of the same length as the tokens' subjects.
async fn bare() -> HttpResponse {
    answer("user_ab_0000")
}

async fn session(s: ClerkSession) -> HttpResponse {
    answer(s.user_id())
}

async fn user(u: ClerkUser<ClerkUserRecord>) -> HttpResponse {
    answer(&u.clerk_user_id)
}

async fn machine(m: ClerkMachine) -> HttpResponse {
    answer(m.subject())
}

async fn page(state: AuthState) -> HttpResponse {
    match state {
        AuthState::Authenticated(s) => answer(s.user_id()),
        _ => HttpResponse::Unauthorized().finish(),
    }
}

/// A middleware that does nothing, in actix-web's documented shape.
struct Noop;

impl<S, B> Transform<S, ServiceRequest> for Noop
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = NoopService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(NoopService { service }))
    }
}

struct NoopService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for NoopService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let fut = self.service.call(req);
        // actix-web's documented middleware, minus its logging.
        Box::pin(async move {
            let res = fut.await?;
            Ok(res)
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Bare,
    Noop,
    Session,
    User,
    Machine,
    Page,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::Bare,
        Variant::Noop,
        Variant::Session,
        Variant::User,
        Variant::Machine,
        Variant::Page,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Noop => "noop",
            Variant::Session => "session",
            Variant::User => "user",
            Variant::Machine => "machine",
            Variant::Page => "page",
        }
    }
}

fn pinned() -> bool {
    std::env::var("HTTPAB_PIN").as_deref() != Ok("0")
}

/// Pins the calling thread (the server's worker) to core 0.
fn pin_worker() {
    if !pinned() {
        return;
    }
    if let Some(id) = core_affinity::get_core_ids().and_then(|ids| ids.first().copied()) {
        core_affinity::set_for_current(id);
    }
}

/// Starts one server (one worker) on its own thread; returns its address and handle.
fn serve(variant: Variant, clerk: Clerk) -> (String, actix_web::dev::ServerHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}/", listener.local_addr().expect("addr"));
            let server = HttpServer::new(move || {
                pin_worker();
                let app = App::new();
                let clerk = clerk.clone();
                match variant {
                    Variant::Bare => app.route("/", web::get().to(bare)),
                    Variant::Noop => {
                        app.service(web::scope("").wrap(Noop).route("/", web::get().to(bare)))
                    }
                    Variant::Session => app.service(
                        web::scope("")
                            .wrap(ClerkMiddleware::new(clerk))
                            .route("/", web::get().to(session)),
                    ),
                    Variant::User => app.service(
                        web::scope("")
                            .wrap(ClerkMiddleware::new(clerk))
                            .route("/", web::get().to(user)),
                    ),
                    Variant::Machine => app.service(
                        web::scope("")
                            .wrap(ClerkMiddleware::new(clerk).accepts_token(TokenTypes::API_KEY))
                            .route("/", web::get().to(machine)),
                    ),
                    Variant::Page => app.service(
                        web::scope("")
                            .wrap(ClerkMiddleware::new(clerk).handshake())
                            .route("/", web::get().to(page)),
                    ),
                }
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

/// A wrk script sending `tokens` in turn, as a Bearer header or as a signed-in page's cookies.
fn script(dir: &Path, name: &str, tokens: &[String], page: bool, client_uat: i64) -> PathBuf {
    let list = dir.join(format!("{name}.tokens"));
    std::fs::write(&list, tokens.join("\n") + "\n").expect("write tokens");
    let headers = if page {
        format!(
            "{{[\"Cookie\"] = \"__session=\" .. t .. \"; __client_uat={client_uat}\", \
             [\"Sec-Fetch-Dest\"] = \"document\", [\"Accept\"] = \"text/html\"}}"
        )
    } else {
        "{[\"Authorization\"] = \"Bearer \" .. t}".to_owned()
    };
    let lua = format!(
        "local tokens = {{}}\n\
         for line in io.lines(\"{}\") do tokens[#tokens + 1] = line end\n\
         local i = 0\n\
         request = function()\n  i = i % #tokens + 1\n  local t = tokens[i]\n  \
         return wrk.format(\"GET\", \"/\", {headers})\nend\n",
        list.display()
    );
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua).expect("write script");
    path
}

struct Run {
    rps: f64,
    requests: u64,
    p50_us: f64,
    p99_us: f64,
    allocations_per_request: f64,
}

/// `wrk`'s latency figures ("412.00us", "1.02ms") in microseconds.
fn micros(text: &str) -> Option<f64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1_000.0,
        "s" => n * 1_000_000.0,
        _ => return None,
    })
}

/// Runs wrk against `url` with `script`; fails on any non-2xx answer.
fn wrk(url: &str, script: &Path, secs: u64, connections: u32) -> Result<Run, String> {
    let mut cmd = if pinned() {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    } else {
        Command::new("wrk")
    };
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")])
        .args(["--latency", "-s"])
        .arg(script)
        .arg(url);
    let before = allocations();
    let out = cmd.output().map_err(|e| format!("running wrk: {e}"))?;
    let allocated = allocations() - before;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx or 3xx")) {
        return Err(format!("{url}: {}", line.trim()));
    }
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(prefix)
                    .map(str::trim)
                    .map(str::to_owned)
            })
            .ok_or_else(|| format!("no `{prefix}` in wrk's output:\n{text}"))
    };
    let rps: f64 = field("Requests/sec:")?
        .parse()
        .map_err(|e| format!("Requests/sec: {e}"))?;
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .ok_or_else(|| format!("no request count in wrk's output:\n{text}"))?;
    let p50_us = micros(&field("50%")?).ok_or("50% latency")?;
    let p99_us = micros(&field("99%")?).ok_or("99% latency")?;
    Ok(Run {
        rps,
        requests,
        p50_us,
        p99_us,
        allocations_per_request: allocated as f64 / requests.max(1) as f64,
    })
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[derive(Serialize)]
struct RowSummary {
    row: String,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    vs_bare: f64,
    vs_noop: f64,
    allocations_per_request: f64,
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: u64 = env_num("HTTPAB_SECS", 5);
    let rounds: usize = env_num("HTTPAB_ROUNDS", 5).max(1);
    let connections: u32 = env_num("HTTPAB_CONNECTIONS", 32);
    let rotating: usize = env_num("HTTPAB_ROTATING", 1000).max(1);
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("httpab needs wrk (Debian: apt-get install wrk)".into());
    }

    let mock = MockClerk::try_start()?;
    let dir = std::env::temp_dir().join(format!("clerk-actix-httpab-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store: DieselUserStore =
        DieselUserStore::connect(dir.join("users.sqlite").to_str().ok_or("temp path")?).await?;
    store.run_migrations().await?;
    // The page's origin: its tokens' `azp` must be an authorized party.
    let origin = "http://127.0.0.1";
    let clerk = mock
        .clerk_builder()
        .authorized_parties([origin])
        .user_store(store)
        .machine_tokens(
            // Cached for the whole bench; the warm-up's 1,000 first sights from one address
            // are not held back by the unknown-token budgets.
            MachinePolicy::default()
                .cache_ttl(Duration::from_secs(3600))
                .unknown_token_rate(100_000, 100_000)
                .unknown_token_rate_per_client(100_000, 100_000),
        )
        .build()?;

    let exp = unix_now() + 3600;
    let iat = unix_now() - 5;
    let session_token = |i: usize| {
        mock.token()
            .subject(&format!("user_ab_{i:04}"))
            .authorized_party(origin)
            .issued_at(iat)
            .expires_at(exp)
            .build()
    };
    let one: Vec<String> = vec![session_token(0)];
    let many: Vec<String> = (0..rotating).map(session_token).collect();
    let key = |i: usize| mock.create_api_key(&format!("user_ab_{i:04}"), "httpab", &["read"]);
    let one_key = vec![key(0)];
    let many_keys: Vec<String> = (0..rotating).map(key).collect();

    let servers: Vec<(Variant, String, actix_web::dev::ServerHandle)> = Variant::ALL
        .iter()
        .map(|&v| {
            let (url, handle) = serve(v, clerk.clone());
            (v, url, handle)
        })
        .collect();

    // (row name, variant, script)
    let mut rows: Vec<(String, Variant, PathBuf)> = Vec::new();
    for (set, sessions, keys) in [("1 token", &one, &one_key), ("rotating", &many, &many_keys)] {
        for v in Variant::ALL {
            let name = format!("{} ({set})", v.name());
            let file = name.replace([' ', '(', ')'], "_");
            let path = match v {
                Variant::Machine => script(&dir, &file, keys, false, 0),
                Variant::Page => script(&dir, &file, sessions, true, iat),
                _ => script(&dir, &file, sessions, false, 0),
            };
            rows.push((name, v, path));
        }
    }
    // `HTTPAB_ROWS=session,noop`: only these configurations (bare always runs: the baseline).
    if let Ok(only) = std::env::var("HTTPAB_ROWS") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        rows.retain(|(_, v, _)| {
            matches!(v, Variant::Bare | Variant::Noop) || only.contains(&v.name())
        });
    }
    let url_of = |v: Variant| {
        servers
            .iter()
            .find(|(sv, ..)| *sv == v)
            .map(|(_, url, _)| url.clone())
            .expect("a server per variant")
    };

    // Warm-up: every token seen by every server (first sights: RSA, Backend API, SQLite), in
    // short runs of each row; any failure stops the bench.
    // Until a whole pass makes no Backend API call: a slow (debug) build may not see every
    // token within one pass.
    let calls = || {
        mock.requests(Endpoint::User)
            + mock.requests(Endpoint::Jwks)
            + mock.requests(Endpoint::ApiKeysVerify)
            + mock.requests(Endpoint::ClientHandshake)
            + mock.requests(Endpoint::HandshakePayload)
    };
    let mut passes = 0;
    loop {
        mock.reset_counters();
        for (name, v, path) in &rows {
            wrk(&url_of(*v), path, 2, connections).map_err(|e| format!("warm-up {name}: {e}"))?;
        }
        passes += 1;
        if calls() == 0 {
            break;
        }
        if passes == 10 {
            return Err("the warm-up still calls the Backend API after 10 passes".into());
        }
    }
    mock.reset_counters();

    println!(
        "httpab: {secs} s per run, wrk -t1 -c{connections}, 1 server worker{}, loopback, \
         {rounds} interleaved rounds, {rotating} rotating tokens; ratios are per round, median round shown\n",
        if pinned() { " on core 0, wrk on core 1" } else { ", unpinned" }
    );
    let mut runs: Vec<Vec<Run>> = rows.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (name, v, path)) in rows.iter().enumerate() {
            let run =
                wrk(&url_of(*v), path, secs, connections).map_err(|e| format!("{name}: {e}"))?;
            runs[i].push(run);
        }
    }
    let api_calls = calls();
    for (_, _, handle) in &servers {
        handle.stop(true).await;
    }

    // Per-round ratios against the same set's bare and noop rows.
    let index = |name: &str| rows.iter().position(|(n, ..)| n == name).expect("row");
    let mut summaries = Vec::new();
    println!(
        "{:<22} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "row", "req/s", "p50 µs", "p99 µs", "vs bare", "vs noop", "allocs/req"
    );
    for (i, (name, ..)) in rows.iter().enumerate() {
        let set = &name[name.find('(').unwrap_or(0)..];
        let (b, n) = (index(&format!("bare {set}")), index(&format!("noop {set}")));
        let ratio = |base: usize| {
            median(
                (0..rounds)
                    .map(|r| runs[i][r].rps / runs[base][r].rps)
                    .collect(),
            )
        };
        let s = RowSummary {
            row: name.clone(),
            rps: median(runs[i].iter().map(|r| r.rps).collect()),
            p50_us: median(runs[i].iter().map(|r| r.p50_us).collect()),
            p99_us: median(runs[i].iter().map(|r| r.p99_us).collect()),
            vs_bare: ratio(b),
            vs_noop: ratio(n),
            allocations_per_request: median(
                runs[i].iter().map(|r| r.allocations_per_request).collect(),
            ),
        };
        println!(
            "{:<22} {:>9.0} {:>8.0} {:>8.0} {:>7.3}x {:>7.3}x {:>10.1}",
            s.row, s.rps, s.p50_us, s.p99_us, s.vs_bare, s.vs_noop, s.allocations_per_request
        );
        summaries.push(s);
    }
    let total: u64 = runs.iter().flatten().map(|r| r.requests).sum();
    println!("\n{total} requests measured, 0 non-2xx; Backend API calls during the measured runs: {api_calls}");
    let _ = std::fs::remove_dir_all(&dir);
    if api_calls > 0 {
        return Err(format!(
            "{api_calls} Backend API / JWKS calls during the measured runs: a path was not warm"
        )
        .into());
    }

    let out = std::env::var("HTTPAB_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/results/httpab.jsonl").to_owned()
    });
    if !out.is_empty() {
        let commit = Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let record = serde_json::json!({
            "commit": commit,
            "unix_time": unix_now(),
            "secs": secs,
            "rounds": rounds,
            "connections": connections,
            "rotating_tokens": rotating,
            "pinned": pinned(),
            "requests": total,
            "rows": summaries,
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)?;
        writeln!(f, "{record}")?;
        println!("summary appended to {out}");
    }
    Ok(())
}
