use clerk_actix::clerk_protected;

#[clerk_protected(permission = "invoices:read")]
async fn handler() -> &'static str {
    "hi"
}

fn main() {}
