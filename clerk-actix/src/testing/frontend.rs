//! `MockClerk`'s Frontend API for the handshake of server-rendered pages (handshake.md §6,
//! §14.2): a sign-in page that signs a browser in (its `__client` cookie), the handshake
//! endpoint that sends the browser back with a nonce, and the Backend API's exchange of that
//! nonce for `Set-Cookie` directives. Everything is plain `http` on 127.0.0.1, so the mock's
//! cookies carry no `Domain` and no `Secure`.

use std::collections::HashMap;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde_json::json;

use super::{
    state::{
        clerk_error, invalid_key, lock, random_id, Client, Endpoint, FrontendFault, MockState,
    },
    token::{unix_now, TEST_ISSUER},
};
use crate::handshake::PublishableKey;

const CLIENT_COOKIE: &str = "__client";
const DEV_BROWSER: &str = "__clerk_db_jwt";
const NONCE: &str = "__clerk_handshake_nonce";

fn cookie<'r>(req: &'r HttpRequest, name: &str) -> Option<actix_web::cookie::Cookie<'r>> {
    req.cookie(name).filter(|c| !c.value().is_empty())
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// `http(s)://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_len == 0 {
        return None;
    }
    Some(&url[..url.len() - rest.len() + host_len])
}

fn html(body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>MockClerk</title></head><body>{body}</body></html>"
        ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /v1/client/sign_in?user=user_…&redirect_url=…`: signs this browser in as `user` (a new
/// client with a `__client` cookie and `__client_uat`, linked to its dev browser if it has one) and redirects to
/// `redirect_url`. Without `user`, a page with a form that asks for one.
pub(crate) async fn sign_in(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let q = query(&req);
    let redirect_url = q.get("redirect_url").cloned().unwrap_or_default();
    if origin_of(&redirect_url).is_none() {
        return clerk_error(
            StatusCode::BAD_REQUEST,
            "form_param_missing",
            "redirect_url must be an absolute http(s) URL",
        );
    }
    let Some(user) = q.get("user").filter(|u| u.starts_with("user_")) else {
        return html(&format!(
            "<h1>MockClerk: sign in</h1><form method=\"get\">\
             <input type=\"hidden\" name=\"redirect_url\" value=\"{}\">\
             <label>User id <input id=\"user\" name=\"user\" value=\"user_demo\"></label> \
             <button id=\"sign-in\" type=\"submit\">Sign in</button></form>",
            escape(&redirect_url)
        ));
    };
    let client_id = random_id("client_");
    let uat = unix_now();
    let mut frontend = lock(&state.frontend);
    frontend.clients.insert(
        client_id.clone(),
        Client {
            user_id: Some(user.clone()),
            session_id: random_id("sess_"),
            uat,
        },
    );
    let dev_browser = q
        .get(DEV_BROWSER)
        .cloned()
        .or_else(|| cookie(&req, DEV_BROWSER).map(|c| c.value().to_owned()));
    if let Some(dvb) = dev_browser {
        if frontend.dev_browsers.contains_key(&dvb) {
            frontend.dev_browsers.insert(dvb, client_id.clone());
        }
    }
    drop(frontend);
    HttpResponse::Found()
        .insert_header((header::LOCATION, redirect_url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::SET_COOKIE,
            format!("{CLIENT_COOKIE}={client_id}; Path=/; HttpOnly; SameSite=Lax"),
        ))
        // Clerk sets `__client_uat` where the application reads it (the eTLD+1; here the same
        // host): "signed in since", which makes the application ask for a session cookie.
        .append_header((
            header::SET_COOKIE,
            format!("__client_uat={uat}; Path=/; Max-Age=31536000; SameSite=Lax"),
        ))
        .finish()
}

/// `GET /v1/client/handshake` (handshake.md §14.2).
pub(crate) async fn handshake(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    if let Some(res) = state.enter(Endpoint::ClientHandshake).await {
        return res;
    }
    let q = query(&req);
    let Some(redirect_url) = q.get("redirect_url").cloned() else {
        return clerk_error(
            StatusCode::BAD_REQUEST,
            "form_param_missing",
            "redirect_url is missing",
        );
    };
    let Some(azp) = origin_of(&redirect_url).map(str::to_owned) else {
        return clerk_error(
            StatusCode::BAD_REQUEST,
            "form_param_invalid",
            "redirect_url must be an absolute http(s) URL",
        );
    };
    let mut frontend = lock(&state.frontend);
    match frontend.fault {
        Some(FrontendFault::Status500) => {
            drop(frontend);
            return clerk_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_clerk_error",
                "Injected fault",
            );
        }
        Some(FrontendFault::NoPayload) => {
            drop(frontend);
            return back(&redirect_url, Vec::new());
        }
        _ => {}
    }
    let development = frontend.development;
    let key = PublishableKey::parse(frontend.publishable_key()).ok();
    let mut directives = Vec::new();
    // The browser: its dev browser (development), else its `__client` cookie.
    let mut client_id = None;
    if development {
        let dvb = q.get(DEV_BROWSER).filter(|d| !d.is_empty()).cloned();
        client_id = dvb
            .as_ref()
            .and_then(|d| frontend.dev_browsers.get(d).cloned());
        if dvb.is_none() || client_id.is_none() {
            let dvb = random_id("dvb_");
            client_id = cookie(&req, CLIENT_COOKIE).map(|c| c.value().to_owned());
            frontend
                .dev_browsers
                .insert(dvb.clone(), client_id.clone().unwrap_or_default());
            directives.push(format!("{DEV_BROWSER}={dvb}; Path=/; SameSite=Lax"));
        }
    } else {
        client_id = client_id.or_else(|| cookie(&req, CLIENT_COOKIE).map(|c| c.value().to_owned()));
    }
    let client = client_id.and_then(|id| frontend.clients.get(&id).cloned());
    let suffixed = q.get("suffixed_cookies").is_some_and(|v| v == "true");
    let names = |name: &str| -> Vec<String> {
        let mut names = vec![name.to_owned()];
        if let (true, Some(key)) = (suffixed, &key) {
            names.push(format!("{name}_{}", key.cookie_suffix()));
        }
        names
    };
    match client
        .as_ref()
        .and_then(|c| c.user_id.clone().map(|u| (c, u)))
    {
        Some((client, user_id)) => {
            let now = unix_now();
            let mut token = state
                .token_builder()
                .subject(&user_id)
                .session_id(&client.session_id)
                .authorized_party(&azp)
                .issuer(TEST_ISSUER)
                .v2();
            if let Some(lifetime) = frontend.session_lifetime {
                let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
                token = token.expires_at(now.saturating_add(secs));
            }
            if frontend.fault == Some(FrontendFault::ExpiredToken) {
                token = token
                    .issued_at(now - 120)
                    .not_before(now - 130)
                    .expires_at(now - 60);
            }
            let token = token.build();
            for name in names("__session") {
                directives.push(format!("{name}={token}; Path=/; SameSite=Lax"));
            }
            for name in names("__client_uat") {
                directives.push(format!(
                    "{name}={}; Path=/; Max-Age=31536000; SameSite=Lax",
                    client.uat
                ));
            }
        }
        None => {
            for name in names("__session") {
                directives.push(format!("{name}=; Path=/; Max-Age=0"));
            }
            for name in names("__client_uat") {
                directives.push(format!("{name}=0; Path=/; Max-Age=31536000; SameSite=Lax"));
            }
        }
    }
    if !development {
        directives.push(format!("{NONCE}=; Path=/; Max-Age=0"));
    }
    let nonce = random_id("");
    frontend.nonces.insert(nonce.clone(), directives);
    drop(frontend);
    if development {
        let separator = if redirect_url.contains('?') { '&' } else { '?' };
        back(
            &format!("{redirect_url}{separator}{NONCE}={nonce}"),
            Vec::new(),
        )
    } else {
        back(
            &redirect_url,
            vec![format!(
                "{NONCE}={nonce}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
            )],
        )
    }
}

fn back(location: &str, cookies: Vec<String>) -> HttpResponse {
    let mut res = HttpResponse::TemporaryRedirect();
    res.insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    for c in cookies {
        res.append_header((header::SET_COOKIE, c));
    }
    res.finish()
}

/// `GET /v1/clients/handshake_payload?nonce=…` (Backend API): the nonce's directives, once;
/// 404 for an unknown or used nonce.
pub(crate) async fn handshake_payload(
    req: HttpRequest,
    state: web::Data<MockState>,
) -> HttpResponse {
    if let Some(res) = state.enter(Endpoint::HandshakePayload).await {
        return res;
    }
    if !state.authorized(&req) {
        return invalid_key();
    }
    let nonce = query(&req).remove("nonce").unwrap_or_default();
    match lock(&state.frontend).nonces.remove(&nonce) {
        Some(directives) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json!({ "directives": directives }).to_string()),
        None => clerk_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "Handshake nonce not found",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::state::{MOCK_PUBLISHABLE_KEY_LIVE, MOCK_PUBLISHABLE_KEY_TEST};

    #[test]
    fn the_mock_keys_name_the_issuer_host() {
        let host = TEST_ISSUER.trim_start_matches("https://");
        for pk in [MOCK_PUBLISHABLE_KEY_LIVE, MOCK_PUBLISHABLE_KEY_TEST] {
            let key = PublishableKey::parse(pk).expect("a valid publishable key");
            assert_eq!(key.frontend_api(), host);
        }
    }

    #[test]
    fn origins_of_urls() {
        assert_eq!(
            origin_of("http://127.0.0.1:8082/a?b=1"),
            Some("http://127.0.0.1:8082")
        );
        assert_eq!(origin_of("https://app.test"), Some("https://app.test"));
        assert_eq!(origin_of("http:///x"), None);
        assert_eq!(origin_of("javascript:alert(1)"), None);
    }
}
