//! libpq's environment variables and connection-string forms (issue 27), against a TLS proxy in
//! front of the local PostgreSQL with a certificate authority of the test's own.
//!
//! One test in its own binary: it sets process environment variables, which no other test
//! thread may see.

#![allow(clippy::unwrap_used)]

use clerk_actix_tests::{
    ca::Ca,
    db::{store_at, Backend, TestDb},
    pgproxy::PgProxy,
};

fn set(vars: &[(&str, &str)]) {
    for key in [
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "HOME",
    ] {
        std::env::remove_var(key);
    }
    for (key, value) in vars {
        std::env::set_var(key, value);
    }
}

#[actix_web::test]
async fn pg_environment_variables_and_key_value_strings_are_read_as_libpq_reads_them() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let ca = Ca::new("env");
    let other = Ca::new("env-other");
    let (cert, key) = ca.server_cert(&["localhost"]);
    let proxy = PgProxy::tls(cert, key).await;
    let empty_home =
        std::env::temp_dir().join(format!("clerk_actix_nohome_{}", std::process::id()));
    let home = empty_home.to_str().unwrap();
    // A URL with no sslmode: what the environment says decides.
    let bare = proxy.url("localhost", &name, "");

    // PGSSLMODE=verify-full without any root certificate: refused before connecting.
    set(&[("PGSSLMODE", "verify-full"), ("HOME", home)]);
    let err = store_at(&bare).await.map(|_| ()).unwrap_err();
    assert!(
        err.contains("sslmode=verify-full needs a root certificate"),
        "{err}"
    );
    assert_eq!(proxy.tls_sessions(), 0);

    // With PGSSLROOTCERT naming another CA: the handshake fails on the chain.
    set(&[
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", other.path()),
        ("HOME", home),
    ]);
    let err = store_at(&bare).await.map(|_| ()).unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // With the right CA: connected, verified, through TLS.
    set(&[
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.path()),
        ("HOME", home),
    ]);
    let before = proxy.tls_sessions();
    store_at(&bare).await.unwrap();
    assert!(proxy.tls_sessions() > before);

    // The URL's own sslmode wins over PGSSLMODE: require does not check the chain.
    set(&[
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", other.path()),
        ("HOME", home),
    ]);
    let err = store_at(&proxy.url("localhost", &name, "sslmode=verify-ca"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    set(&[("PGSSLMODE", "verify-full"), ("HOME", home)]);
    store_at(&proxy.url("localhost", &name, "sslmode=require"))
        .await
        .unwrap();

    // sslrootcert=system makes verify-full the default and refuses weaker modes: the test CA
    // is not a public root, so verify-full fails on the chain.
    set(&[("HOME", home)]);
    let err = store_at(&proxy.url("localhost", &name, "sslrootcert=system"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    let err = store_at(&proxy.url("localhost", &name, "sslrootcert=system&sslmode=require"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.contains("weak sslmode \"require\""), "{err}");

    // PGHOST, PGPORT, PGUSER and PGDATABASE fill a URL that leaves them out.
    set(&[
        ("PGHOST", "localhost"),
        ("PGPORT", &proxy.port.to_string()),
        ("PGUSER", "postgres"),
        ("PGDATABASE", &name),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.path()),
        ("HOME", home),
    ]);
    let before = proxy.tls_sessions();
    store_at("postgres://").await.unwrap();
    assert!(proxy.tls_sessions() > before);

    // libpq's key/value form keeps its sslmode (it used to be overwritten with prefer).
    set(&[("HOME", home)]);
    let kv = |root: &str| {
        format!(
            "host=localhost port={} user=postgres dbname={name} sslmode=verify-full \
             sslrootcert='{root}'",
            proxy.port
        )
    };
    let err = store_at(&kv(other.path())).await.map(|_| ()).unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    let before = proxy.tls_sessions();
    store_at(&kv(ca.path())).await.unwrap();
    assert!(proxy.tls_sessions() > before);
    set(&[]);
    db.cleanup().await;
}
