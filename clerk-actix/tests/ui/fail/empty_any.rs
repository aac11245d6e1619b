use clerk_actix::clerk_protected;

#[clerk_protected(any())]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
