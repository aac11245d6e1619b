//! Connections to PostgreSQL with TLS as the URL's `sslmode` asks, the way `libpq` reads it.
//!
//! diesel-async's `AsyncPgConnection::establish` connects without TLS; managed PostgreSQL
//! (RDS, Cloud SQL, Neon, Supabase) requires it. This module parses a `postgres://` URL once,
//! takes out the TLS parameters `tokio-postgres` does not know (`verify-ca`, `verify-full`,
//! `sslrootcert`), and connects through rustls (aws-lc-rs) with the verification each mode
//! promises (the table is in the docs of `store::postgres_manager`).

use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `sslmode` asks for, libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            // libpq's `allow` tries plaintext first; TLS-when-offered is the stronger reading.
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ))
            }
        })
    }
}

/// A parsed PostgreSQL URL: the `tokio-postgres` configuration and the TLS connector.
#[derive(Clone)]
pub(crate) struct PgTarget {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    mode: TlsMode,
    /// `pgbouncer=true`: the string reaches PostgreSQL through a transaction-mode pooler.
    pooler: bool,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PgTarget")
            .field("hosts", &self.config.get_hosts().len())
            .field("dbname", &self.config.get_dbname())
            .field("tls", &self.mode)
            .field("pooler", &self.pooler)
            .finish()
    }
}

/// What libpq takes from the environment when the connection string leaves it out.
fn fill_from_env(
    config: &mut tokio_postgres::Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    if config.get_hosts().is_empty() {
        if let Some(hosts) = env("PGHOST") {
            for host in hosts.split(',') {
                config.host(host);
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(ports) = env("PGPORT") {
            for port in ports.split(',') {
                config.port(
                    port.trim()
                        .parse()
                        .map_err(|_| format!("PGPORT={port} is not a port"))?,
                );
            }
        }
    }
    if config.get_user().is_none() {
        if let Some(user) = env("PGUSER") {
            config.user(user);
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(dbname) = env("PGDATABASE") {
            config.dbname(dbname);
        }
    }
    if config.get_application_name().is_none() {
        if let Some(name) = env("PGAPPNAME") {
            config.application_name(name);
        }
    }
    if config.get_connect_timeout().is_none() {
        if let Some(secs) = env("PGCONNECT_TIMEOUT") {
            let secs: u64 = secs
                .trim()
                .parse()
                .map_err(|_| "PGCONNECT_TIMEOUT is not a number of seconds".to_owned())?;
            config.connect_timeout(std::time::Duration::from_secs(secs));
        }
    }
    Ok(())
}

/// `%XX` sequences decoded (URL query values); invalid ones are kept as written.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's key/value connection string (`host=db port=5432 sslmode='verify-full'`): pairs
/// `key = value`, values single-quoted when they hold spaces (`\'` and `\\` escaped).
fn parse_key_value(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("invalid connection string: `{key}` has no `=`"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(format!(
                            "invalid connection string: unterminated quote in `{key}`"
                        ))
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// A key/value pair as libpq reads it back.
fn quote_key_value(key: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("{key}='{escaped}'")
}

/// The root certificate file libpq reads when `sslrootcert` is not given.
fn default_root_cert(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    env("HOME").map(|home| format!("{home}/.postgresql/root.crt"))
}

impl PgTarget {
    /// Parses `url` as libpq does, the process's `PG*` environment variables included.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        Self::parse_with_env(url, &|key| {
            std::env::var(key).ok().filter(|v| !v.is_empty())
        })
    }

    /// Parses a connection string — a `postgres://` / `postgresql://` URL or libpq's key/value
    /// form — with `env` standing for the environment: `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGSSLMODE` and
    /// `PGSSLROOTCERT` fill what the string leaves out, as in libpq. Errors name the offending
    /// parameter, never the password.
    pub(crate) fn parse_with_env(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let url = url.trim();
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let mut mode: Option<String> = None;
        let mut root_cert: Option<String> = None;
        let mut pooler = false;
        let mut take = |key: &str, value: String| -> Result<bool, String> {
            match key {
                "sslmode" => mode = Some(value),
                "sslrootcert" => root_cert = Some(value),
                // Prisma's name for the same thing; libpq has none (it prepares nothing).
                "pgbouncer" => {
                    pooler = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => {
                            return Err(format!("pgbouncer={other} is not true or false"));
                        }
                    }
                }
                k @ ("sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir") => {
                    return Err(format!(
                        "{k} is not supported (client certificates and CRLs): only sslmode and \
                         sslrootcert are"
                    ))
                }
                _ => return Ok(false),
            }
            Ok(true)
        };
        let rebuilt = if is_url {
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let mut rest: Vec<&str> = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                if !take(&percent_decode(key), percent_decode(value))? {
                    rest.push(pair);
                }
            }
            if rest.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", rest.join("&"))
            }
        } else if url.contains('=') {
            let mut rest = Vec::new();
            for (key, value) in parse_key_value(url)? {
                if !take(&key, value.clone())? {
                    rest.push(quote_key_value(&key, &value));
                }
            }
            rest.join(" ")
        } else {
            return Err(
                "invalid PostgreSQL connection string: expected a postgres:// URL or \
                 key=value pairs"
                    .to_owned(),
            );
        };
        let mut config: tokio_postgres::Config = rebuilt
            .parse()
            .map_err(|e| format!("invalid PostgreSQL connection string: {e}"))?;
        fill_from_env(&mut config, env)?;
        let mode_given = mode.or_else(|| env("PGSSLMODE"));
        let root_cert = root_cert.or_else(|| env("PGSSLROOTCERT"));
        let system = root_cert.as_deref() == Some("system");
        let mode = match mode_given.as_deref() {
            Some(value) => TlsMode::parse(value)?,
            // libpq: sslrootcert=system makes verify-full the default.
            None if system => TlsMode::VerifyFull,
            None => TlsMode::Prefer,
        };
        if system && mode != TlsMode::VerifyFull {
            return Err(format!(
                "weak sslmode \"{}\" may not be used with sslrootcert=system (use \
                 \"verify-full\")",
                mode_given.as_deref().unwrap_or("prefer")
            ));
        }
        // libpq: without sslrootcert, the root file is ~/.postgresql/root.crt. Verifying
        // modes need one; with `require`, one that exists makes it verify the chain.
        let root_cert = match root_cert {
            Some(root) => Some(root),
            None => default_root_cert(env).filter(|p| std::path::Path::new(p).is_file()),
        };
        if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) && root_cert.is_none() {
            return Err(format!(
                "sslmode={} needs a root certificate: set sslrootcert=<PEM file> (your \
                 provider's CA bundle), or sslrootcert=system with verify-full (no \
                 ~/.postgresql/root.crt either)",
                mode.as_str()
            ));
        }
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        // libpq: `require` with a root certificate verifies the chain like verify-ca.
        let mode = match (mode, &root_cert) {
            (TlsMode::Require, Some(_)) => TlsMode::VerifyCa,
            (mode, _) => mode,
        };
        let tls = match mode {
            TlsMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(
                mode,
                root_cert.as_deref(),
            )?)),
        };
        Ok(Self {
            config,
            tls,
            mode,
            pooler,
        })
    }

    /// Whether the string says it goes through a transaction-mode pooler (`pgbouncer=true`):
    /// then every statement runs inside a transaction, and prepared statements live no longer
    /// than the transaction that made them (the pooler may hand the next one another server).
    pub(crate) fn transaction_pooler(&self) -> bool {
        self.pooler
    }

    /// The same target with `application_name` set, unless the URL sets one.
    pub(crate) fn with_application_name(mut self, name: &str) -> Self {
        if self.config.get_application_name().is_none() {
            self.config.application_name(name);
        }
        self
    }

    /// Opens one connection.
    pub(crate) async fn establish(&self) -> Result<AsyncPgConnection, ConnectionError> {
        // tokio-postgres says "error performing TLS handshake" and keeps the why (rustls':
        // "invalid peer certificate: UnknownIssuer") in its source: both are worth reading.
        let bad = |e: tokio_postgres::Error| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            ConnectionError::BadConnection(text)
        };
        match &self.tls {
            None => {
                let (client, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(bad)?;
                self.set_up(client, conn).await
            }
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await.map_err(bad)?;
                self.set_up(client, conn).await
            }
        }
    }

    /// diesel-async's set-up of a connected client. Through a transaction-mode pooler its
    /// `SET`s (prepared statements) run inside a transaction, so that each statement's
    /// messages reach one server, and no statement is cached past its transaction: a cached one
    /// would be missing on the next server, or collide with another process's of the same
    /// name. (Such a connection hears no notifications; the change feed then polls.)
    async fn set_up<S>(
        &self,
        client: tokio_postgres::Client,
        conn: tokio_postgres::Connection<tokio_postgres::Socket, S>,
    ) -> Result<AsyncPgConnection, ConnectionError>
    where
        S: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
    {
        use diesel::connection::CacheSize;
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        if !self.pooler {
            return AsyncPgConnection::try_from_client_and_connection(client, conn).await;
        }
        // The connection is driven here (it ends when the client is dropped), so the set-up
        // can be wrapped in a transaction.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        let mut pg = AsyncPgConnection::try_from(client).await?;
        pg.batch_execute("COMMIT")
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        pg.set_prepared_statement_cache_size(CacheSize::Disabled);
        Ok(pg)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(root_cert: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        None | Some("system") => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert {path}: no usable certificate in it"));
            }
        }
    }
    Ok(roots)
}

fn client_config(mode: TlsMode, root_cert: Option<&str>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => Arc::new(Unverified(provider)),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root_cert)?), provider)
                    .build()
                    .map_err(|e| format!("TLS verifier: {e}"))?;
            if mode == TlsMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What libpq 17 sends; servers before 17 ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// `prefer` / `require`: encryption without authentication of the server (libpq's meaning).
/// The handshake's signatures are still checked, so the session is bound to the presented key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not
/// compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last: a name error means the chain held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No environment at all.
    fn bare(url: &str) -> Result<PgTarget, String> {
        PgTarget::parse_with_env(url, &|_| None)
    }

    /// An environment of `vars`.
    fn with_env(url: &str, vars: &[(&str, &str)]) -> Result<PgTarget, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PgTarget::parse_with_env(url, &move |key| {
            vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    /// A PEM file holding one (self-signed) CA certificate, removed on drop.
    struct RootFile(std::path::PathBuf);

    impl RootFile {
        fn at(path: std::path::PathBuf) -> Self {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, cert.pem()).unwrap();
            Self(path)
        }

        fn temp() -> Self {
            Self::at(std::env::temp_dir().join(format!(
                "clerk_actix_root_{}_{}.pem",
                std::process::id(),
                fastrand::u64(..)
            )))
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for RootFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_as_in_libpq() {
        for mode in ["verify-ca", "verify-full"] {
            let err = bare(&format!("postgres://h/app?sslmode={mode}")).unwrap_err();
            assert!(
                err.contains(&format!("sslmode={mode} needs a root certificate")),
                "{err}"
            );
            // PGSSLMODE asks for it just the same.
            let err = with_env("postgres://h/app", &[("PGSSLMODE", mode)]).unwrap_err();
            assert!(err.contains("needs a root certificate"), "{err}");
        }
        let root = RootFile::temp();
        let t = bare(&format!(
            "postgres://h/app?sslmode=verify-ca&sslrootcert={}",
            root.path()
        ))
        .unwrap();
        assert_eq!(t.mode, TlsMode::VerifyCa);
        // PGSSLROOTCERT stands in for sslrootcert.
        let t = with_env(
            "postgres://h/app?sslmode=verify-full",
            &[("PGSSLROOTCERT", root.path())],
        )
        .unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
    }

    #[test]
    fn the_default_root_file_in_home_is_read_as_libpq_reads_it() {
        let home = std::env::temp_dir().join(format!(
            "clerk_actix_home_{}_{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let home_str = home.to_str().unwrap().to_owned();
        // No ~/.postgresql/root.crt: verify-full is refused, require does not verify.
        let env = [("HOME", home_str.as_str())];
        assert!(with_env("postgres://h/app?sslmode=verify-full", &env).is_err());
        let t = with_env("postgres://h/app?sslmode=require", &env).unwrap();
        assert_eq!(t.mode, TlsMode::Require);
        let _root = RootFile::at(home.join(".postgresql/root.crt"));
        let t = with_env("postgres://h/app?sslmode=verify-full", &env).unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
        // With the file there, `require` verifies the chain (libpq).
        let t = with_env("postgres://h/app?sslmode=require", &env).unwrap();
        assert_eq!(t.mode, TlsMode::VerifyCa);
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn sslrootcert_system_defaults_to_verify_full_and_refuses_weaker_modes() {
        let t = bare("postgres://h/app?sslrootcert=system").unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
        let t = with_env("postgres://h/app", &[("PGSSLROOTCERT", "system")]).unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
        for mode in ["disable", "allow", "prefer", "require", "verify-ca"] {
            let err = bare(&format!(
                "postgres://h/app?sslmode={mode}&sslrootcert=system"
            ))
            .unwrap_err();
            assert!(
                err.contains(&format!("weak sslmode \"{mode}\" may not be used")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_environment_fills_only_what_the_string_leaves_out() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6543"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGAPPNAME", "envapp"),
            ("PGSSLMODE", "disable"),
            ("PGCONNECT_TIMEOUT", "7"),
        ];
        let t = with_env("postgres://", &env).unwrap();
        assert_eq!(
            t.config.get_hosts(),
            [tokio_postgres::config::Host::Tcp("envhost".into())]
        );
        assert_eq!(t.config.get_ports(), [6543]);
        assert_eq!(t.config.get_user(), Some("envuser"));
        assert_eq!(t.config.get_password(), Some(&b"envpw"[..]));
        assert_eq!(t.config.get_dbname(), Some("envdb"));
        assert_eq!(t.config.get_application_name(), Some("envapp"));
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(7))
        );
        assert_eq!(t.mode, TlsMode::Disable);
        let t = with_env(
            "postgres://u:pw@h:5433/app?sslmode=require&application_name=mine",
            &env,
        )
        .unwrap();
        assert_eq!(
            t.config.get_hosts(),
            [tokio_postgres::config::Host::Tcp("h".into())]
        );
        assert_eq!(t.config.get_ports(), [5433]);
        assert_eq!(t.config.get_user(), Some("u"));
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(t.config.get_dbname(), Some("app"));
        assert_eq!(t.config.get_application_name(), Some("mine"));
        assert_eq!(t.mode, TlsMode::Require);
    }

    #[test]
    fn key_value_strings_keep_their_sslmode() {
        let root = RootFile::temp();
        let t = bare(&format!(
            "host=db.example port=5433 user=app password='it''s' dbname=app \
             sslmode=verify-full sslrootcert='{}'",
            root.path()
        ))
        .unwrap_err();
        // `''` is not an escape in libpq: that string is malformed at `s'`.
        assert!(!t.contains("it"), "{t}");
        let t = bare(&format!(
            "host=db.example port = 5433 user=app password='it\\'s a secret' dbname=app \
             sslmode=verify-full sslrootcert='{}'",
            root.path()
        ))
        .unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_password(), Some(&b"it's a secret"[..]));
        assert_eq!(t.config.get_ports(), [5433]);
        let t = bare("host=db dbname=app sslmode=disable").unwrap();
        assert_eq!(t.mode, TlsMode::Disable);
        let err = bare("host=db sslmode=verify-ca").unwrap_err();
        assert!(err.contains("needs a root certificate"), "{err}");
        let err = bare("").unwrap_err();
        assert!(err.contains("expected a postgres:// URL"), "{err}");
    }

    #[test]
    fn sslmode_defaults_to_prefer_and_is_taken_out_of_the_url() {
        let t = bare("postgres://u:secret@db.example:6543/app").unwrap();
        assert_eq!(t.mode, TlsMode::Prefer);
        assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
        assert!(t.tls.is_some());
        let root = RootFile::temp();
        let t = bare(&format!(
            "postgresql://u@h/app?application_name=x&sslmode=verify-full&connect_timeout=3\
             &sslrootcert={}",
            root.path()
        ))
        .unwrap();
        assert_eq!(t.mode, TlsMode::VerifyFull);
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        let t = bare("postgres://u@h/app?sslmode=disable").unwrap();
        assert_eq!(t.mode, TlsMode::Disable);
        assert!(t.tls.is_none());
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn pgbouncer_true_marks_a_transaction_pooler_and_is_taken_out_of_the_string() {
        assert!(!bare("postgres://h:6543/app").unwrap().transaction_pooler());
        for url in [
            "postgres://h:6543/app?pgbouncer=true",
            "postgres://h:6543/app?sslmode=disable&pgbouncer=1",
            "host=h port=6543 dbname=app pgbouncer=true",
        ] {
            // tokio-postgres would refuse the unknown parameter had it not been taken out.
            let t = bare(url).unwrap();
            assert!(t.transaction_pooler(), "{url}");
            assert_eq!(t.config.get_dbname(), Some("app"), "{url}");
        }
        assert!(!bare("postgres://h/app?pgbouncer=false")
            .unwrap()
            .transaction_pooler());
        let bad = bare("postgres://h/app?pgbouncer=yes").unwrap_err();
        assert!(bad.contains("pgbouncer=yes is not true or false"), "{bad}");
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_and_bad_parameters_are_named() {
        let missing =
            bare("postgres://h/app?sslmode=require&sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert!(
            missing.contains("sslrootcert /nonexistent/ca.pem"),
            "{missing}"
        );
        let bad = bare("postgres://u:hunter2@h/app?sslmode=verify").unwrap_err();
        assert!(bad.contains("sslmode=verify is not one of"), "{bad}");
        assert!(!bad.contains("hunter2"));
        let client = bare("postgres://h/app?sslmode=require&sslcert=c.pem").unwrap_err();
        assert!(client.contains("sslcert is not supported"), "{client}");
        let root = RootFile::temp();
        let t = bare(&format!(
            "postgres://h/app?sslmode=require&sslrootcert={}",
            root.path()
        ))
        .unwrap();
        assert_eq!(t.mode, TlsMode::VerifyCa);
        let debug = format!("{:?}", bare("postgres://u:hunter2@h/app").unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn application_name_is_added_unless_the_url_has_one() {
        let t = bare("postgres://h/app")
            .unwrap()
            .with_application_name("feed");
        assert_eq!(t.config.get_application_name(), Some("feed"));
        let t = bare("postgres://h/app?application_name=mine")
            .unwrap()
            .with_application_name("feed");
        assert_eq!(t.config.get_application_name(), Some("mine"));
    }

    #[test]
    fn percent_decoding_of_parameter_values() {
        assert_eq!(percent_decode("%2Fetc%2Fca.pem"), "/etc/ca.pem");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("ab%41"), "abA");
    }
}
