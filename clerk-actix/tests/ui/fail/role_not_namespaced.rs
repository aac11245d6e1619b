use clerk_actix::clerk_protected;

#[clerk_protected(role = "admin")]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
