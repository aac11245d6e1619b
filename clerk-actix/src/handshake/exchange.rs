//! The return leg's exchange of a nonce for the payload (`GET /v1/clients/handshake_payload`),
//! bounded: a nonce is a string anyone can put in a URL or a cookie, and each exchange is a
//! Backend API call on the instance's shared rate limit.
//!
//! - A nonce must have the shape of one (URL-safe characters, bounded length) to be asked about.
//! - Concurrent exchanges of one nonce make one call.
//! - A nonce Clerk refused is refused again for a minute without asking.
//! - Calls come from a per-client budget under a global ceiling (`budget`); an exchange Clerk
//!   answered with a payload is refunded, so only refused nonces are charged. Over budget, the
//!   request is not exchanged and continues signed out; Clerk's 429 hold is never reached.
//!
//! (The caller also exchanges only for eligible document requests, so a `fetch` carrying a
//! nonce costs nothing.)

use std::{net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    base::api::{ApiError, BackendApi},
    base::budget::{ClientBudget, Rate},
};

/// What an exchange came to.
#[derive(Debug, Clone)]
pub(crate) enum NonceAnswer {
    /// The payload's body, from Clerk.
    Payload(Bytes),
    /// Malformed, refused by Clerk now or within the last minute: no good.
    Refused,
    /// Not asked: the budget for exchanges is spent (by this client, or by all).
    OverBudget,
}

/// Exchanges of one instance.
pub(crate) struct NonceExchanges {
    budget: ClientBudget,
    /// Nonces Clerk refused lately.
    refused: moka::sync::Cache<Arc<str>, ()>,
    /// Exchanges in flight, by nonce (removed when answered: a nonce is single-use).
    inflight: moka::future::Cache<Arc<str>, NonceAnswer>,
}

impl std::fmt::Debug for NonceExchanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceExchanges")
            .field("budget", &self.budget)
            .field("refused", &self.refused.entry_count())
            .finish_non_exhaustive()
    }
}

/// All clients together: 2 refused exchanges per second, bursts of 20 (a flood of made-up
/// nonces costs at most 20 calls plus 2 a second; genuine exchanges are refunded).
pub(crate) const GLOBAL_RATE: Rate = Rate::new(2.0, 20);
/// One client address: one refused exchange per 10 s, bursts of 3.
pub(crate) const CLIENT_RATE: Rate = Rate::new(0.1, 3);
/// How long a refused nonce is remembered.
const REFUSED_FOR: Duration = Duration::from_secs(60);

/// The shape of a nonce worth asking about: 8–512 URL-safe characters.
pub(crate) fn well_formed(nonce: &str) -> bool {
    (8..=512).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~'))
}

impl Default for NonceExchanges {
    fn default() -> Self {
        Self::new(GLOBAL_RATE, CLIENT_RATE)
    }
}

impl NonceExchanges {
    pub(crate) fn new(global: Rate, per_client: Rate) -> Self {
        Self {
            budget: ClientBudget::new(global, per_client),
            refused: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(REFUSED_FOR)
                .build(),
            inflight: moka::future::Cache::builder().max_capacity(10_000).build(),
        }
    }

    /// Exchanges `nonce` for its payload, for a request from `client`. `Err` for what says
    /// nothing about the nonce (an outage, a 429, a refused secret key).
    pub(crate) async fn exchange(
        &self,
        api: &BackendApi,
        nonce: &str,
        client: Option<IpAddr>,
    ) -> Result<NonceAnswer, ApiError> {
        if !well_formed(nonce) {
            return Ok(NonceAnswer::Refused);
        }
        let key: Arc<str> = Arc::from(nonce);
        if self.refused.contains_key(&key) {
            return Ok(NonceAnswer::Refused);
        }
        let answer = self
            .inflight
            .try_get_with(key.clone(), async {
                let Some(reservation) = self.budget.reserve(client) else {
                    return Ok(NonceAnswer::OverBudget);
                };
                match api.handshake_payload(nonce).await {
                    Ok(body) => {
                        reservation.refund();
                        Ok(NonceAnswer::Payload(body))
                    }
                    // Nothing learnt about the nonce (an outage, a 429, the key): not charged.
                    Err(err)
                        if err.is_transient()
                            || err.is_invalid_secret_key()
                            || matches!(
                                err,
                                ApiError::RateLimited { .. } | ApiError::NoSecretKey
                            ) =>
                    {
                        reservation.refund();
                        Err(err)
                    }
                    // 404 (unknown or used) and other 4xx: the nonce is no good.
                    Err(_) => {
                        self.refused.insert(key.clone(), ());
                        Ok(NonceAnswer::Refused)
                    }
                }
            })
            .await;
        self.inflight.invalidate(&key).await;
        answer.map_err(|err| (*err).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_url_safe_nonces_of_a_sane_length_are_asked_about() {
        for good in ["abcdefgh", "nonce_2abcDEF-123.x~", &"a".repeat(512)] {
            assert!(well_formed(good), "{good}");
        }
        for bad in [
            "",
            "short",
            &"a".repeat(513),
            "has space1",
            "semi;colon1",
            "quote\"d12",
            "ünïcødé123",
            "new\nline12",
            "per%2Fcent",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }
}
