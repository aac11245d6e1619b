//! The README's first command, end to end: the quickstart binary starts with its dev Clerk,
//! prints a token that `GET /me` accepts, and leaves the synced user in the database.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use clerk_actix::{
    store::DieselUserStore,
    testing::{Endpoint, MockClerk, WebhookDelivery, MOCK_WEBHOOK_SECRET},
    UserStore,
};
use clerk_actix_tests::{
    db::{Backend, TestDb, BACKENDS},
    process::{listening_port, spawn, Output, Server},
};

/// Starts the quickstart and returns it with its port and the token from its printed `curl`
/// command.
fn start(db: &TestDb) -> (Server, u16, String) {
    let (server, port, tokens) = start_printing(db);
    let token = tokens
        .recv_timeout(Duration::from_secs(60))
        .expect("the quickstart printed a curl command with a token");
    (server, port, token)
}

/// Starts the quickstart on a port of the system's choosing (`PORT=0`, read back from its
/// `listening on` line); every token of its printed `curl` commands arrives on the channel,
/// in the order printed.
fn start_printing(db: &TestDb) -> (Server, u16, mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    cmd.env("PORT", "0")
        .env_remove("CLERK_SECRET_KEY")
        .env_remove("CLERK_JWT_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match db.backend {
        Backend::Postgres => cmd.env("DATABASE_URL", &db.url).env_remove("SQLITE_PATH"),
        Backend::Sqlite => cmd.env_remove("DATABASE_URL").env("SQLITE_PATH", &db.url),
    };
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = listening_port(&line) {
                let _ = port_tx.send(port);
            }
            if let Some(rest) = line.split("Authorization: Bearer ").nth(1) {
                let _ = tx.send(rest.trim_end_matches('\'').to_owned());
            }
        }
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the quickstart printed the port it listens on");
    (server, port, rx)
}

#[actix_web::test]
async fn quickstart_serves_me_with_the_printed_token_and_syncs_the_user() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let (_server, port, token) = start(&db);
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let base = format!("http://127.0.0.1:{port}");

        // The server may need a moment after printing.
        let mut res = None;
        for _ in 0..50 {
            match client
                .get(format!("{base}/me"))
                .bearer_auth(&token)
                .send()
                .await
            {
                Ok(r) => {
                    res = Some(r);
                    break;
                }
                Err(_) => actix_web::rt::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let mut res = res.expect("the quickstart answers");
        assert_eq!(res.status().as_u16(), 200, "{backend:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["user"]["clerk_user_id"], "user_quickstart");
        assert_eq!(body["user"]["email"], "quickstart@example.com");
        assert_eq!(body["session"]["user_id"], "user_quickstart");

        let res = client.get(format!("{base}/me")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401);
        assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");

        // The readiness endpoint it prints: keys loaded, the store answering.
        let mut res = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{backend:?}");
        let health: serde_json::Value = res.json().await.unwrap();
        assert_eq!(health["ready"], true);
        assert_eq!(health["stores"][0]["reachable"], true);

        // The metrics endpoint it prints: the requests above are counted.
        let mut res = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        assert!(
            text.contains(r#"clerk_auth_success_total{source="verified"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"clerk_user_sync_total{source="api"} 1"#),
            "{text}"
        );

        // The row is in the database the quickstart was pointed at.
        let row = store
            .find("user_quickstart")
            .await
            .unwrap()
            .expect("a clerk_users row");
        assert_eq!(row.email.as_deref(), Some("quickstart@example.com"));
        assert_eq!(row.first_name.as_deref(), Some("Test"));
        assert_eq!(row.last_name.as_deref(), Some("User quickstart"));
        let fresh: DieselUserStore = DieselUserStore::connect(&db.url).await.unwrap();
        assert_eq!(db.count_rows(&fresh).await, 1);
        drop(_server);
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn quickstart_machine_route_takes_api_keys_and_m2m_tokens_and_refuses_the_rest() {
    let (db, _store) = TestDb::new(Backend::Sqlite).await;
    let (_server, port, printed) = start_printing(&db);
    let next = || {
        printed
            .recv_timeout(Duration::from_secs(60))
            .expect("a printed curl command")
    };
    // Printed in this order: /me's session token, then /machine's API key, M2M token, M2M JWT,
    // and the session token again.
    let session = next();
    let (api_key, m2m, m2m_jwt) = (next(), next(), next());
    assert_eq!(next(), session);
    assert!(
        api_key.starts_with("ak_") && m2m.starts_with("mt_"),
        "{api_key} {m2m}"
    );
    assert_eq!(m2m_jwt.split('.').count(), 3);

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &base).await;
    let call = |token: String| {
        let client = client.clone();
        let url = format!("{base}/machine");
        async move {
            let mut res = client.get(url).bearer_auth(token).send().await.unwrap();
            let body: serde_json::Value = res.json().await.unwrap();
            (res.status().as_u16(), body)
        }
    };

    for (token, token_type, subject, scopes) in [
        (
            &api_key,
            "api_key",
            "user_quickstart",
            serde_json::json!(["read:reports"]),
        ),
        (
            &m2m,
            "m2m_token",
            "mch_quickstart",
            serde_json::json!(["mch_reports"]),
        ),
        (
            &m2m_jwt,
            "m2m_token",
            "mch_quickstart",
            serde_json::json!(["mch_reports"]),
        ),
    ] {
        let (status, body) = call(token.clone()).await;
        assert_eq!(status, 200, "{token_type}: {body}");
        assert_eq!(body["token_type"], token_type);
        assert_eq!(body["subject"], subject);
        assert_eq!(body["scopes"], scopes);
        assert!(
            body["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{body}"
        );
    }

    // Revoked, expired (opaque and JWT) from the dev endpoint; unknown; a session token; an
    // OAuth token type the handler does not take.
    let dev = |query: &'static str| {
        let client = client.clone();
        let url = format!("{base}/dev/machine-token?{query}");
        async move {
            let mut res = client.get(url).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{query}");
            String::from_utf8(res.body().await.unwrap().to_vec()).unwrap()
        }
    };
    for (token, reason) in [
        (dev("type=api_key&state=revoked").await, "token-revoked"),
        (dev("type=m2m_token&state=revoked").await, "token-revoked"),
        (dev("type=api_key&state=expired").await, "token-expired"),
        (dev("type=m2m_jwt&state=expired").await, "token-expired"),
        ("ak_0000000000000000unknown".to_owned(), "token-invalid"),
        (session.clone(), "token-type-mismatch"),
        (
            "oat_0000000000000000unknown".to_owned(),
            "token-type-mismatch",
        ),
    ] {
        let (status, body) = call(token.clone()).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some(reason)),
            "{body}"
        );
    }
    // And a valid one still answers; `/me` keeps taking sessions only.
    assert_eq!(call(dev("type=m2m_jwt").await).await.0, 200);
    assert_eq!(status(&client, &base, &session).await, 200);
    assert_eq!(
        answer(&client, &base, &api_key).await,
        (401, "token-type-mismatch".to_owned())
    );
    drop(_server);
    db.cleanup().await;
}

/// A quickstart process against a shared Clerk (here the test's MockClerk) and database, as one
/// replica of an application deployed three times, on a port of the system's choosing
/// (`PORT=0`): the server and its output, where [`base_of`] reads the port once it is bound.
/// Replicas started one after the other start together: none waits for another's start-up.
fn start_replica(db: &TestDb, mock: &MockClerk) -> (Server, Output) {
    start_replica_at(&db.url, None, mock)
}

/// [`start_replica`] with `DATABASE_URL=url` and, when given, `CLERK_DATABASE_DIRECT_URL`.
fn start_replica_at(url: &str, direct: Option<&str>, mock: &MockClerk) -> (Server, Output) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    match direct {
        Some(direct) => command.env("CLERK_DATABASE_DIRECT_URL", direct),
        None => command.env_remove("CLERK_DATABASE_DIRECT_URL"),
    };
    command
        .env("CLERK_SECRET_KEY", mock.secret_key())
        .env("CLERK_API_URL", mock.api_url())
        .env("CLERK_WEBHOOK_SIGNING_SECRET", MOCK_WEBHOOK_SECRET)
        .env_remove("CLERK_JWT_KEY")
        .env_remove("CLERK_AUTHORIZED_PARTIES")
        .env("DATABASE_URL", url)
        .env_remove("SQLITE_PATH")
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null());
    spawn(command)
}

/// The base URL of a replica, once it printed the port it listens on.
fn base_of(output: &Output) -> String {
    format!(
        "http://127.0.0.1:{}",
        output.listening_port(Duration::from_secs(60))
    )
}

/// Waits for `GET /readyz` to answer 200 (keys loaded, revocations of the other replicas
/// loaded).
async fn wait_ready(client: &awc::Client, base: &str) {
    for _ in 0..600 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status().as_u16() == 200 {
                return;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not become ready");
}

/// `GET /me` with `token`: the status and the reason code (`""` when none).
async fn answer(client: &awc::Client, base: &str, token: &str) -> (u16, String) {
    let mut res = client
        .get(format!("{base}/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (
        res.status().as_u16(),
        body["reason"].as_str().unwrap_or("").to_owned(),
    )
}

async fn status(client: &awc::Client, base: &str, token: &str) -> u16 {
    client
        .get(format!("{base}/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn deliver(delivery: &WebhookDelivery, base: &str) -> String {
    let (code, body) = delivery
        .send(&format!("{base}/webhooks/clerk"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn three_quickstart_processes_on_one_postgres_behave_as_replicas() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let mock = MockClerk::start();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let (mut servers, outputs): (Vec<Server>, Vec<Output>) =
        (0..3).map(|_| start_replica(&db, &mock)).unzip();
    let mut bases: Vec<String> = outputs.iter().map(base_of).collect();
    for base in &bases {
        wait_ready(&client, base).await;
    }
    let id = "user_three_processes";
    let token = mock.token().subject(id).build();
    mock.reset_counters();
    for base in &bases {
        assert_eq!(status(&client, base, &token).await, 200, "{base}");
    }
    assert_eq!(mock.requests(Endpoint::User), 1, "one Backend API call");

    let deletion = mock.webhook(
        "user.deleted",
        serde_json::json!({"object": "user", "id": id, "deleted": true}),
    );
    assert_eq!(deliver(&deletion, &bases[0]).await, "applied");
    // Refused as a deleted user (an expired token or a bad signature would be a 401 too), on
    // both other replicas within 1 s of the delivery in all.
    let started = std::time::Instant::now();
    for base in &bases[1..] {
        let left = Duration::from_secs(1).saturating_sub(started.elapsed());
        refused_within(&client, base, &token, left).await;
    }
    assert_eq!(deliver(&deletion, &bases[1]).await, "duplicate");
    let mut late = clerk_actix::testing::mock_user_json(id);
    late["updated_at"] = serde_json::json!(9_999_999_999_999_i64);
    assert_eq!(
        deliver(&mock.webhook("user.updated", late), &bases[2]).await,
        "ignored"
    );

    // Replica 0 restarted: it still refuses the user.
    drop(servers.remove(0));
    let (restarted, output) = start_replica(&db, &mock);
    bases[0] = base_of(&output);
    wait_ready(&client, &bases[0]).await;
    assert_eq!(
        answer(&client, &bases[0], &token).await,
        (401, "user-inactive".to_owned())
    );
    drop(restarted);
    drop(servers);
    db.cleanup().await;
}

/// `GET /readyz`: the first change feed's `mode`.
async fn feed_mode(client: &awc::Client, base: &str) -> String {
    let mut res = client.get(format!("{base}/readyz")).send().await.unwrap();
    let health: serde_json::Value = res.json().await.unwrap();
    health["change_feeds"][0]["mode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until `base` refuses `token` as a deleted user's; the time it took, or a failure after
/// `limit`.
async fn refused_within(
    client: &awc::Client,
    base: &str,
    token: &str,
    limit: Duration,
) -> Duration {
    let started = std::time::Instant::now();
    while answer(client, base, token).await != (401, "user-inactive".to_owned()) {
        assert!(
            started.elapsed() < limit,
            "{base} still serves the deleted user after {limit:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Managed PostgreSQL's pooled string: a real PgBouncer in transaction mode with two server
/// connections, three quickstart processes started together on an empty database through it
/// (`pgbouncer=true`), one of them also given the direct string.
#[actix_web::test]
#[ignore = "needs Debian's pgbouncer package: .ci/run installs it and runs this test"]
async fn quickstart_processes_through_pgbouncer_in_transaction_mode_migrate_once_and_replicate() {
    use clerk_actix_tests::pgbouncer::PgBouncer;
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let db = TestDb::empty_postgres().await;
    let bouncer = PgBouncer::start(2);
    let pooled = bouncer.url(db.name());
    let mock = MockClerk::start();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    // Started together on an empty database: they race on the migrations through the pooler.
    let (servers, outputs): (Vec<Server>, Vec<Output>) = [None, None, Some(db.url.as_str())]
        .into_iter()
        .map(|direct| start_replica_at(&pooled, direct, &mock))
        .unzip();
    let bases: Vec<String> = outputs.iter().map(base_of).collect();
    for base in &bases {
        wait_ready(&client, base).await;
    }

    // Once: each embedded migration recorded exactly once.
    clerk_actix_tests::db::assert_migrated_once(&db.url).await;
    let mut direct = AsyncPgConnection::establish(&db.url).await.unwrap();

    // Through the pooler LISTEN hears nothing: the feeds without the direct string find out
    // (their probe does not come back within 2 s) and poll.
    let started = std::time::Instant::now();
    for base in &bases[..2] {
        while feed_mode(&client, base).await != "polling" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{base}: the feed does not notice that it is deaf"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(feed_mode(&client, &bases[2]).await, "listening");

    // Sign-in on all three (concurrently, so they share the two server connections): one
    // Backend API call, one row.
    for round in 0..2 {
        let id = format!("user_pooled_{round}");
        let token = mock.token().subject(&id).build();
        mock.reset_counters();
        // First sight on one replica; then all of them at once (sharing the two server
        // connections) find the row it wrote.
        assert_eq!(status(&client, &bases[round], &token).await, 200);
        let answers = futures_util::future::join_all(
            bases
                .iter()
                .flat_map(|b| [b, b, b])
                .map(|b| status(&client, b, &token)),
        )
        .await;
        assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
        assert_eq!(mock.requests(Endpoint::User), 1, "one Backend API call");

        // A deletion delivered to one replica is refused on the others within 2 s.
        let deletion = mock.webhook(
            "user.deleted",
            serde_json::json!({"object": "user", "id": id, "deleted": true}),
        );
        let from = round; // 0: polling → the others; 1: the other polling one.
        assert_eq!(deliver(&deletion, &bases[from]).await, "applied");
        for (i, base) in bases.iter().enumerate().filter(|(i, _)| *i != from) {
            let took = refused_within(&client, base, &token, Duration::from_secs(2)).await;
            eprintln!("pooler: deletion on replica {from} refused on replica {i} after {took:?}");
        }
        assert_eq!(deliver(&deletion, &bases[2]).await, "duplicate");
    }
    let rows: i64 = clerk_actix::store::clerk_users::table
        .count()
        .get_result(&mut direct)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one row per user, whichever replica wrote it");
    drop(servers);
    drop(bouncer);
    drop(direct);
    db.cleanup().await;
}
