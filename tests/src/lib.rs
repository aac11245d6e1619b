//! Shared helpers for the end-to-end tests: a small app wired like a user's, and an event
//! recorder.

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc, Mutex,
};

use clerk_actix::{
    sync::{ChangeFeed, Delivered, StoreError},
    ClerkUserData, DeletedUserPolicy, UserStore,
};
use futures_util::future::BoxFuture;

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    test, web, App, HttpResponse,
};
use clerk_actix::{
    AuthState, Clerk, ClerkEvent, ClerkMiddleware, ClerkSession, OptionalClerkSession,
};

/// `GET /me`: the session (401 when anonymous).
pub async fn me(session: ClerkSession) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user_id": session.user_id(),
        "source": session.source().as_str(),
        "carrier": session.carrier(),
    }))
}

/// `GET /public`: who is asking, if anyone.
pub async fn public(session: OptionalClerkSession) -> HttpResponse {
    let who = session
        .as_ref()
        .map_or("anonymous".to_owned(), |s| s.user_id().to_owned());
    HttpResponse::Ok().body(who)
}

/// `GET /state`: the middleware's decision.
pub async fn state(state: AuthState) -> HttpResponse {
    let s = match state {
        AuthState::Anonymous => "anonymous".to_owned(),
        AuthState::Authenticated(_) => "authenticated".to_owned(),
        AuthState::Pending(_) => "pending".to_owned(),
        AuthState::SignedOut(err) => format!("signed-out:{}", err.reason()),
        _ => "other".to_owned(),
    };
    HttpResponse::Ok().body(s)
}

/// The test app: `/me`, `/public`, `/state` behind the middleware (optional or required mode).
pub async fn app(
    clerk: Clerk,
    required: bool,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    let mw = if required {
        ClerkMiddleware::new(clerk.clone()).required()
    } else {
        ClerkMiddleware::new(clerk.clone())
    };
    test::init_service(
        App::new()
            .app_data(web::Data::new(clerk))
            .wrap(mw)
            .route("/me", web::get().to(me))
            .route("/public", web::get().to(public))
            .route(
                "/public",
                web::method(actix_web::http::Method::OPTIONS).to(HttpResponse::NoContent),
            )
            .route("/state", web::get().to(state)),
    )
    .await
}

/// Records every event.
#[derive(Clone, Default, Debug)]
pub struct Recorder(Arc<Mutex<Vec<ClerkEvent>>>);

impl Recorder {
    /// The listener closure to register with `on_event`.
    pub fn listener(&self) -> impl Fn(&ClerkEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e| {
            events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.clone())
        }
    }

    /// Events so far.
    pub fn take(&self) -> Vec<ClerkEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Calls a test service; returns the status, the `Retry-After` header and the JSON body
/// (`Null` when the body is not JSON).
pub async fn call_json<S, B>(
    app: &S,
    req: actix_http::Request,
) -> (
    actix_web::http::StatusCode,
    Option<String>,
    serde_json::Value,
)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req).await;
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = actix_web::body::to_bytes(res.into_body())
        .await
        .unwrap_or_default();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

pub mod browser;
pub mod ca;
pub mod chromium;
pub mod pages;
pub mod pgbouncer;
pub mod pgproxy;
pub mod replica;

/// Example binaries run as processes by `examples/tests/`.
pub mod process {
    use std::{
        io::{BufRead, BufReader},
        process::{Child, Command, Stdio},
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    /// Starts `command` with its stdout piped: the server (killed when dropped) and its output,
    /// collected line by line as it arrives.
    pub fn spawn(mut command: Command) -> (Server, Output) {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let output = Output::default();
        if let Some(stdout) = child.stdout.take() {
            let lines = output.0.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        (Server(child), output)
    }

    /// The port in a line `… listening on http://127.0.0.1:<port>`, as the example servers
    /// print it once bound.
    pub fn listening_port(line: &str) -> Option<u16> {
        let rest = line.split(" listening on http://127.0.0.1:").nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// Starts an example server with `PORT=0`: the server binds a port the system chooses and
    /// prints it, so no port is picked before the server holds it (no other process can take
    /// it in between). The server, its output, and the port (waiting up to 60 s for it).
    pub fn spawn_listening(mut command: Command) -> (Server, Output, u16) {
        command.env("PORT", "0");
        let (server, output) = spawn(command);
        let port = output.listening_port(Duration::from_secs(60));
        (server, output, port)
    }

    /// The lines a process printed so far.
    #[derive(Debug, Clone, Default)]
    pub struct Output(Arc<Mutex<Vec<String>>>);

    impl Output {
        /// The port of the first `… listening on http://127.0.0.1:<port>` line, waiting up to
        /// `timeout` for it.
        pub fn listening_port(&self, timeout: Duration) -> u16 {
            self.wait_find("`listening on` line", timeout, listening_port)
        }

        /// The first `found(line)` that is `Some`, waiting up to `timeout` for one (`what`
        /// names it in the failure).
        fn wait_find<T>(
            &self,
            what: &str,
            timeout: Duration,
            found: impl Fn(&str) -> Option<T>,
        ) -> T {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(value) = self.lines().iter().find_map(|l| found(l)) {
                    return value;
                }
                assert!(
                    Instant::now() < deadline,
                    "no {what} within {timeout:?}: {:?}",
                    self.lines()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        /// The rest of the first line starting with `prefix`, waiting up to `timeout` for it.
        pub fn wait_for(&self, prefix: &str, timeout: Duration) -> String {
            self.wait_find(&format!("line `{prefix}…`"), timeout, |l| {
                l.strip_prefix(prefix).map(str::to_owned)
            })
        }

        /// The lines containing `needle`, once there are `n` of them (waiting up to `timeout`)
        /// and no more arrived in the next 200 ms.
        pub fn wait_count(&self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
            let deadline = Instant::now() + timeout;
            while self.containing(needle).len() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200));
            self.containing(needle)
        }

        /// The lines containing `needle`.
        pub fn containing(&self, needle: &str) -> Vec<String> {
            self.lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect()
        }

        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }
    }

    /// Kills the server when the test ends, however it ends.
    #[derive(Debug)]
    pub struct Server(pub Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A loopback port nobody listens on (for a moment): only for programs that cannot report
    /// the port they bound (PgBouncer, ChromeDriver), whose start is retried on another port when
    /// the port was taken in between. The example servers take `PORT=0` instead
    /// ([`spawn_listening`]).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
    }
}

/// Webhook endpoint and protected routes served over real HTTP.
#[allow(clippy::unwrap_used)] // test helpers: a failure here is the test's failure
pub mod http {
    use std::{net::TcpListener, time::Duration};

    use actix_web::{web, App, HttpResponse, HttpServer};
    use clerk_actix::{
        store::ClerkUserRecord, testing::mock_user_json, webhooks, Clerk, ClerkMiddleware,
        ClerkSession, ClerkUser,
    };
    use serde_json::{json, Value};

    /// `GET /api/me/user`: the synced user and where it came from.
    pub async fn me_user(user: ClerkUser<ClerkUserRecord>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"source": user.source(), "user": &*user}))
    }

    /// `GET /api/me`: the session's user id.
    pub async fn me_id(session: ClerkSession) -> HttpResponse {
        HttpResponse::Ok().body(session.user_id().to_owned())
    }

    /// Serves the webhook endpoint and two protected routes on 127.0.0.1; returns the base URL.
    pub fn serve(clerk: Clerk) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(clerk.clone()))
                .service(webhooks::resource::<ClerkUserRecord>("/webhooks/clerk"))
                .service(
                    web::scope("/api")
                        .wrap(ClerkMiddleware::new(clerk.clone()))
                        .route("/me/user", web::get().to(me_user))
                        .route("/me", web::get().to(me_id)),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        base
    }

    /// Serves `GET /machine` on 127.0.0.1 under a middleware accepting `accepts` (the caller's
    /// subject, from `ClerkMachine`); returns the base URL.
    pub fn serve_machine(clerk: Clerk, accepts: clerk_actix::TokenTypes) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .wrap(ClerkMiddleware::new(clerk.clone()).accepts_token(accepts))
                .route(
                    "/machine",
                    web::get().to(|m: clerk_actix::extract::ClerkMachine| async move {
                        HttpResponse::Ok().body(m.subject().to_owned())
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        base
    }

    /// `GET base+path` with a Bearer token over real HTTP: the status and the JSON (or text) body.
    pub async fn get(base: &str, path: &str, token: &str) -> (u16, Value) {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let mut res = client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let body = res.body().await.unwrap();
        (
            res.status().as_u16(),
            serde_json::from_slice(&body)
                .unwrap_or(Value::String(String::from_utf8_lossy(&body).into())),
        )
    }

    /// The mock user `id` at Clerk version `updated_at` with this first name.
    pub fn user_json(id: &str, updated_at: i64, first_name: &str) -> Value {
        let mut u = mock_user_json(id);
        u["updated_at"] = json!(updated_at);
        u["first_name"] = json!(first_name);
        u
    }
}

/// Databases for the user-sync tests: a fresh PostgreSQL database (127.0.0.1:5432, user
/// `postgres`) or a fresh SQLite file per test, migrated, dropped by [`db::TestDb::cleanup`].
pub mod db {
    use std::sync::atomic::{AtomicBool, Ordering};

    use clerk_actix::store::{ClerkUserRecord, DbPool, DieselUserStore};
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

    /// The admin URL of the CI PostgreSQL.
    pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    const PREFIX: &str = "clerk_actix_test_";

    /// Which database.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Backend {
        /// PostgreSQL on 127.0.0.1:5432.
        Postgres,
        /// A temporary SQLite file.
        Sqlite,
    }

    /// Both backends, for tests that run on each.
    pub const BACKENDS: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

    /// A migrated, empty database.
    #[derive(Debug)]
    pub struct TestDb {
        /// The backend.
        pub backend: Backend,
        /// Its URL.
        pub url: String,
        name: String,
    }

    /// Asserts that every embedded PostgreSQL migration is recorded exactly once in `url`'s
    /// database (a second run of one would have failed on its `CREATE TABLE`, or recorded it
    /// twice without the primary key).
    pub async fn assert_migrated_once(url: &str) {
        #[derive(QueryableByName)]
        struct Applied {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            rows: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            versions: i64,
        }
        let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
        let applied: Applied = diesel::sql_query(
            "SELECT count(*) AS rows, count(DISTINCT version) AS versions \
             FROM __diesel_schema_migrations",
        )
        .get_result(&mut conn)
        .await
        .expect("__diesel_schema_migrations");
        let embedded = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../clerk-actix/migrations/postgres"
        ))
        .expect("the migrations directory")
        .count() as i64;
        assert_eq!((applied.rows, applied.versions), (embedded, embedded));
    }

    /// A connection to the admin database.
    pub async fn admin() -> AsyncPgConnection {
        match AsyncPgConnection::establish(PG_ADMIN_URL).await {
            Ok(c) => c,
            Err(e) => panic!(
                "PostgreSQL must be reachable at {PG_ADMIN_URL} for these tests \
                 (start it: pg_ctlcluster --skip-systemctl-redirect <version> main start): {e}"
            ),
        }
    }

    /// Drops test databases left by earlier runs: only those whose process (the pid in the
    /// name) has exited, so concurrent runs (cargo-nextest, two `cargo test`s) keep theirs.
    async fn sweep(conn: &mut AsyncPgConnection) {
        static SWEPT: AtomicBool = AtomicBool::new(false);
        if SWEPT.swap(true, Ordering::SeqCst) {
            return;
        }
        sweep_dead_owners(conn).await;
    }

    /// The sweep itself (once per process from [`TestDb::new`]; public for its own test).
    pub async fn sweep_dead_owners(conn: &mut AsyncPgConnection) {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        // The owner is alive: leave it (Linux: /proc/<pid>; elsewhere nothing is swept).
        let owner_alive = |name: &str| {
            let pid = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            match pid {
                Some(pid) => {
                    !cfg!(target_os = "linux")
                        || std::path::Path::new(&format!("/proc/{pid}")).exists()
                }
                None => true,
            }
        };
        let names: Vec<Name> = diesel::sql_query(format!(
            "SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"
        ))
        .load(conn)
        .await
        .unwrap_or_default();
        for n in names.into_iter().filter(|n| !owner_alive(&n.datname)) {
            let _ = conn
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    n.datname
                ))
                .await;
        }
    }

    /// A store over `url`, migrated, answering a ping (or the first error, as text).
    pub async fn store_at(url: &str) -> Result<DieselUserStore<ClerkUserRecord>, String> {
        use clerk_actix::sync::UserStore;
        let store: DieselUserStore<ClerkUserRecord> = DieselUserStore::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        store.ping().await.map_err(|e| e.to_string())?;
        store.run_migrations().await.map_err(|e| e.to_string())?;
        Ok(store)
    }

    impl TestDb {
        /// A fresh database with the `clerk_users` migrations applied.
        pub async fn new(backend: Backend) -> (Self, DieselUserStore<ClerkUserRecord>) {
            let name = format!("{PREFIX}{}_{}", std::process::id(), fastrand::u64(..));
            let url = match backend {
                Backend::Postgres => {
                    let mut conn = admin().await;
                    sweep(&mut conn).await;
                    if let Err(e) = conn.batch_execute(&format!("CREATE DATABASE {name}")).await {
                        panic!("could not create test database {name}: {e}");
                    }
                    format!("postgres://postgres@127.0.0.1:5432/{name}")
                }
                Backend::Sqlite => std::env::temp_dir()
                    .join(format!("{name}.sqlite"))
                    .to_string_lossy()
                    .into_owned(),
            };
            let store = match DieselUserStore::connect(&url).await {
                Ok(s) => s,
                Err(e) => panic!("connect {backend:?}: {e}"),
            };
            if let Err(e) = store.run_migrations().await {
                panic!("migrations on {backend:?}: {e}");
            }
            (Self { backend, url, name }, store)
        }

        /// A fresh PostgreSQL database with nothing in it (no migration applied).
        pub async fn empty_postgres() -> Self {
            let name = format!("{PREFIX}{}_{}", std::process::id(), fastrand::u64(..));
            let mut conn = admin().await;
            sweep(&mut conn).await;
            if let Err(e) = conn.batch_execute(&format!("CREATE DATABASE {name}")).await {
                panic!("could not create test database {name}: {e}");
            }
            let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
            Self {
                backend: Backend::Postgres,
                url,
                name,
            }
        }

        /// The database's name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Rows in `clerk_users`.
        pub async fn count_rows(&self, store: &DieselUserStore<ClerkUserRecord>) -> i64 {
            use clerk_actix::store::clerk_users::dsl::clerk_users;
            let n = match store.pool() {
                DbPool::Postgres(pool) => {
                    let mut c = pool.get().await.expect("pg connection");
                    clerk_users.count().get_result::<i64>(&mut c).await
                }
                DbPool::Sqlite(pool) => {
                    let mut c = pool.get().await.expect("sqlite connection");
                    clerk_users.count().get_result::<i64>(&mut c).await
                }
                _ => unreachable!("both backends are enabled in the tests"),
            };
            n.expect("count rows")
        }

        /// Sets every row's `synced_at` to 0: the rows are stale, so the next load asks
        /// Clerk instead of serving them as a recent sync.
        pub async fn age_rows(&self, store: &DieselUserStore<ClerkUserRecord>) {
            use clerk_actix::store::clerk_users::dsl::{clerk_users, synced_at};
            let n = match store.pool() {
                DbPool::Postgres(pool) => {
                    let mut c = pool.get().await.expect("pg connection");
                    diesel::update(clerk_users)
                        .set(synced_at.eq(0))
                        .execute(&mut c)
                        .await
                }
                DbPool::Sqlite(pool) => {
                    let mut c = pool.get().await.expect("sqlite connection");
                    diesel::update(clerk_users)
                        .set(synced_at.eq(0))
                        .execute(&mut c)
                        .await
                }
                _ => unreachable!("both backends are enabled in the tests"),
            };
            n.expect("age rows");
        }

        /// Drops the database (PostgreSQL) or deletes the file (SQLite).
        pub async fn cleanup(self) {
            match self.backend {
                Backend::Postgres => {
                    let mut conn = admin().await;
                    let _ = conn
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            self.name
                        ))
                        .await;
                }
                Backend::Sqlite => {
                    for suffix in ["", "-wal", "-shm", "-journal"] {
                        let _ = std::fs::remove_file(format!("{}{suffix}", self.url));
                    }
                }
            }
        }
    }
}

/// A store wrapper that counts calls, can be switched "down", and can hold one upsert's
/// answer back (to force an interleaving with a concurrent write).
#[derive(Debug)]
pub struct Probe<S> {
    /// The wrapped store.
    pub inner: S,
    /// Calls so far.
    pub calls: AtomicUsize,
    /// Upserts so far (webhook deliveries' included).
    pub upserts: AtomicUsize,
    /// When true, every call fails like a database outage.
    pub down: AtomicBool,
    /// Set by [`hold_next_upsert`](Self::hold_next_upsert).
    held: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
}

/// The next upsert of a [`Probe`], held after its write until [`release`](Self::release)d.
#[derive(Debug)]
pub struct HeldUpsert {
    written: Option<tokio::sync::oneshot::Receiver<()>>,
    release: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HeldUpsert {
    /// Waits until the held upsert has written (it has not answered yet).
    pub async fn written(&mut self) {
        if let Some(written) = self.written.take() {
            let _ = written.await;
        }
    }

    /// Lets the upsert answer.
    pub fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

impl<S> Probe<S> {
    /// Wraps a store.
    pub fn new(inner: S) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
            upserts: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            held: Mutex::new(None),
        })
    }

    /// Holds the next upsert (any path) after its write, until the returned handle releases
    /// it: a test orders events by what happened, not by sleeping.
    pub fn hold_next_upsert(&self) -> HeldUpsert {
        let (written_tx, written_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((written_tx, release_rx));
        HeldUpsert {
            written: Some(written_rx),
            release: Some(release_tx),
        }
    }

    /// After an upsert's write: the hold set for it, if any.
    async fn after_upsert(&self) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((written, release)) = held {
            let _ = written.send(());
            let _ = release.await;
        }
    }
    fn enter(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new("database down (test)"))
        } else {
            Ok(())
        }
    }
}

impl<S: UserStore> UserStore for Probe<S> {
    type User = S::User;
    fn upsert<'a>(
        &'a self,
        u: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Option<S::User>, StoreError>> {
        Box::pin(async move {
            self.enter()?;
            self.upserts.fetch_add(1, Ordering::SeqCst);
            let written = self.inner.upsert(u).await;
            self.after_upsert().await;
            written
        })
    }
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<S::User>, StoreError>> {
        Box::pin(async move {
            self.enter()?;
            self.inner.find(id).await
        })
    }
    fn mark_deleted<'a>(
        &'a self,
        id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.enter()?;
            self.inner.mark_deleted(id, deleted_at, policy).await
        })
    }
    fn deleted_at<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            self.enter()?;
            self.inner.deleted_at(id).await
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.enter()?;
            self.inner.ping().await
        })
    }
    fn upsert_delivered<'a>(
        &'a self,
        u: &'a ClerkUserData,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<Option<S::User>>, StoreError>> {
        Box::pin(async move {
            self.enter()?;
            self.upserts.fetch_add(1, Ordering::SeqCst);
            let written = self.inner.upsert_delivered(u, svix_id).await;
            self.after_upsert().await;
            written
        })
    }
    fn mark_deleted_delivered<'a>(
        &'a self,
        id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<bool>, StoreError>> {
        Box::pin(async move {
            self.enter()?;
            self.inner
                .mark_deleted_delivered(id, deleted_at, policy, svix_id)
                .await
        })
    }
    fn change_feed(&self) -> Option<Arc<dyn ChangeFeed>> {
        self.inner.change_feed()
    }
}
