diesel::table! {
    people (id) {
        id -> BigInt,
        clerk_id -> Nullable<Text>,
    }
}

#[derive(diesel::Queryable, diesel::Selectable, Clone, clerk_actix::ClerkUser)]
#[diesel(table_name = people)]
struct Person {
    id: i64,
    #[clerk(id)]
    clerk_id: Option<String>,
}

fn main() {}
