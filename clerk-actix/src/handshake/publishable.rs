//! The publishable key (`pk_test_…` / `pk_live_…`): instance type, Frontend API host and the
//! cookie suffix of multi-app cookies (handshake.md §2.1, spec.md §3.2).

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use sha1::{Digest, Sha1};

/// Development (`pk_test_`) or production (`pk_live_`) instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InstanceType {
    Development,
    Production,
}

/// A parsed publishable key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublishableKey {
    instance: InstanceType,
    frontend_api: String,
    cookie_suffix: String,
}

/// The key is not `pk_test_<base64 host$>` or `pk_live_<base64 host$>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a Clerk publishable key: expected pk_test_… or pk_live_… as Clerk's dashboard shows it"
)]
pub(crate) struct InvalidPublishableKey;

/// `atob`: the standard alphabet, `=` padding optional (but correct when present), trailing bits
/// ignored. Base64url is not accepted, as in Clerk's SDK.
const ATOB: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

impl PublishableKey {
    /// Parses a publishable key as Clerk's `parsePublishableKey` does: the prefix gives the
    /// instance type; the third `_`-separated part decodes to `<frontend api>$`, with exactly one
    /// `$` (at the end) and a `.`.
    pub(crate) fn parse(key: &str) -> Result<Self, InvalidPublishableKey> {
        let instance = if key.starts_with("pk_live_") {
            InstanceType::Production
        } else if key.starts_with("pk_test_") {
            InstanceType::Development
        } else {
            return Err(InvalidPublishableKey);
        };
        let parts: Vec<&str> = key.split('_').collect();
        let [_, _, encoded] = parts[..] else {
            return Err(InvalidPublishableKey);
        };
        let bytes = ATOB.decode(encoded).map_err(|_| InvalidPublishableKey)?;
        // atob yields a "binary string": one char per byte.
        let decoded: String = bytes.iter().map(|&b| char::from(b)).collect();
        let Some(host) = decoded.strip_suffix('$') else {
            return Err(InvalidPublishableKey);
        };
        if host.contains('$') || !host.contains('.') {
            return Err(InvalidPublishableKey);
        }
        Ok(Self {
            instance,
            frontend_api: host.to_owned(),
            cookie_suffix: cookie_suffix(key),
        })
    }

    pub(crate) fn instance(&self) -> InstanceType {
        self.instance
    }

    /// The Frontend API host, e.g. `clerk.example.com` (session tokens' `iss` is
    /// `https://` + this host).
    pub(crate) fn frontend_api(&self) -> &str {
        &self.frontend_api
    }

    /// The suffix of this instance's cookies: `__session_<suffix>`, `__client_uat_<suffix>`.
    pub(crate) fn cookie_suffix(&self) -> &str {
        &self.cookie_suffix
    }
}

/// `base64(SHA-1(key))`, `+` → `-`, `/` → `_`, first 8 characters (`getCookieSuffix`).
fn cookie_suffix(key: &str) -> String {
    let digest = Sha1::digest(key.as_bytes());
    let mut suffix = base64::engine::general_purpose::URL_SAFE.encode(digest);
    suffix.truncate(8);
    suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/clerk-jwt-fixture.json"))
            .expect("fixture JSON")
    }

    #[test]
    fn cookie_suffix_vectors_of_clerks_sdk() {
        let fixture = fixture();
        let cases = fixture["cookie_suffix_vectors"]["cases"]
            .as_array()
            .expect("cases");
        assert!(cases.len() >= 5);
        for case in cases {
            let key = case["publishable_key"].as_str().expect("key");
            let pk = PublishableKey::parse(key).expect("a valid key");
            assert_eq!(
                pk.cookie_suffix(),
                case["suffix"].as_str().expect("suffix"),
                "{key}"
            );
        }
    }

    #[test]
    fn publishable_key_vectors_of_clerks_sdk() {
        let fixture = fixture();
        for case in fixture["publishable_key_vectors"]["cases"]
            .as_array()
            .expect("cases")
        {
            let pk = PublishableKey::parse(case["publishable_key"].as_str().expect("key"))
                .expect("a valid key");
            assert_eq!(
                pk.frontend_api(),
                case["frontend_api"].as_str().expect("host")
            );
            let instance = match case["instance_type"].as_str() {
                Some("production") => InstanceType::Production,
                Some("development") => InstanceType::Development,
                other => panic!("unexpected instance type {other:?}"),
            };
            assert_eq!(pk.instance(), instance);
        }
    }

    #[test]
    fn handshake_harness_keys() {
        // handshake.md §13 and §14.1: the keys of the harness and their suffixes.
        let prod = PublishableKey::parse("pk_live_Y2xlcmsuZXhhbXBsZS5jb20k").expect("prod");
        assert_eq!(
            (prod.instance(), prod.frontend_api(), prod.cookie_suffix()),
            (InstanceType::Production, "clerk.example.com", "naoXFJnI")
        );
        let dev =
            PublishableKey::parse("pk_test_Zm9vLWJhci0xMy5jbGVyay5hY2NvdW50cy5kZXYk").expect("dev");
        assert_eq!(
            (dev.instance(), dev.frontend_api(), dev.cookie_suffix()),
            (
                InstanceType::Development,
                "foo-bar-13.clerk.accounts.dev",
                "nx2hSE6I"
            )
        );
        let e2e = PublishableKey::parse("pk_live_Y2xlcmsuZXhhbXBsZS50ZXN0JA").expect("e2e");
        assert_eq!(
            (e2e.frontend_api(), e2e.cookie_suffix()),
            ("clerk.example.test", "mygDvuFt")
        );
        let e2e_dev = PublishableKey::parse("pk_test_Y2xlcmsuZXhhbXBsZS50ZXN0JA").expect("e2e");
        assert_eq!(e2e_dev.cookie_suffix(), "6tQWJVae");
    }

    #[test]
    fn malformed_keys_are_refused() {
        for key in [
            "",
            "pk_",
            "pk_live_",
            "sk_live_Y2xlcmsuZXhhbXBsZS5jb20k",
            "pk_prod_Y2xlcmsuZXhhbXBsZS5jb20k",
            // no `$` at the end: "clerk.example.com"
            "pk_live_Y2xlcmsuZXhhbXBsZS5jb20",
            // two `$`: "clerk.ex$ample.com$"
            "pk_live_Y2xlcmsuZXgkYW1wbGUuY29tJA",
            // no `.`: "localhost$"
            "pk_live_bG9jYWxob3N0JA",
            // a fourth part
            "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k_x",
            // base64url is not atob's alphabet
            "pk_live_Y2xlcmsuZXhh-XBsZS5jb20k",
            // wrong padding
            "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k=",
        ] {
            assert_eq!(
                PublishableKey::parse(key),
                Err(InvalidPublishableKey),
                "{key:?}"
            );
        }
        // Padding is optional but accepted.
        assert!(PublishableKey::parse("pk_live_Y2xlcmsuZXhhbXBsZS50ZXN0JA==").is_ok());
    }
}
