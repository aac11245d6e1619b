diesel::table! {
    people (id) {
        id -> BigInt,
        clerk_id -> Text,
        banned -> Bool,
    }
}

// Without an activity field, banned, locked and deleted users would pass: refused.
#[derive(diesel::Queryable, diesel::Selectable, Clone, clerk_actix::ClerkUser)]
#[diesel(table_name = people)]
struct Person {
    id: i64,
    #[clerk(id)]
    clerk_id: String,
    #[clerk(banned)]
    banned: bool,
}

fn main() {}
