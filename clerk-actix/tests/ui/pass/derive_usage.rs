use clerk_actix::{store::DieselUserStore, ClerkUser, ClerkUserData};

diesel::table! {
    app_users (id) {
        id -> BigInt,
        clerk_id -> Text,
        email_address -> Nullable<Text>,
        display_name -> Text,
        plan -> Text,
        active -> Bool,
        clerk_updated_at -> BigInt,
    }
}

fn display_name(u: &ClerkUserData) -> String {
    u.first_name.clone().unwrap_or_default()
}

#[derive(diesel::Queryable, diesel::Selectable, Clone, ClerkUser)]
#[diesel(table_name = app_users)]
pub struct AppUser {
    pub id: i64,
    #[clerk(id)]
    pub clerk_id: String,
    #[clerk(email)]
    #[diesel(column_name = email_address)]
    pub email: Option<String>,
    #[clerk(with = display_name)]
    pub display_name: String,
    pub plan: String,
    #[clerk(is_active)]
    pub active: bool,
    #[clerk(updated_at)]
    pub clerk_updated_at: i64,
}

async fn handler(user: ClerkUser<AppUser>) -> String {
    user.plan.clone()
}

fn main() {
    fn store_type(_: Option<DieselUserStore<AppUser>>) {}
    store_type(None);
    let _ = actix_web::web::get().to(handler);
}
