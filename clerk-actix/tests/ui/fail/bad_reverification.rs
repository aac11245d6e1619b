use clerk_actix::clerk_protected;

#[clerk_protected(reverification = "sometimes")]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
