//! Authorization guards: the runtime half of `#[clerk_protected]`. The macro turns its arguments
//! into a [`Rule`] held in a `const` of a zero-sized [`Requirement`] type and adds a
//! [`Protected<R>`] extractor as the handler's first parameter, so the check runs before any
//! other extractor (a JSON body is never read for a refused request). The rule is evaluated
//! with [`ClerkClaims::has`](crate::ClerkClaims::has): one implementation of Clerk's semantics.

use std::{
    future::{ready, Ready},
    marker::PhantomData,
    ops::Deref,
};

use actix_web::{dev::Payload, FromRequest, HttpRequest};

use crate::{
    claims::{ClerkClaims, Has},
    error::{AuthError, AuthErrorReason as Reason},
    extract::{with_auth, ClerkSession},
};

/// An authorization rule, built in `const` context (no allocation per request).
///
/// ```
/// use clerk_actix::{guard::Rule, Has};
/// const ADMIN_OR_BILLING: Rule = Rule::Any(&[
///     Rule::Check(Has::role("org:admin")),
///     Rule::Check(Has::permission("org:billing:manage")),
/// ]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any signed-in session.
    Authenticated,
    /// One `has()` check.
    Check(Has<'static>),
    /// Every rule holds.
    All(&'static [Rule]),
    /// At least one rule holds (`Any(&[])` never does).
    Any(&'static [Rule]),
}

impl Rule {
    /// Whether the session's claims satisfy the rule.
    pub fn evaluate(&self, claims: &ClerkClaims) -> bool {
        match self {
            Self::Authenticated => !claims.user_id().is_empty(),
            Self::Check(has) => claims.has(*has),
            Self::All(rules) => rules.iter().all(|r| r.evaluate(claims)),
            Self::Any(rules) => rules.iter().any(|r| r.evaluate(claims)),
        }
    }
}

/// A zero-sized type naming a [`Rule`]; `#[clerk_protected]` generates one per handler.
pub trait Requirement: 'static {
    /// The rule.
    const RULE: Rule;
}

/// Extractor that admits only sessions satisfying `R`: 401 when anonymous (or pending), 403
/// `insufficient_scope` when the rule fails, both through the global error hook. Derefs to
/// the [`ClerkSession`].
pub struct Protected<R: Requirement> {
    session: ClerkSession,
    _rule: PhantomData<fn() -> R>,
}

impl<R: Requirement> std::fmt::Debug for Protected<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protected")
            .field("rule", &R::RULE)
            .field("user_id", &self.session.user_id())
            .finish()
    }
}

impl<R: Requirement> Protected<R> {
    /// The admitted session.
    pub fn session(&self) -> &ClerkSession {
        &self.session
    }
}

impl<R: Requirement> Deref for Protected<R> {
    type Target = ClerkSession;
    fn deref(&self) -> &ClerkSession {
        &self.session
    }
}

impl<R: Requirement> FromRequest for Protected<R> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = with_auth(req, |auth| {
            let session = auth.state.require_session()?;
            if R::RULE.evaluate(session.claims()) {
                Ok(session.clone())
            } else {
                Err(AuthError::new(
                    Reason::InsufficientScope,
                    "the session lacks a required role, permission, feature or plan",
                ))
            }
        });
        ready(outcome.map(|session| Protected {
            session,
            _rule: PhantomData,
        }))
    }
}
