//! The return leg's payload (handshake.md §7): the `Set-Cookie` directives the Backend API
//! hands over for a nonce, and the session token they carry.

use serde::Deserialize;

use super::cookies::{HANDSHAKE_NONCE, SESSION};

/// `GET /v1/clients/handshake_payload?nonce=…` answers `{"directives": ["<Set-Cookie>", …]}`.
#[derive(Debug, Deserialize)]
struct HandshakePayload {
    directives: Vec<String>,
}

/// The directives of a payload body; `None` when it is not Clerk's shape.
pub(crate) fn parse_directives(body: &[u8]) -> Option<Vec<String>> {
    serde_json::from_slice::<HandshakePayload>(body)
        .ok()
        .map(|p| p.directives)
}

/// The session token the directives set: the value of the **last** directive whose name starts
/// with `__session` (so `__session_<suffix>` counts), the text between its first and second `=`
/// (`getCookiesFromHandshake`). Empty when none sets one, or the last one clears it.
pub(crate) fn session_token(directives: &[String]) -> &str {
    let mut token = "";
    for directive in directives {
        let pair = directive.split(';').next().unwrap_or("");
        let mut parts = pair.split('=');
        let name = parts.next().unwrap_or("");
        if name.starts_with(SESSION) {
            token = parts.next().unwrap_or("");
        }
    }
    token
}

/// Directives that clear a stale `__clerk_handshake_nonce` cookie, host-only and on the domain
/// the Frontend API sets it on (its host minus the first label). Clerk's SDK leaves such a
/// cookie in place when the exchange fails, so every request would exchange it again and stay
/// signed out; clearing it is a safe divergence (handshake.md §11, SHOULD).
pub(crate) fn clear_nonce_directives(frontend_api_host: &str) -> Vec<String> {
    let mut directives = vec![format!("{HANDSHAKE_NONCE}=; Path=/; Max-Age=0")];
    if let Some((_, parent)) = frontend_api_host.split_once('.') {
        if parent.contains('.') {
            directives.push(format!(
                "{HANDSHAKE_NONCE}=; Path=/; Domain={parent}; Max-Age=0"
            ));
        }
    }
    directives
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_last_session_directive_wins() {
        let d = owned(&[
            "__session=old.jwt.x; Path=/",
            "__client_uat=123; Path=/; Domain=example.com",
            "__session_mygDvuFt=new.jwt.y; Path=/; SameSite=Lax",
        ]);
        assert_eq!(session_token(&d), "new.jwt.y");
        let cleared = owned(&["__session=a.b.c; Path=/", "__session=; Path=/; Max-Age=0"]);
        assert_eq!(session_token(&cleared), "");
        assert_eq!(session_token(&owned(&["__client_uat=0"])), "");
        assert_eq!(session_token(&owned(&["__session"])), "");
    }

    #[test]
    fn payloads_parse_or_are_refused() {
        assert_eq!(
            parse_directives(br#"{"directives":["a=1","b=2"],"extra":1}"#),
            Some(owned(&["a=1", "b=2"]))
        );
        assert_eq!(parse_directives(br#"{"directives":"a=1"}"#), None);
        assert_eq!(parse_directives(b"not json"), None);
        assert_eq!(parse_directives(br#"{}"#), None);
    }

    #[test]
    fn nonce_clearing_covers_the_frontend_api_domain() {
        assert_eq!(
            clear_nonce_directives("clerk.example.com"),
            owned(&[
                "__clerk_handshake_nonce=; Path=/; Max-Age=0",
                "__clerk_handshake_nonce=; Path=/; Domain=example.com; Max-Age=0"
            ])
        );
        assert_eq!(clear_nonce_directives("localhost").len(), 1);
        assert_eq!(clear_nonce_directives("clerk.test").len(), 1);
    }
}
