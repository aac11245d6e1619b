//! Test kit (feature `testing`): [`MockClerk`], a real Clerk-like HTTP server on 127.0.0.1,
//! and [`TokenBuilder`] for v1/v2 session tokens, valid or deliberately broken.
//!
//! Used by this crate's own tests, by the quickstart's dev mode, and meant for yours:
//!
//! ```
//! use actix_web::{test, web, App, HttpResponse};
//! use clerk_actix::{testing::MockClerk, ClerkMiddleware, ClerkSession};
//!
//! # actix_web::rt::System::new().block_on(async {
//! let mock = MockClerk::start();
//! let clerk = mock.clerk_builder().build().unwrap();
//! let app = test::init_service(
//!     App::new()
//!         .wrap(ClerkMiddleware::new(clerk))
//!         .route("/me", web::get().to(|s: ClerkSession| async move {
//!             HttpResponse::Ok().body(s.user_id().to_owned())
//!         })),
//! )
//! .await;
//! let token = mock.token().subject("user_42").build();
//! let req = test::TestRequest::get()
//!     .uri("/me")
//!     .insert_header(("Authorization", format!("Bearer {token}")))
//!     .to_request();
//! let body = test::call_and_read_body(&app, req).await;
//! assert_eq!(body, "user_42");
//! # });
//! ```

mod clock;
mod frontend;
mod keys;
mod mock;
mod state;
mod token;
mod webhook;

pub use clock::TestClock;
pub use keys::{TestKey, TEST_KEYS};
pub use mock::{mock_user_json, MockClerk, MOCK_SECRET_KEY};
pub use state::{Endpoint, Fault, FrontendFault};
#[cfg(feature = "fuzzing")]
pub(crate) use token::sign_rs256;
pub use token::{unix_now, Breakage, TokenBuilder, TEST_AUTHORIZED_PARTY, TEST_ISSUER};
pub use webhook::{WebhookDelivery, MOCK_WEBHOOK_SECRET};
