diesel::table! {
    people (id) {
        id -> BigInt,
        active -> Bool,
        clerk_id -> Text,
        email -> Nullable<Text>,
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
    #[clerk(emial)]
    email: Option<String>,
}

fn main() {}
