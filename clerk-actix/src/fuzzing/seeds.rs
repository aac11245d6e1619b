//! Every target's seed corpus, from the test vectors.

use super::*;

/// Seeds for each target, from the test vectors: `(target, name, bytes)`. Written to
/// `fuzz/corpus/<target>/` by `CLERK_FUZZ_WRITE_SEEDS=1 cargo test --all-features --test
/// fuzz_corpora`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let at = |b: TokenBuilder| {
        b.issued_at(FUZZ_NOW_SECS - 10)
            .not_before(FUZZ_NOW_SECS - 10)
            .expires_at(FUZZ_NOW_SECS + 60)
    };
    let mut out = Vec::new();
    let tokens = [
        ("v1", at(TokenBuilder::new()).build()),
        (
            "v2_org",
            at(TokenBuilder::new()
                .v2()
                .org_v2("org_1", "admin", "acme", "read,write", "3"))
            .build(),
        ),
        (
            "v1_org",
            at(TokenBuilder::new().org_v1("org_1", "org:admin", "acme", &["org:a:b"])).build(),
        ),
        (
            "second_key",
            at(TokenBuilder::with_key(TEST_KEYS[1])).build(),
        ),
        (
            "unpublished_key",
            at(TokenBuilder::with_key(TEST_KEYS[2])).build(),
        ),
        (
            "expired",
            at(TokenBuilder::new())
                .expires_at(FUZZ_NOW_SECS - 60)
                .build(),
        ),
        (
            "m2m_jwt",
            at(TokenBuilder::new()
                .subject("mch_1")
                .without_claim("sid")
                .without_claim("azp")
                .header("cat", crate::tokens::verify::CATEGORY_M2M))
            .build(),
        ),
        (
            "oauth_jwt",
            at(TokenBuilder::new()
                .header("typ", "at+jwt")
                .without_claim("azp")
                .claim("client_id", "c"))
            .build(),
        ),
        (
            "alg_none",
            at(TokenBuilder::new().broken(crate::testing::Breakage::AlgNone)).build(),
        ),
        (
            "hs256",
            at(TokenBuilder::new().broken(crate::testing::Breakage::Hs256WithPublicKey)).build(),
        ),
    ];
    // Padding on the signature segment (accepted, as Clerk's decoder accepts it): the accepting
    // path with a signature that is not the canonical text.
    let padded = format!("{}==", tokens[0].1);
    out.push((
        "session_token",
        "v1_padded_signature".into(),
        padded.into_bytes(),
    ));
    for (name, token) in tokens {
        out.push(("session_token", name.to_owned(), token.clone().into_bytes()));
        out.push((
            "authorization",
            format!("bearer_{name}"),
            format!("Bearer {token}").into_bytes(),
        ));
        out.push((
            "authorization",
            format!("cookie_{name}"),
            format!("\0a=b; __session={token}; c=d").into_bytes(),
        ));
    }
    out.push(("keys", "jwks".into(), {
        let keys: Vec<Value> = TEST_KEYS.iter().map(|k| serde_json::json!({"kty": "RSA", "kid": k.kid, "n": k.n, "e": k.e, "alg": "RS256", "use": "sig"})).collect();
        serde_json::to_vec(&serde_json::json!({"keys": keys})).unwrap_or_default()
    }));
    out.push((
        "keys",
        "pem".into(),
        TEST_KEYS[0].public_pem.as_bytes().to_vec(),
    ));
    out.push((
        "backend_api",
        "user".into(),
        crate::testing::mock_user_json("user_seed")
            .to_string()
            .into_bytes(),
    ));
    out.push(("backend_api", "error".into(), br#"{"errors":[{"code":"authentication_invalid","message":"m","long_message":"l"}],"clerk_trace_id":"t"}"#.to_vec()));
    for (i, answer) in [
        serde_json::json!({"object":"api_key","id":"ak_1","subject":"user_1","scopes":["a"],"name":"k","revoked":false,"expired":false,"expiration":null}),
        serde_json::json!({"object":"machine_to_machine_token","id":"mt_1","subject":"mch_1","scopes":["mch_2"],"revoked":true,"expired":false,"expiration":FUZZ_NOW_SECS * 1000 + 60_000}),
        serde_json::json!({"object":"clerk_idp_oauth_access_token","id":"oat_1","client_id":"c","subject":"user_1","scopes":["x"],"revoked":false,"expired":false,"expiration":FUZZ_NOW_SECS * 1000 - 1}),
        serde_json::json!({"active": false}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut bytes = vec![u8::try_from(i % 3).unwrap_or(0)];
        bytes.extend(serde_json::to_vec(&answer).unwrap_or_default());
        out.push(("machine_answer", format!("answer_{i}"), bytes));
    }
    // The handshake's cookie path: a control byte (bit 0: production; bits 1-2: the method;
    // bits 3-: the verifier's verdict), then NUL-separated Sec-Fetch-Dest, Accept, query, Cookie
    // header and Authorization token.
    let prod_token = at(TokenBuilder::new().issuer("https://clerk.example.com")).build();
    let dev_token = at(TokenBuilder::new().issuer("https://foo-bar-13.clerk.accounts.dev")).build();
    let uat = FUZZ_NOW_SECS - 10;
    let session = format!("__session={prod_token}; __client_uat={uat}");
    for (name, control, fields) in [
        (
            "prod_valid",
            1u8,
            ["document", "", "x=1", session.as_str(), ""],
        ),
        (
            "prod_expired",
            1 | 1 << 3,
            ["document", "", "x=1", session.as_str(), ""],
        ),
        (
            "prod_nbf",
            1 | 2 << 3,
            ["iframe", "", "", session.as_str(), ""],
        ),
        (
            "prod_uat_only",
            1,
            [
                "document",
                "",
                "",
                format!("__client_uat={uat}").as_str(),
                "",
            ],
        ),
        (
            "prod_suffixed",
            1 | 1 << 3,
            [
                "document",
                "",
                "",
                format!("__session_naoXFJnI={prod_token}; __client_uat_naoXFJnI={uat}").as_str(),
                "",
            ],
        ),
        (
            "prod_fetch",
            1 | 1 << 3,
            ["empty", "", "", session.as_str(), ""],
        ),
        (
            "prod_accept_html",
            1 | 1 << 3,
            ["", "text/html", "", session.as_str(), ""],
        ),
        (
            "prod_post",
            1 | 2 << 1 | 1 << 3,
            ["document", "", "", session.as_str(), ""],
        ),
        (
            "prod_header",
            1 | 1 << 3,
            ["document", "", "", "", prod_token.as_str()],
        ),
        (
            "prod_nonce",
            1,
            [
                "document",
                "",
                "",
                format!("__clerk_handshake_nonce=N1; {session}").as_str(),
                "",
            ],
        ),
        (
            "prod_loop",
            1 | 1 << 3,
            [
                "document",
                "",
                "",
                format!("{session}; __clerk_redirect_count=3").as_str(),
                "",
            ],
        ),
        (
            "prod_refresh",
            1 | 1 << 3,
            [
                "document",
                "",
                "",
                format!("{session}; __refresh_naoXFJnI=r").as_str(),
                "",
            ],
        ),
        ("dev_missing", 0, ["document", "", "y=2", "", ""]),
        (
            "dev_db_jwt_query",
            0,
            [
                "document",
                "",
                "__clerk_db_jwt=dvb_2&y=2",
                "__clerk_db_jwt=dvb_1",
                "",
            ],
        ),
        (
            "dev_valid",
            0,
            [
                "document",
                "",
                "",
                format!("__clerk_db_jwt=dvb_1; __session={dev_token}; __client_uat={uat}").as_str(),
                "",
            ],
        ),
    ] {
        let mut bytes = vec![control];
        bytes.extend(fields.join("\0").into_bytes());
        out.push(("handshake", name.to_owned(), bytes));
    }
    // The structure-aware targets read their input through `arbitrary`: any bytes are a valid
    // input, and these few patterns start the fuzzer on each enum arm.
    for target in ["claims", "webhook"] {
        let patterns: [(&str, Vec<u8>); 4] = [
            ("zeros", vec![0; 256]),
            ("ones", vec![1; 256]),
            ("ramp", (0..=255).collect()),
            ("high", vec![0xfe; 256]),
        ];
        for (name, bytes) in patterns {
            out.push((target, name.to_owned(), bytes));
        }
    }
    out
}
