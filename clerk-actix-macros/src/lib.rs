//! Procedural macros for [clerk-actix](https://docs.rs/clerk-actix). Use them through
//! `clerk_actix` (`clerk_actix::clerk_protected`), which re-exports them; this crate's paths
//! are not part of the public API.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proc_macro::TokenStream;

mod protected;

/// Guards an actix handler with Clerk authorization.
///
/// - `#[clerk_protected]`: any signed-in session;
/// - `#[clerk_protected(role = "org:admin")]`, `permission = "org:invoices:read"`,
///   `feature = "o:billing"`, `plan = "pro"`; several keys: all of them;
/// - `any(...)` / `all(...)` nest: `#[clerk_protected(any(role = "org:admin", permission = "org:x:y"))]`;
/// - `crate = path` when `clerk_actix` is renamed in your `Cargo.toml`.
///
/// It adds a first parameter `clerk_actix::guard::Protected<R>` (a zero-sized requirement `R`
/// holding the rule in a `const`), so the check runs before any other extractor. Anonymous →
/// 401, lacking → 403 `insufficient_scope`, both through the global error hook. The handler's
/// return type and body are untouched; it works above or below `#[get(...)]` and on handlers
/// registered with `.route(...)`. Stacked attributes combine as "all".
#[proc_macro_attribute]
pub fn clerk_protected(args: TokenStream, item: TokenStream) -> TokenStream {
    protected::expand(args.into(), item.into()).into()
}
