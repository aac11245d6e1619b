//! Clerk's handshake for server-rendered pages: the cookie path of `authenticateRequest`
//! (`clerk/handshake.md` §2–§5), as a protocol core without actix types.
//!
//! A request is classified in two steps, because verification is the caller's (it is async and
//! cached): [`CookiePath::start`] applies every rule that needs no signature (suffixed cookies,
//! `__client_uat`, development checks, machine tokens, `iat` before `client_uat`) and either
//! decides or asks for a token to be verified; [`CookiePath::verified`] maps the verification's
//! result as `handleSessionTokenError` does. [`CookiePath::resolve`] then turns a "handshake"
//! into a 307 for eligible document requests (with the loop guard) or into "signed out" for
//! everything else.
//!
//! Left out, as handshake.md §11 allows: the refresh through `__refresh_<sfx>` (the handshake
//! refreshes too), satellites (C1–C3), cross-origin sync (C13), organization sync (C14).

mod cookies;
mod exchange;
mod payload;
mod publishable;
mod redirect;

use crate::base::error::AuthErrorReason;

pub(crate) use cookies::{CookieValues, Cookies, Unverified, HANDSHAKE_NONCE};
pub(crate) use exchange::{NonceAnswer, NonceExchanges};
pub(crate) use payload::{clear_nonce_directives, parse_directives, session_token};
pub(crate) use publishable::{InstanceType, PublishableKey};
use redirect::{clean_url, handshake_url, redirect_count_cookie, redirect_url, HandshakeParams};

/// The instance a handshake goes to.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    key: PublishableKey,
    /// Where browsers reach the Frontend API: a proxy URL, else the key's host.
    frontend_api: String,
    /// The return leg's nonce exchanges, bounded.
    nonces: std::sync::Arc<NonceExchanges>,
}

impl Instance {
    pub(crate) fn new(key: PublishableKey, proxy_url: Option<String>) -> Self {
        let frontend_api = proxy_url.unwrap_or_else(|| key.frontend_api().to_owned());
        Self {
            key,
            frontend_api,
            nonces: std::sync::Arc::default(),
        }
    }

    pub(crate) fn nonces(&self) -> &NonceExchanges {
        &self.nonces
    }

    pub(crate) fn key(&self) -> &PublishableKey {
        &self.key
    }

    pub(crate) fn is_development(&self) -> bool {
        self.key.instance() == InstanceType::Development
    }
}

/// What the cookie path reads of a request. `origin`, `path` and `query` are the URL the
/// browser sees (behind a proxy: from the forwarded headers the application trusts).
#[derive(Debug)]
pub(crate) struct DocumentRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) sec_fetch_dest: Option<&'a str>,
    pub(crate) accept: Option<&'a str>,
    pub(crate) origin: &'a str,
    pub(crate) path: &'a str,
    /// The raw query, without `?`.
    pub(crate) query: &'a str,
    /// Every `Cookie` header, joined with `; `.
    pub(crate) cookie_header: &'a str,
    /// The token of the `Authorization` header, if any (it takes priority over cookies).
    pub(crate) header_token: Option<&'a str>,
}

/// Where a token to verify came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    Header,
    Cookie,
}

/// The first step's answer.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// The request is the return leg of a handshake (C0): exchange the nonce (it wins over the
    /// legacy token) with the Backend API.
    ReturnLeg {
        nonce: Option<String>,
        token: Option<String>,
    },
    /// Verify this token, then call [`CookiePath::verified`].
    Verify { token: String, carrier: Carrier },
    /// Decided without a signature check.
    Done(Outcome),
}

/// Signed in, signed out, or "handshake" before the eligibility and loop checks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    SignedIn { token: String },
    SignedOut { reason: String },
    Handshake { reason: String },
}

impl Outcome {
    fn signed_out(reason: impl Into<String>) -> Self {
        Self::SignedOut {
            reason: reason.into(),
        }
    }

    fn handshake(reason: impl Into<String>) -> Self {
        Self::Handshake {
            reason: reason.into(),
        }
    }
}

/// What the application does with the request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Resolution {
    SignedIn {
        token: String,
    },
    SignedOut {
        reason: String,
    },
    /// Answer `307` with an empty body, `Location`, `Cache-Control: no-store` and this
    /// `Set-Cookie` (the loop counter); the handler does not run.
    Redirect {
        location: String,
        set_cookie: String,
        reason: String,
    },
}

/// One request on the cookie path (and the header path's handshake variant).
#[derive(Debug)]
pub(crate) struct CookiePath<'a> {
    instance: &'a Instance,
    request: &'a DocumentRequest<'a>,
    cookies: CookieValues,
    /// `__clerk_db_jwt`: the query parameter (non-empty) wins over the cookie.
    dev_browser: Option<String>,
    dev_browser_in_query: bool,
}

/// Clerk's reason codes of the cookie path (`AuthErrorReason` in Clerk's SDK).
pub(crate) mod reason {
    pub(crate) const DEV_BROWSER_SYNC: &str = "dev-browser-sync";
    pub(crate) const DEV_BROWSER_MISSING: &str = "dev-browser-missing";
    pub(crate) const TOKEN_AND_UAT_MISSING: &str = "session-token-and-uat-missing";
    pub(crate) const TOKEN_BUT_NO_UAT: &str = "session-token-but-no-client-uat";
    pub(crate) const UAT_BUT_NO_TOKEN: &str = "client-uat-but-no-session-token";
    pub(crate) const IAT_BEFORE_UAT: &str = "session-token-iat-before-client-uat";
    pub(crate) const NBF: &str = "session-token-nbf";
    pub(crate) const IAT_IN_THE_FUTURE: &str = "session-token-iat-in-the-future";
    pub(crate) const EXPIRED_REFRESH: &str = "session-token-expired-refresh-";
    pub(crate) const NON_ELIGIBLE_NON_GET: &str = "non-eligible-non-get";
    pub(crate) const NON_ELIGIBLE_NO_REFRESH_COOKIE: &str = "non-eligible-no-refresh-cookie";
    /// What Clerk's SDK reports when it cannot call the refresh endpoint; this crate does not
    /// refresh through `__refresh` (the handshake refreshes instead).
    pub(crate) const MISSING_API_CLIENT: &str = "missing-api-client";
    pub(crate) const TOKEN_INVALID: &str = "token-invalid";
    pub(crate) const TOKEN_TYPE_MISMATCH: &str = "token-type-mismatch";
}

impl<'a> CookiePath<'a> {
    pub(crate) fn new(
        instance: &'a Instance,
        request: &'a DocumentRequest<'a>,
        now_secs: i64,
    ) -> Self {
        let parsed = Cookies::parse(request.cookie_header);
        let cookies = CookieValues::select(&parsed, &instance.key, now_secs);
        let mut dev_browser_in_query = false;
        let mut query_dev_browser = None;
        for (name, value) in form_urlencoded::parse(request.query.as_bytes()) {
            if name == cookies::DEV_BROWSER {
                dev_browser_in_query = true;
                if query_dev_browser.is_none() && !value.is_empty() {
                    query_dev_browser = Some(value.into_owned());
                }
            }
        }
        let dev_browser = query_dev_browser.or_else(|| cookies.dev_browser.clone());
        Self {
            instance,
            request,
            cookies,
            dev_browser,
            dev_browser_in_query,
        }
    }

    fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.request.query.as_bytes())
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.into_owned())
    }

    /// Every rule before the signature check, in Clerk's order.
    pub(crate) fn start(&self) -> Step {
        if let Some(token) = self.request.header_token {
            // The header path (§3.1): cookies, nonces and dev-browser rules do not apply.
            return match Unverified::decode(token) {
                None => Step::Done(Outcome::signed_out(reason::TOKEN_INVALID)),
                Some(d) if d.is_machine() || d.has_foreign_category() => {
                    Step::Done(Outcome::signed_out(reason::TOKEN_TYPE_MISMATCH))
                }
                Some(_) => Step::Verify {
                    token: token.to_owned(),
                    carrier: Carrier::Header,
                },
            };
        }
        // C0: the return leg (query first, then cookie).
        let nonce = self
            .query_param(cookies::HANDSHAKE_NONCE)
            .or_else(|| self.cookies.handshake_nonce.clone());
        let token = self
            .query_param(cookies::HANDSHAKE_TOKEN)
            .or_else(|| self.cookies.handshake_token.clone());
        if nonce.is_some() || token.is_some() {
            return Step::ReturnLeg { nonce, token };
        }
        self.cookie_checks()
    }

    /// C4–C12 without the return leg: where a failed return leg falls through to (C0's
    /// `catch`), with the request's own cookies.
    pub(crate) fn cookie_checks(&self) -> Step {
        Step::Done(match self.precheck_cookie() {
            Ok(outcome) => outcome,
            Err(session) => {
                return Step::Verify {
                    token: session,
                    carrier: Carrier::Cookie,
                }
            }
        })
    }

    /// C4–C11: an outcome, or the session cookie to verify (C12).
    fn precheck_cookie(&self) -> Result<Outcome, String> {
        let development = self.instance.key.instance() == InstanceType::Development;
        if development && self.dev_browser_in_query {
            return Ok(Outcome::handshake(reason::DEV_BROWSER_SYNC));
        }
        if development && self.dev_browser.is_none() {
            return Ok(Outcome::handshake(reason::DEV_BROWSER_MISSING));
        }
        let uat = self.cookies.client_uat;
        let Some(session) = &self.cookies.session else {
            return Ok(if uat == 0 {
                Outcome::signed_out(reason::TOKEN_AND_UAT_MISSING)
            } else {
                Outcome::handshake(reason::UAT_BUT_NO_TOKEN)
            });
        };
        if uat == 0 {
            return Ok(Outcome::handshake(reason::TOKEN_BUT_NO_UAT));
        }
        let Some(decoded) = Unverified::decode(session) else {
            return Ok(Outcome::signed_out(reason::TOKEN_INVALID));
        };
        if decoded.is_machine() || decoded.has_foreign_category() {
            return Ok(Outcome::signed_out(reason::TOKEN_TYPE_MISMATCH));
        }
        if decoded.number("iat").is_some_and(|iat| iat < uat as f64) {
            return Ok(Outcome::handshake(reason::IAT_BEFORE_UAT));
        }
        Err(session.clone())
    }

    /// The outcome of a verified (`Ok`) or refused (`Err`) token: `handleSessionTokenError`.
    pub(crate) fn verified(&self, token: &str, result: Result<(), AuthErrorReason>) -> Outcome {
        match result {
            Ok(()) => Outcome::SignedIn {
                token: token.to_owned(),
            },
            Err(AuthErrorReason::TokenExpired) => {
                let refresh_error = if self.request.method != "GET" {
                    reason::NON_ELIGIBLE_NON_GET
                } else if !self.cookies.has_refresh {
                    reason::NON_ELIGIBLE_NO_REFRESH_COOKIE
                } else {
                    reason::MISSING_API_CLIENT
                };
                Outcome::handshake(format!("{}{refresh_error}", reason::EXPIRED_REFRESH))
            }
            Err(AuthErrorReason::TokenNotActiveYet) => Outcome::handshake(reason::NBF),
            Err(AuthErrorReason::TokenIatInTheFuture) => {
                Outcome::handshake(reason::IAT_IN_THE_FUTURE)
            }
            Err(other) => Outcome::signed_out(other.as_str()),
        }
    }

    /// Whether the request may exchange a nonce or be redirected: a document `GET` (§8). A
    /// nonce on anything else (a `fetch`, a `POST`) is not exchanged (a divergence from Clerk's
    /// SDK, which exchanges on any request: each exchange is a Backend API call).
    pub(crate) fn eligible(&self) -> bool {
        let r = self.request;
        redirect::eligible(r.method, r.sec_fetch_dest, r.accept)
    }

    /// Whether a handshake for this request would be stopped by the redirect-loop guard (an
    /// eligible request whose counter reached the limit).
    pub(crate) fn stops_loop(&self) -> bool {
        let r = self.request;
        redirect::eligible(r.method, r.sec_fetch_dest, r.accept)
            && self.cookies.redirect_count == redirect::REDIRECT_LIMIT
    }

    /// The request URL without the handshake's parameters: where a development instance's
    /// return leg redirects to.
    pub(crate) fn clean_url(&self) -> String {
        clean_url(self.request.origin, self.request.path, self.request.query)
    }

    /// `handleMaybeHandshakeStatus`: a handshake for an eligible request under the loop limit,
    /// signed out (same reason) otherwise.
    pub(crate) fn resolve(&self, outcome: Outcome) -> Resolution {
        let reason = match outcome {
            Outcome::SignedIn { token } => return Resolution::SignedIn { token },
            Outcome::SignedOut { reason } => return Resolution::SignedOut { reason },
            Outcome::Handshake { reason } => reason,
        };
        let r = self.request;
        if !redirect::eligible(r.method, r.sec_fetch_dest, r.accept)
            || self.cookies.redirect_count == redirect::REDIRECT_LIMIT
        {
            return Resolution::SignedOut { reason };
        }
        let development = self.instance.key.instance() == InstanceType::Development;
        let redirect_url = redirect_url(r.origin, r.path, r.query);
        let location = handshake_url(
            &self.instance.frontend_api,
            &HandshakeParams {
                redirect_url: &redirect_url,
                suffixed_cookies: self.cookies.suffixed,
                reason: &reason,
                session_token: self.cookies.session.as_deref().or(r.header_token),
                dev_browser: self.dev_browser.as_deref().filter(|_| development),
            },
        );
        Resolution::Redirect {
            location,
            set_cookie: redirect_count_cookie(self.cookies.redirect_count),
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
