//! How an [`AuthError`] answers over HTTP (actix): the status of each kind, the RFC 6750
//! `WWW-Authenticate` challenge, `Retry-After`, and the small JSON body. Apart from the error
//! types themselves (`error`), which carry no HTTP types.

use std::sync::Arc;

use actix_web::{
    http::{
        header::{self, HeaderValue},
        StatusCode,
    },
    HttpRequest, HttpResponse, ResponseError,
};

use crate::{
    base::error::{AuthError, AuthErrorKind},
    config::{Clerk, ClerkBuilder},
};

/// The global error hook ([`ClerkBuilder::error_response`]). The handle keeps it as `dyn Any`
/// (the composition layer names no actix type); this is its one concrete type.
type ErrorHook = Box<dyn Fn(&AuthError, &HttpRequest) -> HttpResponse + Send + Sync>;

impl ClerkBuilder {
    /// Replaces the response for every authentication error (401, 403, 503, 500), globally.
    pub fn error_response(
        mut self,
        hook: impl Fn(&AuthError, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        let hook: ErrorHook = Box::new(hook);
        self.error_hook = Some(Arc::new(hook));
        self
    }
}

impl Clerk {
    /// The response for an authentication error: the global hook if one is set, otherwise
    /// [`AuthError::response`] (the `fix` of a misconfiguration only with
    /// [`ClerkBuilder::expose_error_details`]). Server-side failures (5xx) are logged with
    /// their detail, within the log budget.
    pub fn error_response(&self, err: &AuthError, req: &HttpRequest) -> HttpResponse {
        if err.status().is_server_error() {
            self.inner
                .events
                .log_server_error(err.reason().as_str(), err.detail());
        }
        let hook = self.inner.http.error_hook.as_ref();
        match hook.and_then(|hook| hook.downcast_ref::<ErrorHook>()) {
            Some(hook) => hook(err, req),
            None => err.response(self.inner.http.expose_error_details),
        }
    }
}

impl AuthErrorKind {
    /// The HTTP status of this kind.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl AuthError {
    /// The HTTP status this error maps to.
    pub const fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The RFC 6750 `WWW-Authenticate` challenge for this error, if it has one.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        let value = match self.kind() {
            AuthErrorKind::Unauthenticated => "Bearer".to_owned(),
            AuthErrorKind::InvalidToken => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.reason().as_str()
            ),
            AuthErrorKind::Forbidden => "Bearer error=\"insufficient_scope\"".to_owned(),
            AuthErrorKind::Unavailable | AuthErrorKind::Misconfigured => return None,
        };
        HeaderValue::from_str(&value).ok()
    }

    /// The short machine-readable error class used in the JSON body.
    pub const fn error_code(&self) -> &'static str {
        match self.kind() {
            AuthErrorKind::Unauthenticated => "unauthenticated",
            AuthErrorKind::InvalidToken => "invalid_token",
            AuthErrorKind::Forbidden => "insufficient_scope",
            AuthErrorKind::Unavailable => "temporarily_unavailable",
            AuthErrorKind::Misconfigured => "server_misconfigured",
        }
    }

    /// The default response: status, challenge, `Retry-After`, and a small JSON body
    /// `{"error": "...", "reason": "..."}`; debug builds add a `fix` for server
    /// misconfiguration (release builds keep it in the logs: see [`response`](Self::response)).
    pub fn default_response(&self) -> HttpResponse {
        self.response(cfg!(debug_assertions))
    }

    /// The response, with the `fix` for server misconfiguration in the body only when
    /// `with_fix` is true. The fix describes the server's configuration: show it to
    /// developers, not to callers of a production service.
    pub fn response(&self, with_fix: bool) -> HttpResponse {
        let mut res = HttpResponse::build(self.status());
        if let Some(challenge) = self.www_authenticate() {
            res.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let Some(after) = self.retry_after() {
            res.insert_header((header::RETRY_AFTER, after.as_secs().max(1).to_string()));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        let mut body = serde_json::json!({
            "error": self.error_code(),
            "reason": self.reason().as_str(),
        });
        if with_fix && self.kind() == AuthErrorKind::Misconfigured {
            body["fix"] = serde_json::Value::from(self.detail());
        }
        res.json(body)
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.default_response()
    }
}
