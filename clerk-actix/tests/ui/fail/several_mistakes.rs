use clerk_actix::clerk_protected;

// Every mistake is reported, each at its own token.
#[clerk_protected(role = "org:admin:x", feature = "lol:x", plan = 5)]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
