//! Every committed fuzz corpus file (`fuzz/corpus/<target>/`) and every crash fuzzing found
//! (`fuzz/regressions/<target>/`) replayed through the same functions the fuzz targets call,
//! on the stable toolchain: CI guards what fuzzing found without nightly. See RELIABILITY.md.
//!
//! `CLERK_FUZZ_WRITE_SEEDS=1` first (re)writes the seed files made from the test vectors.

#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use clerk_actix::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Replays `target`'s corpus and regressions; returns how many files ran.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    if std::env::var_os("CLERK_FUZZ_WRITE_SEEDS").is_some() {
        for (t, name, bytes) in fuzzing::seeds().into_iter().filter(|(t, ..)| *t == target) {
            let dir = fuzz_dir().join("corpus").join(t);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
        }
    }
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "no committed corpus for {target}");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    for file in corpus.iter().chain(&regressions) {
        let bytes = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{} crashes {target}", file.display());
    }
    corpus.len() + regressions.len()
}

macro_rules! replays {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            let n = replay(stringify!($target), fuzzing::$target);
            assert!(n > 0);
        }
    )*};
}

replays!(
    authorization,
    session_token,
    claims,
    keys,
    webhook,
    backend_api,
    machine_answer,
    handshake
);

/// A committed seed file (`fuzz/corpus/<target>/seed_<name>`): what the campaigns start from.
fn committed_seed(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir()
        .join("corpus")
        .join(target)
        .join(format!("seed_{name}"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is not committed ({e}): run this test once with CLERK_FUZZ_WRITE_SEEDS=1",
            path.display()
        )
    })
}

/// The committed corpus reaches the accepting paths (a corpus of refusals would leave the
/// oracles unused): the committed seed files, and how many committed files are accepted.
#[test]
fn the_committed_corpus_includes_accepted_inputs() {
    let token = |name: &str| committed_seed("session_token", name);
    for accepted in ["v1", "v2_org", "second_key", "v1_padded_signature"] {
        assert!(
            fuzzing::accepts_session_token(&token(accepted)),
            "{accepted}"
        );
    }
    for refused in ["unpublished_key", "expired", "alg_none", "hs256", "m2m_jwt"] {
        assert!(
            !fuzzing::accepts_session_token(&token(refused)),
            "{refused}"
        );
    }
    let corpus = files(&fuzz_dir().join("corpus").join("session_token"));
    let accepted = corpus
        .iter()
        .filter(|f| fuzzing::accepts_session_token(&std::fs::read(f).unwrap()))
        .count();
    assert!(
        accepted >= 5,
        "only {accepted} of {} committed session_token files are accepted",
        corpus.len()
    );
    let machine = files(&fuzz_dir().join("corpus").join("machine_answer"))
        .iter()
        .filter(|f| fuzzing::accepts_machine_answer(&std::fs::read(f).unwrap()))
        .count();
    assert!(machine >= 1, "no committed machine answer is accepted");
}

/// The handshake seeds reach every outcome of the cookie path.
#[test]
fn the_handshake_seeds_reach_every_outcome() {
    let outcome = |name: &str| {
        let (.., bytes) = fuzzing::seeds()
            .into_iter()
            .find(|(t, n, _)| *t == "handshake" && n == name)
            .unwrap();
        fuzzing::handshake_outcome(&bytes)
    };
    for (name, expected) in [
        ("prod_valid", "signed-in"),
        ("prod_expired", "redirect"),
        ("prod_nbf", "redirect"),
        ("prod_uat_only", "redirect"),
        ("prod_suffixed", "redirect"),
        ("prod_fetch", "signed-out"),
        ("prod_accept_html", "redirect"),
        ("prod_post", "signed-out"),
        ("prod_header", "redirect"),
        ("prod_nonce", "return-leg"),
        ("prod_loop", "signed-out"),
        ("prod_refresh", "redirect"),
        ("dev_missing", "redirect"),
        ("dev_db_jwt_query", "redirect"),
        ("dev_valid", "signed-in"),
    ] {
        assert_eq!(outcome(name), expected, "{name}");
    }
}
