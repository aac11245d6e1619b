//! The guide: how to use clerk-actix, one chapter per module. Every Rust example here is a
//! doctest compiled by `cargo test --doc -p clerk-actix --all-features` (`no_run` where it would
//! start a server), so the guide cannot drift from the code. Read it rendered with
//! `cargo doc -p clerk-actix --all-features --open` (or on docs.rs); the Markdown sources are in
//! `clerk-actix/src/guide/`.
//!
//! | chapter | what |
//! |---|---|
//! | [`configuration`](crate::guide::configuration) | the `Clerk` handle, every environment variable and builder method, `ConfigError` |
//! | [`usage`](crate::guide::usage) | the middleware and its modes, the extractors, `has()`, verifying tokens directly, the client API, events and custom error responses |
//! | [`guards`](crate::guide::guards) | `#[clerk_protected]`: keys, compile-time checks, statuses, what it expands to |
//! | [`user_sync`](crate::guide::user_sync) | `ClerkUser<U>`, the user cache, the stores, outages, deletions and bans |
//! | [`custom_models`](crate::guide::custom_models) | `#[derive(ClerkUser)]` for a diesel model of your own |
//! | [`webhooks`](crate::guide::webhooks) | Svix-signed `user.*` events: the endpoint, ordering, replays, deletions |
//! | [`machine_tokens`](crate::guide::machine_tokens) | API keys, M2M tokens, OAuth tokens: verification, budgets, caching, per-handler acceptance |
//! | [`server_rendered`](crate::guide::server_rendered) | the handshake for server-rendered pages (cookies, the 307, the nonce exchange) |
//! | [`replicas`](crate::guide::replicas) | several processes on one PostgreSQL database, poolers, least-privilege roles, TLS |
//! | [`observability`](crate::guide::observability) | events, tracing spans, metrics, `/readyz` |
//! | [`security`](crate::guide::security) | errors as HTTP, Clerk's rules, caches and JWKS, the security model |
//! | [`testing`](crate::guide::testing) | the testing kit (`MockClerk`, tokens, faults, a test clock, webhooks) and the project's own tests |
//! | [`reliability`](crate::guide::reliability) | performance and reliability: what is measured and how to re-run it |

#[doc = include_str!("configuration.md")]
pub mod configuration {}
#[doc = include_str!("usage.md")]
pub mod usage {}
#[doc = include_str!("guards.md")]
pub mod guards {}
#[doc = include_str!("user_sync.md")]
pub mod user_sync {}
#[doc = include_str!("custom_models.md")]
pub mod custom_models {}
#[doc = include_str!("webhooks.md")]
pub mod webhooks {}
#[doc = include_str!("machine_tokens.md")]
pub mod machine_tokens {}
#[doc = include_str!("server_rendered.md")]
pub mod server_rendered {}
#[doc = include_str!("replicas.md")]
pub mod replicas {}
#[doc = include_str!("observability.md")]
pub mod observability {}
#[doc = include_str!("security.md")]
pub mod security {}
#[doc = include_str!("testing.md")]
pub mod testing {}
#[doc = include_str!("reliability.md")]
pub mod reliability {}
