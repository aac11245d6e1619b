use clerk_actix::clerk_protected;

// An unknown token type.
#[clerk_protected(accepts_token = ["api_key", "api_keys"])]
async fn unknown_type() -> &'static str {
    "a"
}

// A scope can only hold for machine tokens, and this handler takes sessions only.
#[clerk_protected(scope = "read:reports")]
async fn scope_on_sessions() -> &'static str {
    "b"
}

// A role can only hold for sessions, and this handler takes API keys only.
#[clerk_protected(accepts_token = "api_key", any(scope = "read", role = "org:admin"))]
async fn role_on_machines() -> &'static str {
    "c"
}

// accepts_token belongs to the handler, not to a branch.
#[clerk_protected(any(accepts_token = "api_key", role = "org:admin"))]
async fn nested_accepts() -> &'static str {
    "d"
}

fn main() {}
