//! A TCP proxy in front of the local PostgreSQL that a test can take down and bring back (every
//! connection cut, new ones refused: what a client sees of a server restart), optionally
//! terminating TLS with a certificate of the test's own (it then refuses clients that do not
//! ask for TLS), or deaf: it drops every notification (`NotificationResponse`) the server sends,
//! as a transaction-mode pooler does to a `LISTEN`ing client.

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc, Mutex,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The proxied server.
const UPSTREAM: &str = "127.0.0.1:5432";

#[derive(Default, Debug)]
struct Shared {
    down: AtomicBool,
    sessions: AtomicUsize,
    plaintext: AtomicUsize,
    refused: AtomicUsize,
    dropped: AtomicUsize,
    live: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// A running proxy (it lives as long as the test's runtime).
#[derive(Clone, Debug)]
pub struct PgProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

impl PgProxy {
    /// A plain TCP proxy.
    pub async fn plain() -> Self {
        Self::start(None).await
    }

    /// A plain proxy that never delivers a notification (and declines TLS).
    pub async fn deaf() -> Self {
        Self::start_as(Mode::Deaf).await
    }

    /// Notifications the deaf proxy dropped.
    pub fn notifications_dropped(&self) -> usize {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// A TLS-terminating proxy presenting `cert`.
    pub async fn tls(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate");
        Self::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        Self::start_as(match tls {
            Some(acceptor) => Mode::Tls(acceptor),
            None => Mode::Plain,
        })
        .await
    }

    async fn start_as(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.down.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(serve(client, mode.clone(), Arc::clone(&s)));
                let mut live = s.live.lock().unwrap_or_else(|e| e.into_inner());
                live.retain(|t| !t.is_finished());
                live.push(task.abort_handle());
            }
        });
        Self { port, shared }
    }

    /// Cuts every connection and refuses new ones until [`up`](Self::up).
    pub fn down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for task in self
            .shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// Accepts connections again.
    pub fn up(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// TLS sessions established so far.
    pub fn tls_sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::SeqCst)
    }

    /// Clients of a TLS proxy that did not ask for TLS (refused).
    pub fn plaintext_refused(&self) -> usize {
        self.shared.plaintext.load(Ordering::SeqCst)
    }

    /// Connections refused while down.
    pub fn refused_while_down(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// `database`'s URL through this proxy, at `host` (`localhost` or `127.0.0.1`), with the
    /// query string `params` (may be empty).
    pub fn url(&self, host: &str, database: &str, params: &str) -> String {
        let sep = if params.is_empty() { "" } else { "?" };
        format!(
            "postgres://postgres@{host}:{}/{database}{sep}{params}",
            self.port
        )
    }
}

/// What the proxy does with a connection.
#[derive(Clone)]
enum Mode {
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
    Deaf,
}

/// Forwards the server's messages to the client, except notifications (type `A`).
async fn without_notifications(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 5];
        from.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        from.read_exact(&mut body).await?;
        if head[0] == b'A' {
            shared.dropped.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        // One write per message (with TCP_NODELAY below): no Nagle delay on small messages.
        let mut message = Vec::with_capacity(5 + body.len());
        message.extend_from_slice(&head);
        message.extend_from_slice(&body);
        to.write_all(&message).await?;
    }
}

async fn serve(mut client: tokio::net::TcpStream, mode: Mode, shared: Arc<Shared>) {
    let Ok(mut upstream) = tokio::net::TcpStream::connect(UPSTREAM).await else {
        return;
    };
    let acceptor = match mode {
        Mode::Plain => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
        Mode::Deaf => {
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            // TLS declined, so the server's messages can be read; the startup message (or
            // the SSLRequest, answered here) goes through as it came.
            let mut head = [0u8; 8];
            if client.read_exact(&mut head).await.is_err() {
                return;
            }
            if head == SSL_REQUEST {
                if client.write_all(b"N").await.is_err() {
                    return;
                }
            } else if upstream.write_all(&head).await.is_err() {
                return;
            }
            let (client_read, client_write) = client.into_split();
            let (upstream_read, mut upstream_write) = upstream.into_split();
            let mut client_read = client_read;
            let up = async move {
                let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
            };
            let down = without_notifications(upstream_read, client_write, shared);
            tokio::select! {
                () = up => {}
                _ = down => {}
            }
            return;
        }
        Mode::Tls(acceptor) => acceptor,
    };
    let mut head = [0u8; 8];
    if client.read_exact(&mut head).await.is_err() {
        return;
    }
    if head != SSL_REQUEST {
        shared.plaintext.fetch_add(1, Ordering::SeqCst);
        return; // dropped: this server speaks only TLS
    }
    if client.write_all(b"S").await.is_err() {
        return;
    }
    let Ok(mut tls) = acceptor.accept(client).await else {
        return; // the client refused the certificate
    };
    shared.sessions.fetch_add(1, Ordering::SeqCst);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
}
