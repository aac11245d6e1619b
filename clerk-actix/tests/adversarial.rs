//! Forged, malformed and hostile tokens: each is refused with a reason code, never a panic.

#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use base64::{engine::general_purpose, Engine as _};
use clerk_actix::{
    testing::{unix_now, Breakage, TokenBuilder, TEST_KEYS},
    AuthErrorReason, TokenVerifier, VerificationKeys, VerifyOptions,
};

fn keys() -> VerificationKeys {
    VerificationKeys::from_pem(TEST_KEYS[0].public_pem).unwrap()
}

fn jwks() -> VerificationKeys {
    let k = TEST_KEYS[0];
    VerificationKeys::from_jwks_json(&format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"{}","use":"sig","alg":"RS256","n":"{}","e":"{}"}}]}}"#,
        k.kid, k.n, k.e
    ))
    .unwrap()
}

fn reason(token: &str) -> Option<AuthErrorReason> {
    TokenVerifier::default()
        .verify_at(token, &keys(), SystemTime::now())
        .err()
        .map(|e| e.reason())
}

fn b64(bytes: &[u8]) -> String {
    general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_valid_token_verifies_with_pem_and_jwks() {
    let token = TokenBuilder::new().subject("user_ok").build();
    let v = TokenVerifier::default();
    assert_eq!(
        v.verify_at(&token, &keys(), SystemTime::now())
            .unwrap()
            .user_id(),
        "user_ok"
    );
    assert_eq!(
        v.verify_at(&token, &jwks(), SystemTime::now())
            .unwrap()
            .user_id(),
        "user_ok"
    );
}

#[test]
fn alg_none_and_hs256_confusion_are_invalid_algorithm() {
    let none = TokenBuilder::new().broken(Breakage::AlgNone).build();
    assert_eq!(reason(&none), Some(AuthErrorReason::TokenInvalidAlgorithm));
    let hs = TokenBuilder::new()
        .broken(Breakage::Hs256WithPublicKey)
        .build();
    assert_eq!(reason(&hs), Some(AuthErrorReason::TokenInvalidAlgorithm));
    for alg in ["RS384", "RS512", "ES256", "PS256", "none", "NONE", "rs256"] {
        let t = TokenBuilder::new().header("alg", alg).build();
        assert_eq!(
            reason(&t),
            Some(AuthErrorReason::TokenInvalidAlgorithm),
            "{alg}"
        );
    }
    let t = TokenBuilder::new()
        .header("alg", serde_json::Value::Null)
        .build();
    assert_eq!(reason(&t), Some(AuthErrorReason::TokenInvalidAlgorithm));
}

#[test]
fn tampering_breaks_the_signature() {
    for b in [
        Breakage::TamperPayload,
        Breakage::TamperHeader,
        Breakage::TamperSignature,
        Breakage::WrongKey,
    ] {
        let t = TokenBuilder::new().broken(b.clone()).build();
        assert_eq!(
            reason(&t),
            Some(AuthErrorReason::TokenInvalidSignature),
            "{b:?}"
        );
    }
}

#[test]
fn wrong_or_missing_kid_with_a_jwks_is_a_kid_mismatch() {
    let v = TokenVerifier::default();
    let t = TokenBuilder::new().kid("ins_nope").build();
    assert_eq!(
        v.verify_at(&t, &jwks(), SystemTime::now())
            .unwrap_err()
            .reason(),
        AuthErrorReason::JwkKidMismatch
    );
    let t = TokenBuilder::new().without_header("kid").build();
    assert_eq!(
        v.verify_at(&t, &jwks(), SystemTime::now())
            .unwrap_err()
            .reason(),
        AuthErrorReason::JwkKidMismatch
    );
    // A PEM key ignores the kid, as Clerk's SDKs do.
    assert!(v.verify_at(&t, &keys(), SystemTime::now()).is_ok());
}

#[test]
fn wrong_segment_counts_are_token_invalid() {
    let t = TokenBuilder::new().build();
    let parts: Vec<&str> = t.split('.').collect();
    let cases = [
        String::new(),
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{t}.{}", parts[2]),
        format!("{t}.x.y"),
        format!("{t}."),
        "..".to_owned(),
        "...".to_owned(),
    ];
    for c in &cases {
        assert_eq!(reason(c), Some(AuthErrorReason::TokenInvalid), "{c:.40}");
    }
}

#[test]
fn padding_and_alphabet() {
    let t = TokenBuilder::new().build();
    let parts: Vec<&str> = t.split('.').collect();
    // A padded signature decodes to the same bytes (Clerk's decoder is loose about padding).
    let sig_pad = "=".repeat((4 - parts[2].len() % 4) % 4);
    let padded_sig = format!("{}.{}.{}{}", parts[0], parts[1], parts[2], sig_pad);
    if !sig_pad.is_empty() {
        assert_eq!(reason(&padded_sig), None);
    }
    // Padding the header changes the signed bytes: the signature no longer matches.
    let padded_header = format!("{}==.{}.{}", parts[0], parts[1], parts[2]);
    assert_eq!(
        reason(&padded_header),
        Some(AuthErrorReason::TokenInvalidSignature)
    );
    // A token *signed* over padded segments verifies (Clerk's JS and PyJWT both accept it).
    let signed = sign_raw(&format!("{}==.{}=", parts[0], parts[1]));
    assert_eq!(reason(&signed), None);
    // Non-zero trailing bits are not base64url (Clerk's JS decoder throws on them).
    let last = parts[2].chars().last().unwrap();
    let bumped = if last == 'B' { 'C' } else { 'B' }; // low bits 0001 or 0010: non-zero
    let bad_bits = format!(
        "{}.{}.{}{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 1],
        bumped
    );
    assert_eq!(reason(&bad_bits), Some(AuthErrorReason::TokenInvalid));
    // The standard alphabet (+ /) is not base64url.
    let std_sig = parts[2].replace('-', "+").replace('_', "/");
    if std_sig != parts[2] {
        let t2 = format!("{}.{}.{}", parts[0], parts[1], std_sig);
        assert_eq!(reason(&t2), Some(AuthErrorReason::TokenInvalid));
    }
    let std_header = format!("{}+/.{}.{}", parts[0], parts[1], parts[2]);
    assert_eq!(reason(&std_header), Some(AuthErrorReason::TokenInvalid));
}

/// Signs `message` (two segments) with the first test key.
fn sign_raw(message: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_KEYS[0].private_pem.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
        .unwrap();
    format!("{message}.{sig}")
}

#[test]
fn a_utf8_bom_before_the_json_is_skipped() {
    let header = b64(b"\xef\xbb\xbf{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    let t = TokenBuilder::new().build();
    let payload = t.split('.').nth(1).unwrap();
    assert_eq!(reason(&sign_raw(&format!("{header}.{payload}"))), None);
}

#[test]
fn non_object_json_headers_and_payloads_are_token_invalid() {
    let t = TokenBuilder::new().build();
    let parts: Vec<&str> = t.split('.').collect();
    for bad in [
        "null",
        "[]",
        "[1,2]",
        "\"str\"",
        "42",
        "{",
        "",
        "{\"alg\":\"RS256\"}x",
    ] {
        let as_header = format!("{}.{}.{}", b64(bad.as_bytes()), parts[1], parts[2]);
        assert_eq!(
            reason(&as_header),
            Some(AuthErrorReason::TokenInvalid),
            "header {bad}"
        );
        let as_payload = format!("{}.{}.{}", parts[0], b64(bad.as_bytes()), parts[2]);
        assert_eq!(
            reason(&as_payload),
            Some(AuthErrorReason::TokenInvalid),
            "payload {bad}"
        );
    }
}

#[test]
fn non_utf8_and_binary_garbage_is_token_invalid() {
    let t = TokenBuilder::new().build();
    let parts: Vec<&str> = t.split('.').collect();
    let bad = format!(
        "{}.{}.{}",
        parts[0],
        b64(&[0xff, 0xfe, 0x7b, 0x80]),
        parts[2]
    );
    assert_eq!(reason(&bad), Some(AuthErrorReason::TokenInvalid));
    assert_eq!(
        reason("\u{feff}.\u{0}.é"),
        Some(AuthErrorReason::TokenInvalid)
    );
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let huge = TokenBuilder::new()
        .claim("blob", "x".repeat(100 * 1024))
        .build();
    assert!(huge.len() > 100 * 1024);
    assert_eq!(reason(&huge), Some(AuthErrorReason::TokenInvalid));
    let garbage = "a".repeat(100 * 1024);
    assert_eq!(reason(&garbage), Some(AuthErrorReason::TokenInvalid));
    // The limit is configurable.
    let big = TokenVerifier::new(VerifyOptions::default().max_token_len(256 * 1024));
    assert!(big.verify_at(&huge, &keys(), SystemTime::now()).is_ok());
}

#[test]
fn claim_rules_in_clerks_order() {
    // A fixed clock: times a few seconds either side of it must not depend on the wall clock.
    const T: i64 = 1_767_225_600;
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(T as u64);
    let r = |b: TokenBuilder| {
        TokenVerifier::default()
            .verify_at(&b.build(), &keys(), at)
            .err()
            .map(|e| e.reason())
    };
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).without_claim("sub")),
        Some(AuthErrorReason::TokenVerificationFailed)
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).claim("sub", 42)),
        Some(AuthErrorReason::TokenVerificationFailed)
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).without_claim("exp")),
        Some(AuthErrorReason::TokenVerificationFailed)
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).claim("exp", "soon")),
        Some(AuthErrorReason::TokenVerificationFailed)
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).claim("nbf", "x")),
        Some(AuthErrorReason::TokenVerificationFailed)
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).expires_at(T - 10)),
        Some(AuthErrorReason::TokenExpired)
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).expires_at(T - 4)),
        None,
        "within the 5 s skew"
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).not_before(T + 30)),
        Some(AuthErrorReason::TokenNotActiveYet)
    );
    assert_eq!(
        r(TokenBuilder::new()
            .issued_at(T - 10)
            .without_claim("nbf")
            .claim("iat", T + 30)),
        Some(AuthErrorReason::TokenIatInTheFuture)
    );
    // Expired and not-yet-valid at once: exp is checked first.
    assert_eq!(
        r(TokenBuilder::new()
            .issued_at(T - 10)
            .expires_at(T - 100)
            .not_before(T + 100)),
        Some(AuthErrorReason::TokenExpired)
    );
    // No nbf / iat at all is fine.
    assert_eq!(
        r(TokenBuilder::new()
            .issued_at(T - 10)
            .without_claim("nbf")
            .without_claim("iat")),
        None
    );
    // typ: absent or JWT.
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).without_header("typ")),
        None
    );
    assert_eq!(
        r(TokenBuilder::new().issued_at(T - 10).header("typ", "JOSE")),
        Some(AuthErrorReason::TokenInvalid)
    );
    assert_eq!(
        r(TokenBuilder::new()
            .issued_at(T - 10)
            .header("typ", serde_json::Value::Null)),
        Some(AuthErrorReason::TokenInvalid)
    );
    // Unknown header fields are ignored.
    assert_eq!(
        r(TokenBuilder::new()
            .issued_at(T - 10)
            .header("oiat", 123)
            .header("x-new", "y")),
        None
    );
}

#[test]
fn signature_is_checked_before_claims() {
    // Expired and forged: the signature failure wins (no claim oracle).
    let t = TokenBuilder::new()
        .expires_in(-1000)
        .broken(Breakage::TamperPayload)
        .build();
    assert_eq!(reason(&t), Some(AuthErrorReason::TokenInvalidSignature));
}

#[test]
fn authorized_parties_audience_and_issuer() {
    let now = SystemTime::now();
    let v = TokenVerifier::new(
        VerifyOptions::default().authorized_parties(["https://app.example.com"]),
    );
    let ok = TokenBuilder::new()
        .authorized_party("https://app.example.com")
        .build();
    assert!(v.verify_at(&ok, &keys(), now).is_ok());
    for bad in [
        TokenBuilder::new().authorized_party("https://app.example.com/"),
        TokenBuilder::new().authorized_party("https://evil.example"),
        TokenBuilder::new().authorized_party(""),
        TokenBuilder::new().without_claim("azp"),
    ] {
        assert_eq!(
            v.verify_at(&bad.build(), &keys(), now)
                .unwrap_err()
                .reason(),
            AuthErrorReason::TokenInvalidAuthorizedParties
        );
    }

    let v = TokenVerifier::new(VerifyOptions::default().audience(["api-1", "api-2"]));
    assert!(v
        .verify_at(
            &TokenBuilder::new().claim("aud", "api-2").build(),
            &keys(),
            now
        )
        .is_ok());
    assert!(v
        .verify_at(
            &TokenBuilder::new()
                .claim("aud", serde_json::json!(["x", "api-1"]))
                .build(),
            &keys(),
            now
        )
        .is_ok());
    assert!(
        v.verify_at(&TokenBuilder::new().build(), &keys(), now)
            .is_ok(),
        "no aud passes"
    );
    assert_eq!(
        v.verify_at(
            &TokenBuilder::new().claim("aud", "other").build(),
            &keys(),
            now
        )
        .unwrap_err()
        .reason(),
        AuthErrorReason::TokenVerificationFailed
    );
    assert_eq!(
        v.verify_at(
            &TokenBuilder::new()
                .claim("aud", serde_json::json!(["x"]))
                .build(),
            &keys(),
            now
        )
        .unwrap_err()
        .reason(),
        AuthErrorReason::TokenVerificationFailed
    );

    let v =
        TokenVerifier::new(VerifyOptions::default().issuer("https://clerk.mock.clerk-actix.test"));
    assert!(v
        .verify_at(&TokenBuilder::new().build(), &keys(), now)
        .is_ok());
    assert_eq!(
        v.verify_at(
            &TokenBuilder::new()
                .issuer("https://clerk.evil.test")
                .build(),
            &keys(),
            now
        )
        .unwrap_err()
        .reason(),
        AuthErrorReason::TokenVerificationFailed
    );
}

#[test]
fn machine_tokens_are_refused_on_session_routes() {
    let now = SystemTime::now();
    let v = TokenVerifier::default();
    let mismatch = |t: &str| v.verify_session_at(t, &keys(), now).unwrap_err().reason();
    for opaque in [
        "ak_LCWGdaM8mv8K4PC",
        "mt_8XOIucKvqHVr5tYP123",
        "oat_8XOIucKvqHVr5tYP",
        "m2m_legacy",
    ] {
        assert_eq!(
            mismatch(opaque),
            AuthErrorReason::TokenTypeMismatch,
            "{opaque}"
        );
    }
    let m2m = TokenBuilder::new()
        .header("cat", "cl_B7d4PD333AAA")
        .subject("mch_1")
        .build();
    assert_eq!(mismatch(&m2m), AuthErrorReason::TokenTypeMismatch);
    // verifyToken semantics: the M2M category is token-invalid.
    assert_eq!(
        v.verify_at(&m2m, &keys(), now).unwrap_err().reason(),
        AuthErrorReason::TokenInvalid
    );
    let mch = TokenBuilder::new().subject("mch_2").build();
    assert_eq!(mismatch(&mch), AuthErrorReason::TokenTypeMismatch);
    for typ in ["at+jwt", "application/at+jwt"] {
        let oauth = TokenBuilder::new().header("typ", typ).build();
        assert_eq!(
            mismatch(&oauth),
            AuthErrorReason::TokenTypeMismatch,
            "{typ}"
        );
    }
    let template = TokenBuilder::new().header("cat", "cl_B7d4PD222AAA").build();
    assert_eq!(mismatch(&template), AuthErrorReason::TokenTypeMismatch);
    assert!(
        v.verify_at(&template, &keys(), now).is_ok(),
        "verifyToken accepts templates"
    );
    let session = TokenBuilder::new().header("cat", "cl_B7d4PD111AAA").build();
    assert!(v.verify_session_at(&session, &keys(), now).is_ok());
    let ignore = TokenBuilder::new().header("cat", "cl_I7d4PD111III").build();
    assert!(v.verify_session_at(&ignore, &keys(), now).is_ok());
}

/// JS turns dates this far out into NaN (every comparison false: "valid") while PyJWT does
/// not, so these cases have no agreed answer; they only must not panic.
#[test]
fn fractional_and_huge_times_do_not_panic() {
    let r = |b: TokenBuilder| reason(&b.build());
    assert_eq!(
        r(TokenBuilder::new().claim("exp", (unix_now() + 60) as f64 + 0.9)),
        None
    );
    assert_eq!(r(TokenBuilder::new().claim("exp", 1e300)), None);
    assert_eq!(
        r(TokenBuilder::new().claim("exp", -1e300)),
        Some(AuthErrorReason::TokenExpired)
    );
    assert_eq!(r(TokenBuilder::new().claim("exp", i64::MAX)), None);
    assert_eq!(
        r(TokenBuilder::new().claim("iat", 1e300)),
        Some(AuthErrorReason::TokenIatInTheFuture)
    );
}

/// Boundaries the mutation run found untested (RELIABILITY.md, "Mutation testing").
#[test]
fn boundaries_of_the_size_limit_nbf_and_the_expiry_read_back() {
    const T: i64 = 1_767_225_600;
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(T as u64);
    let v = TokenVerifier::default();
    // `nbf` exactly at now + skew (5 s) is active; one second later it is not.
    let nbf = |nbf: i64| {
        let t = TokenBuilder::new()
            .issued_at(T - 10)
            .not_before(nbf)
            .build();
        v.verify_at(&t, &keys(), at).err().map(|e| e.reason())
    };
    assert_eq!(nbf(T + 5), None);
    assert_eq!(nbf(T + 6), Some(AuthErrorReason::TokenNotActiveYet));
    // The verified claims carry `exp` in seconds, as the token has it.
    let token = TokenBuilder::new()
        .issued_at(T - 10)
        .expires_at(T + 60)
        .build();
    let claims = v.verify_session_at(&token, &keys(), at).unwrap();
    assert_eq!(claims.expires_at(), T + 60);
    // A token exactly as long as the limit is read; one byte more is refused unread.
    let limited = TokenVerifier::new(VerifyOptions::default().max_token_len(token.len()));
    assert!(limited.verify_session_at(&token, &keys(), at).is_ok());
    let longer = TokenVerifier::new(VerifyOptions::default().max_token_len(token.len() - 1));
    assert_eq!(
        longer
            .verify_session_at(&token, &keys(), at)
            .unwrap_err()
            .reason(),
        AuthErrorReason::TokenInvalid
    );
}

/// A JWK with an empty modulus or exponent is no key; `is_pem` and `Debug` say what was loaded
/// (and never the key material).
#[test]
fn empty_jwk_components_and_what_a_key_set_reports() {
    let jwks = |n: &str, e: &str| {
        format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":"{n}","e":"{e}"}}]}}"#
        )
    };
    let k = TEST_KEYS[0];
    for (n, e) in [("", k.e), (k.n, ""), ("", "")] {
        assert_eq!(
            VerificationKeys::from_jwks_json(&jwks(n, e)).unwrap_err(),
            clerk_actix::KeyError::NoUsableKey,
            "n={n:?} e={e:?}"
        );
    }
    let set = VerificationKeys::from_jwks_json(&jwks(k.n, k.e)).unwrap();
    assert!(!set.is_pem());
    assert_eq!(
        format!("{set:?}"),
        r#"VerificationKeys::Jwks { kids: ["k1"] }"#
    );
    assert!(keys().is_pem());
    assert_eq!(format!("{:?}", keys()), "VerificationKeys::Pem");
}

/// Clerk's `assertAudienceClaim` checks `aud` only when it is a non-empty string or a non-empty
/// array of strings: an empty one, or an array with a non-string, passes unchecked.
#[test]
fn an_audience_clerk_does_not_check_passes() {
    let v = TokenVerifier::new(VerifyOptions::default().audience(["my-api"]));
    let verdict = |aud: serde_json::Value| {
        let token = TokenBuilder::new().claim("aud", aud).build();
        v.verify_at(&token, &keys(), SystemTime::now())
            .err()
            .map(|e| e.reason())
    };
    assert_eq!(verdict(serde_json::json!("")), None);
    assert_eq!(verdict(serde_json::json!([])), None);
    assert_eq!(verdict(serde_json::json!([1])), None);
    assert_eq!(verdict(serde_json::json!([1, "other"])), None);
    assert_eq!(verdict(serde_json::json!(["my-api"])), None);
    assert_eq!(
        verdict(serde_json::json!(["other"])),
        Some(AuthErrorReason::TokenVerificationFailed)
    );
    assert_eq!(
        verdict(serde_json::json!("other")),
        Some(AuthErrorReason::TokenVerificationFailed)
    );
}
