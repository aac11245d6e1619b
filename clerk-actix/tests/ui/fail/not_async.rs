use clerk_actix::clerk_protected;

#[clerk_protected]
fn handler() -> &'static str {
    "hi"
}

fn main() {}
