//! Procedural macros for [clerk-actix](https://docs.rs/clerk-actix). Use them through
//! `clerk_actix` (`clerk_actix::clerk_protected`), which re-exports them; this crate's paths
//! are not part of the public API.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proc_macro::TokenStream;

mod derive;
mod protected;

/// Makes your own diesel model a synced Clerk user: `DieselUserStore<YourModel>` and
/// `ClerkUser<YourModel>` then work with it.
///
/// Field attributes: `#[clerk(id)]` (exactly one: the Clerk user id, unique column),
/// `email`, `username`, `first_name`, `last_name`, `image_url`, `phone`, `external_id`,
/// `last_active_at`, `last_sign_in_at`, `is_active`, `banned`, `locked`, `public_metadata`,
/// `private_metadata`, `unsafe_metadata`, `created_at`, `updated_at`, `synced_at` (BIGINT, Unix
/// ms: when the row was written from Clerk's data; a user-cache miss serves a row synced within
/// the user-cache TTL without a Backend API call, so replicas share their calls), and
/// `with = path::to::fn` (`fn(&ClerkUserData) -> FieldType`) for computed fields. The table is
/// `#[diesel(table_name = ...)]`, columns follow `#[diesel(column_name = ...)]`. Unmapped
/// fields stay local: the database default on insert, untouched on update. `is_active` is
/// required (a `bool` column): it is what refuses banned, locked and deactivated users, so a
/// model without it is a compile error rather than a model that lets everyone in. Map
/// `updated_at` (BIGINT, Unix ms) so older updates never overwrite newer ones, in the table and
/// in the user cache. `#[clerk(crate = path)]` on the struct for a renamed dependency.
#[proc_macro_derive(ClerkUser, attributes(clerk))]
pub fn derive_clerk_user(input: TokenStream) -> TokenStream {
    derive::expand(input.into()).into()
}

/// Guards an actix handler with Clerk authorization.
///
/// - `#[clerk_protected]`: any signed-in session;
/// - `#[clerk_protected(role = "org:admin")]`, `permission = "org:invoices:read"`,
///   `feature = "o:billing"`, `plan = "pro"`; several keys: all of them;
/// - `any(...)` / `all(...)` nest: `#[clerk_protected(any(role = "org:admin", permission = "org:x:y"))]`;
/// - `accepts_token = "api_key"` or a list (`"session_token"`, `"api_key"`, `"m2m_token"`,
///   `"oauth_token"`, `"any"`): the token types the handler takes, sessions only when absent.
///   This is the per-handler opt-in to machine tokens under an app-wide (optional-mode)
///   session middleware: a token the middleware deferred is verified here;
/// - `scope = "read:reports"`: the machine token was granted this scope (checks combine with
///   `any(...)` / `all(...)` like the others);
/// - `crate = path` when `clerk_actix` is renamed in your `Cargo.toml`.
///
/// Checks that can never hold are compile errors: a `scope` on a handler that takes sessions
/// only, a `role`, `permission`, `feature`, `plan` or `reverification` on one that takes
/// machine tokens only.
///
/// It adds a first parameter `clerk_actix::guard::Protected<R>` (a zero-sized requirement `R`
/// holding the rule and the accepted types in `const`s), so the check runs before any other
/// extractor. Anonymous → 401, a token of a type the handler does not take → 401
/// `token-type-mismatch`, lacking → 403 `insufficient_scope`, all through the global error
/// hook. The handler's return type and body are untouched; it works above or below
/// `#[get(...)]` and on handlers registered with `.route(...)`. Stacked attributes combine as
/// "all" (each with its own `accepts_token`: a machine token passes only if every one takes it).
#[proc_macro_attribute]
pub fn clerk_protected(args: TokenStream, item: TokenStream) -> TokenStream {
    protected::expand(args.into(), item.into()).into()
}
