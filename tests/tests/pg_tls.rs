//! TLS to PostgreSQL (issue 10): `sslmode` in `DATABASE_URL`, as libpq reads it, with rustls.
//!
//! Two servers: the local PostgreSQL itself (it has `ssl = on`), where `pg_stat_ssl` shows what
//! each connection got; and, for the certificate checks, a TLS proxy in front of it with a
//! certificate authority the test creates. The proxy speaks PostgreSQL's `SSLRequest`, answers
//! with its own certificate, and refuses any client that does not ask for TLS.

#![allow(clippy::unwrap_used)]

use clerk_actix::{
    store::{establish_postgres, ClerkUserRecord, DbPool, DieselUserStore, FEED_APPLICATION_NAME},
    sync::UserStore,
};
use clerk_actix_tests::{
    ca::Ca,
    db::{store_at, Backend, TestDb},
    pgproxy::PgProxy,
};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

/// `db`'s URL through `proxy`, at `host`, with `params`.
fn via(proxy: &PgProxy, host: &str, db: &TestDb, params: &str) -> String {
    proxy.url(host, db.url.rsplit('/').next().unwrap(), params)
}

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

/// Whether the store's pooled connection is encrypted, as the server sees it.
async fn pooled_connection_is_encrypted(store: &DieselUserStore<ClerkUserRecord>) -> bool {
    let DbPool::Postgres(pool) = store.pool() else {
        panic!("a PostgreSQL store")
    };
    let mut conn = pool.get().await.unwrap();
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .unwrap();
    row.ssl
}

#[actix_web::test]
async fn sslmode_decides_whether_the_pool_migrations_and_change_feed_are_encrypted() {
    let (db, _plain) = TestDb::new(Backend::Postgres).await;
    let name = db.url.rsplit('/').next().unwrap().to_owned();

    // require: every connection of the store is TLS, the change feed's included.
    let required = store_at(&format!("{}?sslmode=require", db.url))
        .await
        .unwrap();
    assert!(pooled_connection_is_encrypted(&required).await);
    let feed = required
        .change_feed()
        .expect("a PostgreSQL store has a change feed");
    let _subscription = feed.subscribe().await.unwrap();
    let mut admin = establish_postgres(&db.url).await.unwrap();
    let feed_ssl: Vec<Ssl> = diesel::sql_query(format!(
        "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = '{name}' AND a.application_name = '{FEED_APPLICATION_NAME}'"
    ))
    .load(&mut admin)
    .await
    .unwrap();
    assert_eq!(feed_ssl.len(), 1, "one LISTEN connection");
    assert!(feed_ssl[0].ssl, "the LISTEN connection is encrypted");

    // disable: plaintext. The default (prefer) takes TLS when the server offers it, as libpq.
    let disabled = store_at(&format!("{}?sslmode=disable", db.url))
        .await
        .unwrap();
    assert!(!pooled_connection_is_encrypted(&disabled).await);
    let default = store_at(&db.url).await.unwrap();
    assert!(pooled_connection_is_encrypted(&default).await);

    drop((required, disabled, default, _subscription, admin));
    db.cleanup().await;
}

#[actix_web::test]
async fn verify_full_checks_the_chain_and_the_host_name() {
    let (db, _plain) = TestDb::new(Backend::Postgres).await;
    let ca = Ca::new("full");
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let proxy = PgProxy::tls(cert, key).await;
    let root = format!("sslrootcert={}", ca.path());

    // Trusted chain, matching name (DNS and IP): the whole store works through TLS.
    for host in ["localhost", "127.0.0.1"] {
        let url = via(&proxy, host, &db, &format!("sslmode=verify-full&{root}"));
        let store = store_at(&url)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        let feed = store.change_feed().unwrap();
        feed.subscribe().await.unwrap();
    }
    assert!(proxy.tls_sessions() >= 2);
    assert_eq!(proxy.plaintext_refused(), 0);

    // Without sslrootcert the chain is checked against the public roots: refused.
    let before = proxy.tls_sessions();
    let err = store_at(&via(&proxy, "localhost", &db, "sslmode=verify-full"))
        .await
        .expect_err("an unknown CA is refused");
    assert!(err.contains("certificate"), "{err}");
    // Another CA's bundle: refused too, by verify-ca as well.
    let other = Ca::new("other");
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = via(
            &proxy,
            "localhost",
            &db,
            &format!("sslmode={mode}&sslrootcert={}", other.path()),
        );
        let err = store_at(&url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode} accepted"));
        assert!(err.contains("certificate"), "{mode}: {err}");
    }
    assert_eq!(proxy.tls_sessions(), before, "no session was established");

    // sslmode=disable never asks for TLS: the TLS-only server refuses it.
    let err = store_at(&via(&proxy, "localhost", &db, "sslmode=disable"))
        .await
        .expect_err("plaintext is refused by a TLS-only server");
    assert!(!err.is_empty());
    assert!(proxy.plaintext_refused() >= 1);

    db.cleanup().await;
}

#[actix_web::test]
async fn verify_ca_accepts_a_trusted_certificate_for_another_name_verify_full_does_not() {
    let (db, _plain) = TestDb::new(Backend::Postgres).await;
    let ca = Ca::new("name");
    let (cert, key) = ca.server_cert(&["db.internal.example"]);
    let proxy = PgProxy::tls(cert, key).await;
    let root = format!("sslrootcert={}", ca.path());

    let err = store_at(&via(
        &proxy,
        "127.0.0.1",
        &db,
        &format!("sslmode=verify-full&{root}"),
    ))
    .await
    .expect_err("a certificate for another name is refused by verify-full");
    assert!(err.contains("certificate not valid for name"), "{err}");
    for params in [
        format!("sslmode=verify-ca&{root}"),
        format!("sslmode=require&{root}"), // libpq: require + a root certificate = verify-ca
        "sslmode=require".to_owned(),      // encryption, no authentication
        "sslmode=prefer".to_owned(),
    ] {
        store_at(&via(&proxy, "127.0.0.1", &db, &params))
            .await
            .unwrap_or_else(|e| panic!("{params}: {e}"));
    }
    assert_eq!(proxy.plaintext_refused(), 0);
    db.cleanup().await;
}

#[actix_web::test]
async fn bad_tls_parameters_are_refused_at_connect_and_never_echo_the_password() {
    for (url, expected) in [
        (
            "postgres://app:hunter2@127.0.0.1/x?sslmode=verify",
            "sslmode=verify is not one of",
        ),
        (
            "postgres://app:hunter2@127.0.0.1/x?sslmode=require&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert /nonexistent/ca.pem",
        ),
        (
            "postgres://app:hunter2@127.0.0.1/x?sslkey=/k.pem",
            "sslkey is not supported",
        ),
    ] {
        let err = DieselUserStore::<ClerkUserRecord>::connect(url)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(expected), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = establish_postgres(url).await.err().unwrap().to_string();
        assert!(err.contains(expected), "{url}: {err}");
    }
}
