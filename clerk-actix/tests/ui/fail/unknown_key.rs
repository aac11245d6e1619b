use clerk_actix::clerk_protected;

#[clerk_protected(rol = "org:admin")]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
