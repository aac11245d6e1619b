diesel::table! {
    people (id) {
        id -> BigInt,
        active -> Bool,
        clerk_id -> Text,
        created -> Integer,
    }
}

#[derive(diesel::Queryable, diesel::Selectable, Clone, clerk_actix::ClerkUser)]
#[diesel(table_name = people)]
struct Person {
    id: i64,
    #[clerk(is_active)]
    active: bool,
    #[clerk(id)]
    clerk_id: String,
    // Clerk times are Unix milliseconds: an i32 cannot hold them.
    #[clerk(created_at)]
    created: i32,
}

fn main() {}
