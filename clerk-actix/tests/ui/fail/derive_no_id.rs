diesel::table! {
    people (id) {
        id -> BigInt,
        active -> Bool,
        email -> Nullable<Text>,
    }
}

#[derive(diesel::Queryable, diesel::Selectable, Clone, clerk_actix::ClerkUser)]
#[diesel(table_name = people)]
struct Person {
    id: i64,
    #[clerk(is_active)]
    active: bool,
    #[clerk(email)]
    email: Option<String>,
}

fn main() {}
