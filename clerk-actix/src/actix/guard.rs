//! Authorization guards: the runtime half of `#[clerk_protected]`. The macro turns its arguments
//! into a [`Rule`] held in a `const` of a zero-sized [`Requirement`] type and adds a
//! [`Protected<R>`] extractor as the handler's first parameter, so the check runs before any
//! other extractor (a JSON body is never read for a refused request). The rule is evaluated
//! with [`ClerkClaims::has`](crate::ClerkClaims::has): one implementation of Clerk's semantics.

use std::{marker::PhantomData, ops::Deref};

use actix_web::{dev::Payload, FromRequest, HttpMessage, HttpRequest};
use futures_util::FutureExt as _;

use crate::{
    actix::auth::find_token,
    actix::extract::{extract_with, AuthFuture, AuthState, ClerkAuth, ClerkSession, RequestAuth},
    base::claims::{ClerkClaims, Has},
    base::error::{AuthError, AuthErrorReason as Reason},
    base::events::TokenCarrier,
    machine::{MachineAuth, TokenType, TokenTypes},
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
    /// Any signed-in session, or any accepted machine token.
    Authenticated,
    /// One `has()` check on a session (a machine token has no roles, permissions, features or
    /// plans: false for one).
    Check(Has<'static>),
    /// A machine token granted this scope ([`MachineAuth::has_scope`]); false for a session.
    Scope(&'static str),
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
            Self::Scope(_) => false,
            Self::All(rules) => rules.iter().all(|r| r.evaluate(claims)),
            Self::Any(rules) => rules.iter().any(|r| r.evaluate(claims)),
        }
    }

    /// Whether a machine caller satisfies the rule.
    pub fn evaluate_machine(&self, machine: &MachineAuth) -> bool {
        match self {
            Self::Authenticated => true,
            Self::Check(_) => false,
            Self::Scope(scope) => machine.has_scope(scope),
            Self::All(rules) => rules.iter().all(|r| r.evaluate_machine(machine)),
            Self::Any(rules) => rules.iter().any(|r| r.evaluate_machine(machine)),
        }
    }

    /// Whether a session or machine caller satisfies the rule.
    pub fn evaluate_auth(&self, auth: &ClerkAuth) -> bool {
        match auth {
            ClerkAuth::Session(session) => self.evaluate(session.claims()),
            ClerkAuth::Machine(machine) => self.evaluate_machine(machine),
        }
    }
}

/// A zero-sized type naming a [`Rule`]; `#[clerk_protected]` generates one per handler.
pub trait Requirement: 'static {
    /// The rule.
    const RULE: Rule;
    /// The token types the handler accepts: sessions only unless it opts in
    /// (`#[clerk_protected(accepts_token = "api_key")]`). A machine token the middleware
    /// left as [`AuthState::NotAccepted`] is verified here when its type is in this set.
    const ACCEPTS: TokenTypes = TokenTypes::SESSION;
}

/// Extractor that admits only callers satisfying `R`: 401 when anonymous (or pending), 401
/// `token-type-mismatch` for a token of a type `R::ACCEPTS` leaves out, 403
/// `insufficient_scope` when the rule fails, all through the global error hook. Derefs to
/// the admitted [`ClerkAuth`] (a session unless the handler accepts machine tokens).
pub struct Protected<R: Requirement> {
    auth: ClerkAuth,
    _rule: PhantomData<fn() -> R>,
}

impl<R: Requirement> std::fmt::Debug for Protected<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protected")
            .field("rule", &R::RULE)
            .field("accepts", &R::ACCEPTS)
            .field("auth", &self.auth)
            .finish()
    }
}

impl<R: Requirement> Protected<R> {
    /// The admitted session, when the caller is one.
    pub fn session(&self) -> Option<&ClerkSession> {
        match &self.auth {
            ClerkAuth::Session(session) => Some(session),
            ClerkAuth::Machine(_) => None,
        }
    }

    /// The admitted machine caller, when the caller is one.
    pub fn machine(&self) -> Option<&MachineAuth> {
        match &self.auth {
            ClerkAuth::Machine(machine) => Some(machine),
            ClerkAuth::Session(_) => None,
        }
    }

    /// The admitted caller.
    pub fn into_inner(self) -> ClerkAuth {
        self.auth
    }
}

impl<R: Requirement> Deref for Protected<R> {
    type Target = ClerkAuth;
    fn deref(&self) -> &ClerkAuth {
        &self.auth
    }
}

/// The caller `state` holds, if `accepts` takes it; else the error to answer with.
fn admit(state: &AuthState, accepts: TokenTypes) -> Result<ClerkAuth, AuthError> {
    let auth = state.require_any()?;
    let token_type = match &auth {
        ClerkAuth::Session(_) => TokenType::SessionToken,
        ClerkAuth::Machine(machine) => machine.token_type(),
    };
    if !accepts.accepts(token_type) {
        return Err(match &auth {
            ClerkAuth::Session(_) => AuthError::new(
                Reason::TokenTypeMismatch,
                "this route accepts machine tokens, not session tokens",
            ),
            ClerkAuth::Machine(_) => AuthError::new(
                Reason::TokenTypeMismatch,
                "this route does not accept this type of machine token",
            ),
        });
    }
    Ok(auth)
}

fn check<R: Requirement>(auth: ClerkAuth) -> Result<Protected<R>, AuthError> {
    if R::RULE.evaluate_auth(&auth) {
        Ok(Protected {
            auth,
            _rule: PhantomData,
        })
    } else {
        Err(AuthError::new(
            Reason::InsufficientScope,
            match auth {
                ClerkAuth::Session(_) => {
                    "the session lacks a required role, permission, feature or plan"
                }
                ClerkAuth::Machine(_) => "the machine token lacks a required scope",
            },
        ))
    }
}

impl<R: Requirement> FromRequest for Protected<R> {
    type Error = actix_web::Error;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if R::ACCEPTS.accepts_machines() {
            defer_to(req, R::ACCEPTS);
        }
        extract_with(req, |auth| check(admit(&auth.state, R::ACCEPTS)?))
    }
}

/// A token the middleware deferred ([`AuthState::NotAccepted`]), on a handler that takes
/// `accepts`: starts its verification with the handler's set, for every extractor of the
/// request to wait on (the guard runs first: it is the handler's first parameter).
fn defer_to(req: &HttpRequest, accepts: TokenTypes) {
    let mut extensions = req.extensions_mut();
    let Some(auth) = extensions.get_mut::<RequestAuth>() else {
        return;
    };
    if auth.resolving.is_some() || !matches!(auth.state, AuthState::NotAccepted(_)) {
        return;
    }
    // Deferred tokens come from the Authorization header only.
    let token = match find_token(req, false) {
        Ok(Some((token, _))) => token.as_str().to_owned(),
        _ => return,
    };
    let clerk = auth.clerk.clone();
    let client = clerk.client_addr(req);
    let verify = async move {
        clerk
            .token_state(&token, TokenCarrier::Header, accepts, false, client)
            .await
    };
    auth.resolving = Some(verify.boxed_local().shared());
}
