//! Clerk's public test vectors (`tests/fixtures/clerk-jwt-fixture.json`, copied from the spec's
//! fixtures: Clerk's JS SDK fixtures plus tokens whose outcomes were observed with
//! `@clerk/backend` 3.25.0), verified with an injected clock.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clerk_actix::{Has, Reverification, TokenVerifier, VerificationKeys, VerifyOptions};
use serde_json::Value;

const REFERENCE_TIME: u64 = 1_666_648_250;
const AZP: &str = "https://accounts.inspired.puma-74.lcl.dev";

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/clerk-jwt-fixture.json")).unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn pem_keys(f: &Value) -> VerificationKeys {
    VerificationKeys::from_pem(f["clerk_fixtures"]["pemEncodedPublicKey"].as_str().unwrap())
        .unwrap()
}

fn jwks_keys(f: &Value) -> VerificationKeys {
    VerificationKeys::from_jwks_json(&f["clerk_fixtures"]["mockJwks"].to_string()).unwrap()
}

/// "ok" or the reason code.
fn outcome(
    verifier: &TokenVerifier,
    token: &str,
    keys: &VerificationKeys,
    now: SystemTime,
) -> String {
    match verifier.verify_at(token, keys, now) {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.reason().as_str().to_owned(),
    }
}

#[test]
fn clerk_js_fixtures_match_observed_results_with_pem_and_jwks() {
    let f = fixture();
    let expected = f["expected_results_at_reference_time"].as_object().unwrap();
    assert_eq!(expected.len(), 5);
    let plain = TokenVerifier::new(VerifyOptions::default());
    let with_azp = TokenVerifier::new(VerifyOptions::default().authorized_parties([AZP]));
    for (name, results) in expected {
        let token = f["clerk_fixtures"][name].as_str().unwrap();
        for keys in [pem_keys(&f), jwks_keys(&f)] {
            assert_eq!(
                outcome(&plain, token, &keys, at(REFERENCE_TIME)),
                results["verifyToken_pem"].as_str().unwrap(),
                "{name} without authorized parties"
            );
            assert_eq!(
                outcome(&with_azp, token, &keys, at(REFERENCE_TIME)),
                results["verifyToken_with_authorizedParties"]
                    .as_str()
                    .unwrap(),
                "{name} with authorized parties"
            );
        }
    }
}

#[test]
fn mock_jwt_validity_window_default_skew_and_zero_skew() {
    let f = fixture();
    let token = f["clerk_fixtures"]["mockJwt"].as_str().unwrap();
    let keys = pem_keys(&f);
    let default = TokenVerifier::new(VerifyOptions::default());
    assert_eq!(
        outcome(&default, token, &keys, at(1_666_648_244)),
        "token-iat-in-the-future"
    );
    assert_eq!(outcome(&default, token, &keys, at(1_666_648_245)), "ok");
    assert_eq!(outcome(&default, token, &keys, at(1_666_648_314)), "ok");
    assert_eq!(
        outcome(&default, token, &keys, at(1_666_648_315)),
        "token-expired"
    );
    // Millisecond precision at the edges: 1666648314.999 is still valid.
    assert_eq!(
        outcome(
            &default,
            token,
            &keys,
            at(1_666_648_314) + Duration::from_millis(999)
        ),
        "ok"
    );

    let zero = TokenVerifier::new(VerifyOptions::default().clock_skew(Duration::ZERO));
    assert_eq!(
        outcome(&zero, token, &keys, at(1_666_648_249)),
        "token-iat-in-the-future"
    );
    assert_eq!(outcome(&zero, token, &keys, at(1_666_648_250)), "ok");
    assert_eq!(outcome(&zero, token, &keys, at(1_666_648_309)), "ok");
    assert_eq!(
        outcome(&zero, token, &keys, at(1_666_648_310)),
        "token-expired"
    );
}

#[test]
fn a_different_pem_key_does_not_verify_the_mock_jwt() {
    let f = fixture();
    let token = f["clerk_fixtures"]["mockJwt"].as_str().unwrap();
    let other =
        VerificationKeys::from_pem(f["clerk_fixtures"]["mockPEMJwtKey"].as_str().unwrap()).unwrap();
    let v = TokenVerifier::default();
    assert_eq!(
        outcome(&v, token, &other, at(REFERENCE_TIME)),
        "token-invalid-signature"
    );
    let some_other =
        VerificationKeys::from_pem(f["clerk_fixtures"]["someOtherPublicKey"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        outcome(&v, token, &some_other, at(REFERENCE_TIME)),
        "token-invalid-signature"
    );
}

#[test]
fn unknown_kid_in_a_jwks_is_a_kid_mismatch() {
    let f = fixture();
    let token = f["clerk_fixtures"]["mockJwt"].as_str().unwrap();
    let jwks =
        VerificationKeys::from_jwks_json(&f["clerk_fixtures"]["jwks_json_fixture"].to_string())
            .unwrap();
    assert_eq!(
        outcome(&TokenVerifier::default(), token, &jwks, at(REFERENCE_TIME)),
        "jwk-kid-mismatch"
    );
}

/// Maps `authenticateRequest`'s reasons onto the verifier's (Clerk renames two of them).
fn session_reason(js_reason: &str) -> &str {
    match js_reason {
        "session-token-nbf" => "token-not-active-yet",
        "session-token-iat-in-the-future" => "token-iat-in-the-future",
        other => other,
    }
}

#[test]
fn derived_vectors_match_clerk_backend_3_25_0() {
    let f = fixture();
    let vectors = f["derived_vectors"]["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 16, "{}", vectors.len());
    let keys = pem_keys(&f);
    let now = at(REFERENCE_TIME);
    let plain = TokenVerifier::new(VerifyOptions::default());
    let with_azp = TokenVerifier::new(VerifyOptions::default().authorized_parties([AZP]));
    let zero_skew = TokenVerifier::new(VerifyOptions::default().clock_skew(Duration::ZERO));
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let token = v["token"].as_str().unwrap();
        let obs = &v["observed_clerk_backend_3_25_0"];
        assert_eq!(
            outcome(&plain, token, &keys, now),
            obs["verifyToken_no_authorizedParties"].as_str().unwrap(),
            "{name}: verifyToken"
        );
        assert_eq!(
            outcome(&with_azp, token, &keys, now),
            obs["verifyToken_with_authorizedParties"].as_str().unwrap(),
            "{name}: verifyToken with authorizedParties"
        );
        assert_eq!(
            outcome(&zero_skew, token, &keys, now),
            obs["verifyToken_clockSkewInMs_0"].as_str().unwrap(),
            "{name}: verifyToken with clockSkewInMs 0"
        );

        // authenticateRequest (header, authorizedParties): the session-route path.
        let ar = &obs["authenticateRequest_header_with_authorizedParties"];
        let got = with_azp.verify_session_at(token, &keys, now);
        match ar["status"].as_str().unwrap() {
            "signed-in" => {
                let claims = got.unwrap_or_else(|e| panic!("{name}: expected signed-in, got {e}"));
                if ar["userId"].is_null() {
                    // Clerk turns pending sessions into a signed-out auth object.
                    assert!(claims.is_pending(), "{name}");
                } else {
                    assert_eq!(claims.user_id(), ar["userId"].as_str().unwrap(), "{name}");
                    assert_eq!(claims.org().map(|o| o.id()), ar["orgId"].as_str(), "{name}");
                    assert_eq!(
                        claims.org().and_then(|o| o.role()),
                        ar["orgRole"].as_str(),
                        "{name}"
                    );
                }
            }
            "signed-out" => {
                let err = got
                    .err()
                    .unwrap_or_else(|| panic!("{name}: expected signed-out"));
                assert_eq!(
                    err.reason().as_str(),
                    session_reason(ar["reason"].as_str().unwrap()),
                    "{name}: authenticateRequest reason"
                );
            }
            other => panic!("{name}: unexpected status {other}"),
        }
    }
}

#[test]
fn v2_claims_decode_like_clerk_and_has_matches_observed_results() {
    let f = fixture();
    let v = &f["derived_vectors"]["vectors"][0];
    assert_eq!(v["name"], "v2_session_with_org");
    let claims = TokenVerifier::default()
        .verify_at(
            v["token"].as_str().unwrap(),
            &pem_keys(&f),
            at(REFERENCE_TIME),
        )
        .unwrap();
    let exp = &v["expected"];
    assert_eq!(claims.version(), 2);
    assert_eq!(claims.user_id(), exp["userId"]);
    assert_eq!(claims.session_id().unwrap(), exp["sessionId"]);
    let org = claims.org().unwrap();
    assert_eq!(org.id(), exp["orgId"]);
    assert_eq!(org.role().unwrap(), exp["orgRole"]);
    assert_eq!(org.slug().unwrap(), exp["orgSlug"]);
    let perms: Vec<&str> = exp["orgPermissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(org.permissions(), perms);
    assert_eq!(claims.factor_verification_age(), Some([7, -1]));

    let checks: &[(&str, Has<'_>)] = &[
        ("role=admin", Has::role("admin")),
        ("role=org:admin", Has::role("org:admin")),
        (
            "permission=org:teams:read",
            Has::permission("org:teams:read"),
        ),
        (
            "permission=org:teams:manage",
            Has::permission("org:teams:manage"),
        ),
        (
            "permission=dashboard:manage",
            Has::permission("dashboard:manage"),
        ),
        ("feature=dashboard", Has::feature("dashboard")),
        ("feature=o:teams", Has::feature("o:teams")),
        ("feature=u:teams", Has::feature("u:teams")),
        ("plan=pro", Has::plan("pro")),
        ("plan=org:pro", Has::plan("org:pro")),
        ("plan=user:pro", Has::plan("user:pro")),
        ("{}", Has::default()),
        (
            "reverification=strict (fva [7,-1])",
            Has::reverification(Reverification::Strict),
        ),
        (
            "reverification=strict_mfa (fva [7,-1])",
            Has::reverification(Reverification::StrictMfa),
        ),
        (
            "reverification={level:first_factor,afterMinutes:5}",
            Has::reverification(Reverification::Custom {
                level: clerk_actix::VerificationLevel::FirstFactor,
                after_minutes: 5,
            }),
        ),
    ];
    let expected_has = exp["has"].as_object().unwrap();
    assert_eq!(
        expected_has.len(),
        checks.len(),
        "every observed has() case is checked"
    );
    for (label, check) in checks {
        assert_eq!(
            claims.has(*check),
            expected_has[*label].as_bool().unwrap(),
            "has({label})"
        );
    }
}

#[test]
fn v1_org_claims_and_fail_closed_billing() {
    let f = fixture();
    let v = f["derived_vectors"]["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1_session_with_org")
        .unwrap()
        .clone();
    let claims = TokenVerifier::default()
        .verify_at(
            v["token"].as_str().unwrap(),
            &pem_keys(&f),
            at(REFERENCE_TIME),
        )
        .unwrap();
    assert_eq!(claims.version(), 1);
    assert_eq!(claims.org().unwrap().role(), Some("org:admin"));
    assert_eq!(claims.org().unwrap().permissions().len(), 3);
    assert!(!claims.has(Has::feature("dashboard")));
    assert!(claims.has(Has::permission("org:teams:read")));
}

#[test]
fn mixed_scope_fpm_uses_the_position_rule() {
    let f = fixture();
    let v = f["derived_vectors"]["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v2_mixed_scope_fpm_alignment")
        .unwrap()
        .clone();
    let claims = TokenVerifier::default()
        .verify_at(
            v["token"].as_str().unwrap(),
            &pem_keys(&f),
            at(REFERENCE_TIME),
        )
        .unwrap();
    let by_position: Vec<&str> = v["expected"]
        ["orgPermissions_if_fpm_indexed_by_fea_position (docs text; Python, Ruby, C# SDKs)"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(claims.org().unwrap().permissions(), by_position);
}
