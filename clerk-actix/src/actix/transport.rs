//! The Backend API's transport: one `awc::Client` for the process (one connection pool, one TLS
//! session cache) on a thread of its own with its own actix runtime, because awc is `!Send`.
//! Callers hand it requests over a channel, so every public async API of this crate returns a
//! `Send` future and works on any tokio runtime (`tokio::spawn`, background jobs), not only
//! inside actix. Timeouts are per request.
//!
//! A leaf: it imports nothing from the crate. The core's client (`base::api`) calls it as it
//! would an HTTP crate and reads the answer (status, `Retry-After`, body) itself.

use std::{sync::OnceLock, time::Duration};

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::{mpsc, oneshot};

const USER_AGENT: &str = concat!("clerk-actix/", env!("CARGO_PKG_VERSION"));

/// One request: `GET url`, or `POST url` with a JSON body.
pub(crate) struct Request {
    pub(crate) url: String,
    pub(crate) json: Option<Bytes>,
    /// The bearer credential (the secret key); never logged.
    pub(crate) bearer: String,
    /// The `Clerk-API-Version` header.
    pub(crate) api_version: &'static str,
    pub(crate) timeout: Duration,
    /// The largest body read; a longer one is a failure.
    pub(crate) max_body: usize,
}

/// What came back. On 429 the body is not read.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Bytes,
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Reply, &'static str>>,
}

/// Sends one request on the client thread. `Err` names what failed (timeout, connect error, the
/// thread not running, ...). Dropping the future abandons the answer, not the request.
pub(crate) async fn send(request: Request) -> Result<Reply, &'static str> {
    const STOPPED: &str = "the HTTP client thread is not running";
    let (reply, answer) = oneshot::channel();
    client_thread()
        .ok_or(STOPPED)?
        .send(Job { request, reply })
        .map_err(|_| STOPPED)?;
    answer.await.map_err(|_| STOPPED)?
}

/// The client thread's queue, started on first use; `None` if the thread could not be started.
fn client_thread() -> Option<&'static mpsc::UnboundedSender<Job>> {
    static TRANSPORT: OnceLock<Option<mpsc::UnboundedSender<Job>>> = OnceLock::new();
    TRANSPORT
        .get_or_init(|| {
            let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
            std::thread::Builder::new()
                .name("clerk-actix-http".into())
                .spawn(move || {
                    actix_web::rt::System::new().block_on(async move {
                        let client = build_client();
                        while let Some(job) = queue.recv().await {
                            let client = client.clone();
                            actix_web::rt::spawn(async move {
                                let result = perform(&client, &job.request).await;
                                // The caller may have given up (its request was cancelled).
                                let _ = job.reply.send(result);
                            });
                        }
                    });
                })
                .ok()
                .map(|_| jobs)
        })
        .as_ref()
}

fn build_client() -> awc::Client {
    #[cfg(feature = "rustls")]
    {
        // rustls needs a process-wide crypto provider; install aws-lc-rs (already linked for
        // RSA verification) unless the application installed one itself.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    awc::Client::builder()
        // Per request (`Request::timeout`); this only bounds a request that sets none.
        .timeout(Duration::from_secs(30))
        .disable_redirects()
        .add_default_header((actix_web::http::header::USER_AGENT, USER_AGENT))
        .finish()
}

/// One `GET` (or `POST` with a JSON body) on the client thread.
async fn perform(client: &awc::Client, job: &Request) -> Result<Reply, &'static str> {
    let request = match &job.json {
        None => client.get(&job.url),
        Some(_) => client
            .post(&job.url)
            .insert_header((actix_web::http::header::CONTENT_TYPE, "application/json")),
    }
    .timeout(job.timeout)
    .bearer_auth(&job.bearer)
    .insert_header(("Clerk-API-Version", job.api_version));
    let sent = match &job.json {
        None => request.send().await,
        Some(body) => request.send_body(body.clone()).await,
    };
    let mut res = sent.map_err(|e| match e {
        awc::error::SendRequestError::Timeout => "timeout",
        awc::error::SendRequestError::Connect(_) => "connect error",
        _ => "request failed",
    })?;
    let status = res.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Not worth reading the body of.
        let retry_after = res
            .headers()
            .get(actix_web::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        return Ok(Reply {
            status,
            retry_after,
            body: Bytes::new(),
        });
    }
    let body = res
        .body()
        .limit(job.max_body)
        .await
        .map_err(|_| "body read failed")?;
    Ok(Reply {
        status,
        retry_after: None,
        body,
    })
}
