//! Svix's public signature vectors and Clerk's derived vector (`tests/fixtures/svix-vectors.json`,
//! copied from the spec's fixtures), plus every negative case, with an injected clock.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use clerk_actix::webhooks::{WebhookError, WebhookEventKind, WebhookVerifier};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/svix-vectors.json")).unwrap()
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn svix(id: &str, ts: i64, sig: &str) -> HeaderMap {
    headers(&[
        ("svix-id", id),
        ("svix-timestamp", &ts.to_string()),
        ("svix-signature", sig),
    ])
}

/// Verification of a non-JSON test payload: the signature check passed iff the error is about
/// the body.
fn signature_ok(r: Result<clerk_actix::webhooks::WebhookEvent, WebhookError>) -> bool {
    matches!(
        r,
        Ok(_) | Err(WebhookError::InvalidJson) | Err(WebhookError::InvalidPayload)
    )
}

#[test]
fn svix_sign_vectors_sign_and_verify() {
    let f = fixture();
    for v in f["vectors"].as_array().unwrap() {
        let verifier = WebhookVerifier::new(v["secret"].as_str().unwrap()).unwrap();
        let (id, ts) = (
            v["msg_id"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
        );
        let body = v["payload"].as_str().unwrap().as_bytes();
        let expected = v["expected_signature"].as_str().unwrap();
        assert_eq!(verifier.sign(id, ts, body), expected, "{}", v["name"]);
        let r = verifier.verify_at(&svix(id, ts, expected), body, at(ts));
        // The svix vectors' payloads are JSON but not Clerk events.
        assert_eq!(
            r.unwrap_err(),
            WebhookError::InvalidPayload,
            "{}",
            v["name"]
        );
        // The prefix is optional.
        let bare = v["secret"].as_str().unwrap().trim_start_matches("whsec_");
        assert_eq!(
            WebhookVerifier::new(bare).unwrap().sign(id, ts, body),
            expected
        );
    }
}

#[test]
fn svix_negative_vectors_are_rejected() {
    let f = fixture();
    let negatives = f["negative_vectors"].as_array().unwrap();
    assert!(negatives.len() >= 5);
    for v in negatives {
        let verifier = WebhookVerifier::new(v["secret"].as_str().unwrap()).unwrap();
        let (id, ts) = (
            v["msg_id"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
        );
        let body = v["payload"].as_str().unwrap().as_bytes();
        let sig = v["presented_signature"].as_str().unwrap();
        // timestamp_mismatch: the header carries another timestamp than the one signed.
        let header_ts = if v["name"] == "timestamp_mismatch" {
            ts + 1
        } else {
            ts
        };
        let r = verifier.verify_at(&svix(id, header_ts, sig), body, at(ts));
        assert_eq!(
            r.unwrap_err(),
            WebhookError::InvalidSignature,
            "{}",
            v["name"]
        );
    }
}

#[test]
fn any_matching_v1_entry_of_a_multi_signature_header_is_enough() {
    let f = fixture();
    let v = &f["multi_signature_vector"];
    let verifier = WebhookVerifier::new(v["secret"].as_str().unwrap()).unwrap();
    let (id, ts) = (
        v["msg_id"].as_str().unwrap(),
        v["timestamp"].as_i64().unwrap(),
    );
    let body = v["payload"].as_str().unwrap().as_bytes();
    let r = verifier.verify_at(
        &svix(id, ts, v["presented_signature"].as_str().unwrap()),
        body,
        at(ts),
    );
    assert!(signature_ok(r));
    // Without the matching entry: refused.
    let decoys: Vec<&str> = v["presented_signature"]
        .as_str()
        .unwrap()
        .split(' ')
        .filter(|s| *s != v["expected_signature"])
        .collect();
    let r = verifier.verify_at(&svix(id, ts, &decoys.join(" ")), body, at(ts));
    assert_eq!(r.unwrap_err(), WebhookError::InvalidSignature);
}

#[test]
fn clerk_derived_vector_is_a_user_deleted_event() {
    let f = fixture();
    let v = &f["clerk_derived_vector"];
    let verifier = WebhookVerifier::new(v["secret"].as_str().unwrap()).unwrap();
    let (id, ts) = (
        v["svix_id"].as_str().unwrap(),
        v["svix_timestamp"].as_i64().unwrap(),
    );
    let body = v["body"].as_str().unwrap().as_bytes();
    let sig = v["expected_signature"].as_str().unwrap();
    let event = verifier
        .verify_at(&svix(id, ts, sig), body, at(ts))
        .unwrap();
    assert_eq!(event.event_type(), "user.deleted");
    assert_eq!(event.svix_id(), id);
    assert_eq!(
        *event.kind(),
        WebhookEventKind::UserDeleted {
            id: Some("user_2g7np7Hrk0SN6kj5EDMLDaKNL0S".into())
        }
    );
    // Clerk accepts at +299 s and rejects at +301 s.
    assert!(verifier
        .verify_at(&svix(id, ts, sig), body, at(ts + 299))
        .is_ok());
    assert_eq!(
        verifier
            .verify_at(&svix(id, ts, sig), body, at(ts + 301))
            .unwrap_err(),
        WebhookError::TimestampTooOld
    );
    assert_eq!(
        verifier
            .verify_at(&svix(id, ts, sig), body, at(ts - 301))
            .unwrap_err(),
        WebhookError::TimestampTooNew
    );
    assert!(verifier
        .verify_at(&svix(id, ts, sig), body, at(ts - 300))
        .is_ok());
    assert!(verifier
        .verify_at(&svix(id, ts, sig), body, at(ts + 300))
        .is_ok());

    // Wrong secret, tampered body, whitespace changed, v1a / v2 only, missing or empty headers.
    let other = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(
        other
            .verify_at(&svix(id, ts, sig), body, at(ts))
            .unwrap_err(),
        WebhookError::InvalidSignature
    );
    let tampered = String::from_utf8(body.to_vec())
        .unwrap()
        .replace("ex_123456789", "ex_123456780");
    assert_eq!(
        verifier
            .verify_at(&svix(id, ts, sig), tampered.as_bytes(), at(ts))
            .unwrap_err(),
        WebhookError::InvalidSignature
    );
    let spaced = String::from_utf8(body.to_vec())
        .unwrap()
        .replacen(",", ", ", 1);
    assert_eq!(
        verifier
            .verify_at(&svix(id, ts, sig), spaced.as_bytes(), at(ts))
            .unwrap_err(),
        WebhookError::InvalidSignature
    );
    let mut trailing = body.to_vec();
    trailing.push(b'\n');
    assert_eq!(
        verifier
            .verify_at(&svix(id, ts, sig), &trailing, at(ts))
            .unwrap_err(),
        WebhookError::InvalidSignature
    );
    let b64 = sig.trim_start_matches("v1,");
    for only in [
        format!("v1a,{b64}"),
        format!("v2,{b64}"),
        format!("v1{b64}"),
        "v1,".to_owned(),
    ] {
        assert_eq!(
            verifier
                .verify_at(&svix(id, ts, &only), body, at(ts))
                .unwrap_err(),
            WebhookError::InvalidSignature,
            "{only}"
        );
    }
    let ts_s = ts.to_string();
    for missing in [
        headers(&[("svix-timestamp", &ts_s), ("svix-signature", sig)]),
        headers(&[("svix-id", id), ("svix-signature", sig)]),
        headers(&[("svix-id", id), ("svix-timestamp", &ts_s)]),
        headers(&[
            ("svix-id", " "),
            ("svix-timestamp", &ts_s),
            ("svix-signature", sig),
        ]),
        HeaderMap::new(),
    ] {
        assert_eq!(
            verifier.verify_at(&missing, body, at(ts)).unwrap_err(),
            WebhookError::MissingHeaders
        );
    }
    assert_eq!(
        verifier
            .verify_at(
                &headers(&[
                    ("svix-id", id),
                    ("svix-timestamp", "soon"),
                    ("svix-signature", sig)
                ]),
                body,
                at(ts)
            )
            .unwrap_err(),
        WebhookError::InvalidTimestamp
    );
    assert_eq!(
        verifier
            .verify_at(&svix(id, -1, sig), body, at(ts))
            .unwrap_err(),
        WebhookError::TimestampTooOld
    );
    // Standard Webhooks header names are accepted too.
    let std_names = headers(&[
        ("webhook-id", id),
        ("webhook-timestamp", &ts_s),
        ("webhook-signature", sig),
    ]);
    assert!(verifier.verify_at(&std_names, body, at(ts)).is_ok());
}

#[test]
fn non_json_bodies_are_rejected_after_the_signature_with_distinct_reasons() {
    let verifier = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let ts = 1_700_000_000;
    for (body, reason) in [
        (&b"not json"[..], WebhookError::InvalidJson),
        (&b"\xff\xfe"[..], WebhookError::InvalidJson),
        (&br#"{"data":{}}"#[..], WebhookError::InvalidPayload),
        (
            &br#"{"type":"user.created","data":{"no_id":true}}"#[..],
            WebhookError::InvalidPayload,
        ),
        (&br#"[1,2]"#[..], WebhookError::InvalidPayload),
    ] {
        let sig = verifier.sign("msg_x", ts, body);
        assert_eq!(
            verifier
                .verify_at(&svix("msg_x", ts, &sig), body, at(ts))
                .unwrap_err(),
            reason
        );
    }
    let other = br#"{"type":"session.created","data":{"id":"sess_1"}}"#;
    let sig = verifier.sign("msg_y", ts, other);
    let event = verifier
        .verify_at(&svix("msg_y", ts, &sig), other, at(ts))
        .unwrap();
    assert_eq!(*event.kind(), WebhookEventKind::Other);
    assert_eq!(event.event_type(), "session.created");
}

#[test]
fn bad_secrets_are_errors_and_debug_redacts_the_key() {
    assert_eq!(
        WebhookVerifier::new("whsec_").unwrap_err(),
        WebhookError::InvalidSecret
    );
    assert_eq!(
        WebhookVerifier::new("").unwrap_err(),
        WebhookError::InvalidSecret
    );
    assert_eq!(
        WebhookVerifier::new("whsec_!!notbase64").unwrap_err(),
        WebhookError::InvalidSecret
    );
    let v = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert!(!format!("{v:?}").contains("MfKQ"));
}

#[test]
fn the_openapi_webhook_examples_parse_into_typed_events() {
    let examples: Value =
        serde_json::from_str(include_str!("fixtures/webhook-examples.json")).unwrap();
    let verifier = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let ts = 1_716_883_200;
    let mut seen = 0;
    for (name, example) in examples["openapi_examples"].as_object().unwrap() {
        let body = example.to_string();
        let sig = verifier.sign("msg_ex", ts, body.as_bytes());
        let event = verifier
            .verify_at(&svix("msg_ex", ts, &sig), body.as_bytes(), at(ts))
            .unwrap();
        assert_eq!(event.event_type(), name);
        match (name.as_str(), event.kind()) {
            ("user.created", WebhookEventKind::UserCreated(u))
            | ("user.updated", WebhookEventKind::UserUpdated(u)) => {
                assert!(u.id.starts_with("user_"));
                assert!(u.updated_at > 0);
            }
            ("user.deleted", WebhookEventKind::UserDeleted { id }) => assert!(id.is_some()),
            (_, WebhookEventKind::Other) => assert!(name.starts_with("session.")),
            (n, k) => panic!("{n} parsed as {k:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 5);
}
