//! Which cookies the cookie path reads (handshake.md §2.3): the `Cookie` header parsed as
//! Clerk's SDK parses it, and the choice between the suffixed (`__session_<sfx>`) and the
//! un-suffixed (`__session`) pair, `usesSuffixedCookies()` rule by rule.

use std::borrow::Cow;

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use serde_json::{Map, Value};

use super::publishable::{InstanceType, PublishableKey};

pub(crate) const SESSION: &str = "__session";
pub(crate) const CLIENT_UAT: &str = "__client_uat";
pub(crate) const REFRESH: &str = "__refresh";
pub(crate) const DEV_BROWSER: &str = "__clerk_db_jwt";
pub(crate) const HANDSHAKE_TOKEN: &str = "__clerk_handshake";
pub(crate) const HANDSHAKE_NONCE: &str = "__clerk_handshake_nonce";
pub(crate) const REDIRECT_COUNT: &str = "__clerk_redirect_count";

/// The request's cookies, as `cookie@1`'s `parse` reads them: pairs split on `;`, names and
/// values trimmed of spaces and tabs, values percent-decoded when that succeeds, and the
/// **first** occurrence of a name wins.
#[derive(Debug, Default)]
pub(crate) struct Cookies<'a> {
    pairs: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Cookies<'a> {
    pub(crate) fn parse(header: &'a str) -> Self {
        let mut pairs: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
        for pair in header.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let name = trim(name);
            if pairs.iter().any(|(n, _)| *n == name) {
                continue;
            }
            pairs.push((name, decode_uri_component(trim(value))));
        }
        Self { pairs }
    }

    /// The value of the first cookie called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// JavaScript's `decodeURIComponent`, falling back to the raw value where it would throw
/// (a `%` not followed by two hex digits, or bytes that are not UTF-8).
fn decode_uri_component(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => {
                    out.push(b);
                    i += 3;
                }
                _ => return Cow::Borrowed(s),
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(s), Cow::Owned)
}

/// A JWT decoded without verification, as `decodeJwt` does: three `.`-separated base64url parts
/// (padding optional), header and payload JSON objects.
#[derive(Debug)]
pub(crate) struct Unverified {
    pub(crate) header: Map<String, Value>,
    pub(crate) payload: Map<String, Value>,
}

const BASE64URL_LOOSE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

impl Unverified {
    pub(crate) fn decode(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let object = |part: &str| -> Option<Map<String, Value>> {
            let bytes = BASE64URL_LOOSE.decode(part).ok()?;
            match serde_json::from_slice(&bytes).ok()? {
                Value::Object(map) => Some(map),
                _ => None,
            }
        };
        BASE64URL_LOOSE.decode(signature).ok()?;
        Some(Self {
            header: object(header)?,
            payload: object(payload)?,
        })
    }

    /// A number claim, e.g. `iat`.
    pub(crate) fn number(&self, claim: &str) -> Option<f64> {
        self.payload.get(claim).and_then(Value::as_f64)
    }

    /// An OAuth access token (`typ` `at+jwt`) or an M2M token (`sub` `mch_…`).
    pub(crate) fn is_machine(&self) -> bool {
        let typ = self.header.get("typ").and_then(Value::as_str);
        let sub = self.payload.get("sub").and_then(Value::as_str);
        matches!(typ, Some("at+jwt" | "application/at+jwt"))
            || sub.is_some_and(|s| s.starts_with("mch_"))
    }

    /// A `cat` header other than a session token's (or the "ignore" category).
    pub(crate) fn has_foreign_category(&self) -> bool {
        match self.header.get("cat") {
            None => false,
            Some(Value::String(cat)) => !matches!(cat.as_str(), SESSION_CATEGORY | IGNORE_CATEGORY),
            Some(_) => true,
        }
    }
}

const SESSION_CATEGORY: &str = "cl_B7d4PD111AAA";
const IGNORE_CATEGORY: &str = "cl_I7d4PD111III";

/// JavaScript's `parseInt(s) || 0`: leading whitespace, a sign, then digits (hex after `0x`),
/// up to the first other character; nothing parsable is 0.
pub(crate) fn parse_int(s: &str) -> i64 {
    let s = s.trim_start();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = match s.get(..2) {
        Some("0x" | "0X") => (16, &s[2..]),
        _ => (10, s),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let value = digits[..end].chars().fold(0i64, |acc, c| {
        let d = i64::from(c.to_digit(radix).unwrap_or(0));
        acc.saturating_mul(i64::from(radix)).saturating_add(d)
    });
    if negative {
        -value
    } else {
        value
    }
}

/// JavaScript's `Number(s) || 0` for the redirect counter (decimal, surrounding whitespace
/// allowed, an empty string is 0).
pub(crate) fn parse_number(s: &str) -> f64 {
    let t = s.trim();
    let n = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).map_or(f64::NAN, |v| v as f64)
    } else if t.is_empty() {
        0.0
    } else if t
        .bytes()
        .all(|b| b.is_ascii_digit() || b".+-eE".contains(&b))
    {
        t.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    if n.is_nan() {
        0.0
    } else {
        n
    }
}

/// The cookie values the cookie path works with, after the suffixed/un-suffixed choice.
#[derive(Debug)]
pub(crate) struct CookieValues {
    /// `usesSuffixedCookies()`: also sent to the Frontend API as `suffixed_cookies`.
    pub(crate) suffixed: bool,
    /// The selected session cookie, if present and non-empty.
    pub(crate) session: Option<String>,
    /// `parseInt(<selected __client_uat>) || 0`.
    pub(crate) client_uat: i64,
    /// `__refresh_<sfx>` (only the suffixed name is ever read).
    pub(crate) has_refresh: bool,
    /// The selected `__clerk_db_jwt` cookie (the query parameter wins over it; see the caller).
    pub(crate) dev_browser: Option<String>,
    pub(crate) handshake_nonce: Option<String>,
    pub(crate) handshake_token: Option<String>,
    /// `Number(__clerk_redirect_count) || 0`.
    pub(crate) redirect_count: f64,
}

impl CookieValues {
    pub(crate) fn select(cookies: &Cookies<'_>, pk: &PublishableKey, now_secs: i64) -> Self {
        let suffixed_name = |name: &str| format!("{name}_{}", pk.cookie_suffix());
        let suffixed = uses_suffixed_cookies(cookies, pk, now_secs);
        let pick = |name: &str| -> Option<String> {
            let value = if suffixed {
                cookies.get(&suffixed_name(name))
            } else {
                cookies.get(name)
            };
            value.filter(|v| !v.is_empty()).map(str::to_owned)
        };
        let non_empty = |name: &str| {
            cookies
                .get(name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Self {
            suffixed,
            session: pick(SESSION),
            client_uat: pick(CLIENT_UAT).map_or(0, |v| parse_int(&v)),
            has_refresh: cookies
                .get(&suffixed_name(REFRESH))
                .is_some_and(|v| !v.is_empty()),
            dev_browser: pick(DEV_BROWSER),
            handshake_nonce: non_empty(HANDSHAKE_NONCE),
            handshake_token: non_empty(HANDSHAKE_TOKEN),
            redirect_count: cookies.get(REDIRECT_COUNT).map_or(0.0, parse_number),
        }
    }
}

/// `usesSuffixedCookies()` (handshake.md §2.3), rule by rule.
pub(crate) fn uses_suffixed_cookies(
    cookies: &Cookies<'_>,
    pk: &PublishableKey,
    now_secs: i64,
) -> bool {
    let sfx = pk.cookie_suffix();
    let suffixed_uat = cookies.get(&format!("{CLIENT_UAT}_{sfx}"));
    let uat = cookies.get(CLIENT_UAT);
    let suffixed_session = cookies
        .get(&format!("{SESSION}_{sfx}"))
        .filter(|s| !s.is_empty());
    let session = cookies.get(SESSION).filter(|s| !s.is_empty());
    let decoded = session.and_then(Unverified::decode);
    if let Some(_session) = session {
        // 1. An un-suffixed token without an issuer: the un-suffixed pair.
        let Some(iss) = decoded
            .as_ref()
            .and_then(|d| d.payload.get("iss"))
            .filter(|iss| truthy(iss))
        else {
            return false;
        };
        // 2. An un-suffixed token of another instance: the suffixed pair.
        let belongs = iss
            .as_str()
            .is_some_and(|iss| strip_schemes(iss) == pk.frontend_api());
        if !belongs {
            return true;
        }
    }
    // 3. No suffixed cookie at all.
    if suffixed_uat.is_none_or(str::is_empty) && suffixed_session.is_none() {
        return false;
    }
    let iat = |d: Option<&Unverified>| d.and_then(|d| d.number("iat")).unwrap_or(0.0);
    let suffixed_decoded = suffixed_session.and_then(Unverified::decode);
    let not_zero = |v: Option<&str>| v != Some("0");
    // 4. Both pairs signed in and the un-suffixed token is newer.
    if not_zero(suffixed_uat)
        && not_zero(uat)
        && iat(decoded.as_ref()) > iat(suffixed_decoded.as_ref())
    {
        return false;
    }
    // 5. The suffixed pair is signed out, the un-suffixed one is not.
    if suffixed_uat == Some("0") && not_zero(uat) {
        return false;
    }
    // 6. Development: the suffixed session expired while the un-suffixed pair is signed out.
    if pk.instance() != InstanceType::Production {
        let expired = suffixed_decoded
            .as_ref()
            .and_then(|d| d.number("exp"))
            .is_some_and(|exp| exp <= now_secs as f64);
        if not_zero(suffixed_uat) && uat == Some("0") && expired {
            return false;
        }
    }
    // 7. A suffixed session without a suffixed client_uat.
    if suffixed_uat.is_none_or(str::is_empty) && suffixed_session.is_some() {
        return false;
    }
    // 8.
    true
}

/// JavaScript truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `iss.replace(/https?:\/\//gi, "")`.
fn strip_schemes(iss: &str) -> String {
    let mut out = String::with_capacity(iss.len());
    let mut rest = iss;
    while !rest.is_empty() {
        let lower = rest.get(..8).map(str::to_ascii_lowercase);
        let lower7 = rest.get(..7).map(str::to_ascii_lowercase);
        if lower.as_deref() == Some("https://") {
            rest = &rest[8..];
        } else if lower7.as_deref() == Some("http://") {
            rest = &rest[7..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_header_parsing_follows_the_js_cookie_parser() {
        let c = Cookies::parse(" a = 1 ;b=2;a=3; c=%41%20b; d=%zz; e=%FF; f; g==x; \th\t=\tv\t");
        assert_eq!(c.get("a"), Some("1"), "the first occurrence wins");
        assert_eq!(c.get("b"), Some("2"));
        assert_eq!(c.get("c"), Some("A b"), "percent-decoded");
        assert_eq!(c.get("d"), Some("%zz"), "malformed escapes stay raw");
        assert_eq!(c.get("e"), Some("%FF"), "non-UTF-8 stays raw");
        assert_eq!(c.get("f"), None, "a pair without = is skipped");
        assert_eq!(c.get("g"), Some("=x"));
        assert_eq!(c.get("h"), Some("v"), "spaces and tabs trimmed");
        assert_eq!(Cookies::parse("").get(""), None);
    }

    #[test]
    fn client_uat_is_read_with_parse_int() {
        for (raw, n) in [
            ("1700000000", 1_700_000_000),
            ("0", 0),
            ("", 0),
            ("abc", 0),
            ("12abc", 12),
            ("  42", 42),
            ("-5", -5),
            ("0x1A", 26),
            ("1e5", 1),
            ("99999999999999999999999", i64::MAX),
        ] {
            assert_eq!(parse_int(raw), n, "{raw:?}");
        }
    }

    #[test]
    fn redirect_counter_is_read_with_number() {
        for (raw, n) in [
            ("", 0.0),
            ("2", 2.0),
            (" 3 ", 3.0),
            ("3.0", 3.0),
            ("0x3", 3.0),
            ("three", 0.0),
            ("2.5", 2.5),
        ] {
            assert_eq!(parse_number(raw), n, "{raw:?}");
        }
    }

    #[test]
    fn issuer_schemes_are_stripped_everywhere_case_insensitively() {
        assert_eq!(
            strip_schemes("https://clerk.example.com"),
            "clerk.example.com"
        );
        assert_eq!(
            strip_schemes("HTTP://clerk.example.com"),
            "clerk.example.com"
        );
        assert_eq!(strip_schemes("xhttps://a"), "xa");
        assert_eq!(strip_schemes("https://é.https://b"), "é.b");
    }
}
