//! A real PgBouncer (Debian's `pgbouncer` package) in front of the CI PostgreSQL, in transaction
//! mode with a small server pool: what managed services' "pooled" connection strings reach.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running PgBouncer, stopped (and its directory removed) when dropped.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    /// Its loopback port.
    pub port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode with `pool_size` server connections per database,
    /// forwarding every database to 127.0.0.1:5432 as `postgres`. Panics (the test fails) if
    /// the `pgbouncer` binary is missing: `.ci/run` installs it.
    pub fn start(pool_size: u32) -> Self {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("PgBouncer is needed by this test: apt-get install pgbouncer (.ci/run does)")
            });
        let mut last_log = String::new();
        // A port can be taken between choosing it and PgBouncer's bind: then another one.
        for _ in 0..5 {
            let port = crate::process::free_port();
            let dir = std::env::temp_dir().join(format!(
                "clerk-actix-pgbouncer-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("pgbouncer dir");
            // PgBouncer refuses to run as root; as root it is started with `-u postgres`, which
            // must be able to write its log here.
            set_mode(&dir, 0o777);
            let log = dir.join("pgbouncer.log");
            let ini = dir.join("pgbouncer.ini");
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n\
                     * = host=127.0.0.1 port=5432 user=postgres\n\
                     [pgbouncer]\n\
                     listen_addr = 127.0.0.1\n\
                     listen_port = {port}\n\
                     unix_socket_dir =\n\
                     auth_type = any\n\
                     pool_mode = transaction\n\
                     default_pool_size = {pool_size}\n\
                     max_client_conn = 500\n\
                     ignore_startup_parameters = extra_float_digits,options\n\
                     logfile = {}\n",
                    log.display()
                ),
            )
            .expect("pgbouncer.ini");
            set_mode(&ini, 0o644);
            let mut command = Command::new(binary);
            if is_root() {
                command.args(["-u", "postgres"]);
            }
            let child = command
                .arg(&ini)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start pgbouncer");
            let mut bouncer = Self { child, dir, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return bouncer;
                }
                if let Ok(Some(_)) = bouncer.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_log =
                std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default();
        }
        panic!("PgBouncer did not start: {last_log}");
    }

    /// `postgres://` to database `name` through PgBouncer, saying so (`pgbouncer=true`).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable&pgbouncer=true",
            self.port
        )
    }

    /// The same, without `pgbouncer=true`: what a user who did not read the docs passes.
    pub fn url_unflagged(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
