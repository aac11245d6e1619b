use clerk_actix::clerk_protected;

#[clerk_protected(permission = "invoices")]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
