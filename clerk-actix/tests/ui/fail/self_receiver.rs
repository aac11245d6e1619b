use clerk_actix::clerk_protected;

struct Handlers;

impl Handlers {
    #[clerk_protected]
    async fn handler(&self) -> &'static str {
        "hi"
    }
}

fn main() {}
