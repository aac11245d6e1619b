use clerk_actix::clerk_protected;

// A role has no inner `:` ("admin" and "org:admin" are both fine).
#[clerk_protected(role = "org:admin:x")]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
