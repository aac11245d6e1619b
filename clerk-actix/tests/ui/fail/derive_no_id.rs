diesel::table! {
    people (id) {
        id -> BigInt,
        email -> Nullable<Text>,
    }
}

#[derive(diesel::Queryable, diesel::Selectable, Clone, clerk_actix::ClerkUser)]
#[diesel(table_name = people)]
struct Person {
    id: i64,
    #[clerk(email)]
    email: Option<String>,
}

fn main() {}
