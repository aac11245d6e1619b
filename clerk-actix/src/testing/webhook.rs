//! Signed Clerk webhook deliveries for tests: what Svix would POST to your endpoint.

use std::time::Duration;

use serde_json::{json, Value};

use super::token::unix_now;
use crate::mirror::webhooks::WebhookVerifier;

/// The signing secret `MockClerk` signs webhooks with.
pub const MOCK_WEBHOOK_SECRET: &str = "whsec_Y2xlcmstYWN0aXggbW9jayB3ZWJob29rIHNlY3JldCE=";

/// One signed delivery. Send it with [`send`](Self::send); send it again to replay it.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    /// `svix-id`.
    pub svix_id: String,
    /// `svix-timestamp` (Unix seconds).
    pub timestamp: i64,
    /// The raw body.
    pub body: String,
    /// `svix-signature`.
    pub signature: String,
}

impl WebhookDelivery {
    /// A delivery of `{"type": event_type, "data": data, ...}` signed with `secret`, stamped now.
    pub fn new(secret: &str, event_type: &str, data: Value) -> Self {
        Self::at(secret, event_type, data, unix_now())
    }

    /// The same, with an explicit `svix-timestamp`.
    pub fn at(secret: &str, event_type: &str, data: Value, timestamp: i64) -> Self {
        let body = json!({
            "data": data,
            "event_attributes": {"http_request": {"client_ip": "127.0.0.1", "user_agent": "clerk-actix-test"}},
            "instance_id": "ins_mock",
            "object": "event",
            "timestamp": timestamp * 1000,
            "type": event_type,
        })
        .to_string();
        let svix_id = format!("msg_{:016x}", fastrand::u64(..));
        Self::sign(secret, svix_id, timestamp, body)
    }

    /// Signs an exact body.
    pub fn sign(secret: &str, svix_id: String, timestamp: i64, body: String) -> Self {
        let signature = match WebhookVerifier::new(secret) {
            Ok(v) => v.sign(&svix_id, timestamp, body.as_bytes()),
            Err(_) => String::from("v1,invalid-secret"),
        };
        Self {
            svix_id,
            timestamp,
            body,
            signature,
        }
    }

    /// The three Svix headers.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("svix-id", self.svix_id.clone()),
            ("svix-timestamp", self.timestamp.to_string()),
            ("svix-signature", self.signature.clone()),
        ]
    }

    /// POSTs the delivery to `url` (an app on 127.0.0.1) and returns the status and JSON body.
    /// Needs an actix runtime (awc).
    pub async fn send(&self, url: &str) -> Result<(u16, Value), String> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let mut req = client
            .post(url)
            .insert_header(("content-type", "application/json"));
        for (name, value) in self.headers() {
            req = req.insert_header((name, value));
        }
        let mut res = req
            .send_body(self.body.clone())
            .await
            .map_err(|e| e.to_string())?;
        let body = res.body().await.map_err(|e| e.to_string())?;
        Ok((
            res.status().as_u16(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ))
    }
}
