//! The Backend API user object (`GET /v1/users/{id}`, webhook `user.*` data), deserialised
//! leniently: unknown fields ignored, nullable fields nullable, times in Unix milliseconds.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// `null` (or a missing field) becomes the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One of the user's email addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct EmailAddress {
    /// `idn_...`.
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// The address.
    #[serde(default, deserialize_with = "nullable")]
    pub email_address: String,
    /// `verified`, `unverified`, ... (from `verification.status`).
    #[serde(
        default,
        rename = "verification",
        deserialize_with = "verification_status",
        serialize_with = "verification_object"
    )]
    pub verification_status: Option<String>,
}

/// One of the user's phone numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct PhoneNumber {
    /// `idn_...`.
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// The number, E.164.
    #[serde(default, deserialize_with = "nullable")]
    pub phone_number: String,
    /// `verified`, `unverified`, ...
    #[serde(
        default,
        rename = "verification",
        deserialize_with = "verification_status",
        serialize_with = "verification_object"
    )]
    pub verification_status: Option<String>,
}

fn verification_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(|v| v.get("status"))
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// The inverse of [`verification_status`]: Clerk's shape, `{"status": ...}` or `null`, so that a
/// serialised user parses back to itself (a field written as a bare string was read back as no
/// status at all; found by the `backend_api` fuzz target's round-trip check).
fn verification_object<S: Serializer>(status: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Verification<'a> {
        status: &'a str,
    }
    status
        .as_deref()
        .map(|status| Verification { status })
        .serialize(s)
}

/// A Clerk user as the Backend API returns it (spec §6.2). Only the fields the sync uses are
/// typed; everything else is ignored. Times are Unix **milliseconds**.
///
/// ```
/// let json = r#"{"id":"user_1","primary_email_address_id":"idn_2",
///   "email_addresses":[{"id":"idn_1","email_address":"old@x.dev"},
///                      {"id":"idn_2","email_address":"new@x.dev"}],
///   "banned":false,"locked":null,"updated_at":1716883200000,"some_new_field":42}"#;
/// let user: clerk_actix::ClerkUserData = serde_json::from_str(json).unwrap();
/// assert_eq!(user.primary_email(), Some("new@x.dev"));
/// assert!(user.is_active());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct ClerkUserData {
    /// `user_...`.
    pub id: String,
    /// Your own id for the user, if set in Clerk.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The id (in `email_addresses`) of the primary address.
    #[serde(default)]
    pub primary_email_address_id: Option<String>,
    /// The id (in `phone_numbers`) of the primary number.
    #[serde(default)]
    pub primary_phone_number_id: Option<String>,
    /// Username, when the instance uses them.
    #[serde(default)]
    pub username: Option<String>,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Profile image URL.
    #[serde(default)]
    pub image_url: Option<String>,
    /// Whether the user uploaded an image (otherwise `image_url` is a default avatar).
    #[serde(default, deserialize_with = "nullable")]
    pub has_image: bool,
    /// Every email address.
    #[serde(default, deserialize_with = "nullable")]
    pub email_addresses: Vec<EmailAddress>,
    /// Every phone number.
    #[serde(default, deserialize_with = "nullable")]
    pub phone_numbers: Vec<PhoneNumber>,
    /// Metadata readable by the frontend.
    #[serde(default)]
    pub public_metadata: Value,
    /// Backend-only metadata.
    #[serde(default)]
    pub private_metadata: Value,
    /// Metadata writable by the frontend.
    #[serde(default)]
    pub unsafe_metadata: Value,
    /// Banned by an administrator.
    #[serde(default, deserialize_with = "nullable")]
    pub banned: bool,
    /// Locked out after failed attempts.
    #[serde(default, deserialize_with = "nullable")]
    pub locked: bool,
    /// Last activity (day precision), ms.
    #[serde(default)]
    pub last_active_at: Option<i64>,
    /// Last sign-in, ms.
    #[serde(default)]
    pub last_sign_in_at: Option<i64>,
    /// Creation, ms.
    #[serde(default, deserialize_with = "nullable")]
    pub created_at: i64,
    /// Last change in Clerk, ms: orders updates (an older one never overwrites a newer one).
    #[serde(default, deserialize_with = "nullable")]
    pub updated_at: i64,
}

impl ClerkUserData {
    /// A user with only an id (for tests and manual construction).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// The address whose id is `primary_email_address_id`.
    pub fn primary_email(&self) -> Option<&str> {
        let id = self.primary_email_address_id.as_deref()?;
        self.email_addresses
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.email_address.as_str())
    }

    /// The number whose id is `primary_phone_number_id`.
    pub fn primary_phone(&self) -> Option<&str> {
        let id = self.primary_phone_number_id.as_deref()?;
        self.phone_numbers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.phone_number.as_str())
    }

    /// `!banned && !locked`.
    pub fn is_active(&self) -> bool {
        !self.banned && !self.locked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serialised_user_parses_back_to_itself() {
        let json = r#"{"id":"user_1","primary_email_address_id":"idn_1",
            "email_addresses":[{"id":"idn_1","email_address":"a@x.dev","verification":{"status":"verified"}}],
            "phone_numbers":[{"id":"idn_2","phone_number":"+15550100","verification":{"status":"unverified"}}]}"#;
        let user: ClerkUserData = serde_json::from_str(json).unwrap();
        assert_eq!(
            user.email_addresses[0].verification_status.as_deref(),
            Some("verified")
        );
        let again: ClerkUserData =
            serde_json::from_slice(&serde_json::to_vec(&user).unwrap()).unwrap();
        assert_eq!(again, user);
        assert_eq!(
            again.phone_numbers[0].verification_status.as_deref(),
            Some("unverified")
        );
    }

    #[test]
    fn the_openapi_webhook_example_parses() {
        let json = r#"{
            "object": "user", "id": "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "external_id": null,
            "primary_email_address_id": "idn_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "primary_phone_number_id": null,
            "username": null, "first_name": "John", "last_name": "Doe",
            "image_url": "https://img.clerk.com/xxxxxx", "has_image": true,
            "public_metadata": {}, "private_metadata": null, "unsafe_metadata": {},
            "email_addresses": [], "phone_numbers": [], "banned": false, "locked": false,
            "updated_at": 1716883200000, "created_at": 1716883200000, "last_active_at": 1716883200000,
            "last_sign_in_at": 1716883200000, "legal_accepted_at": 1716883200000
        }"#;
        let u: ClerkUserData = serde_json::from_str(json).unwrap();
        assert_eq!(u.first_name.as_deref(), Some("John"));
        assert_eq!(
            u.primary_email(),
            None,
            "the primary id is not in the (empty) list"
        );
        assert_eq!(u.updated_at, 1_716_883_200_000);
        assert!(u.private_metadata.is_null());
    }

    #[test]
    fn nulls_and_missing_fields_are_tolerated() {
        let u: ClerkUserData = serde_json::from_str(
            r#"{"id":"user_x","email_addresses":null,"banned":null,"locked":true,"created_at":null}"#,
        )
        .unwrap();
        assert!(u.email_addresses.is_empty());
        assert!(!u.banned && u.locked && !u.is_active());
        assert_eq!(u.created_at, 0);
    }

    #[test]
    fn primary_email_is_resolved_by_id_not_position() {
        let u: ClerkUserData = serde_json::from_str(
            r#"{"id":"user_x","primary_email_address_id":"idn_b","primary_phone_number_id":"idn_p",
                "email_addresses":[{"id":"idn_a","email_address":"a@x.dev"},
                                   {"id":"idn_b","email_address":"b@x.dev","verification":{"status":"verified"}}],
                "phone_numbers":[{"id":"idn_p","phone_number":"+15555550100"}]}"#,
        )
        .unwrap();
        assert_eq!(u.primary_email(), Some("b@x.dev"));
        assert_eq!(
            u.email_addresses[1].verification_status.as_deref(),
            Some("verified")
        );
        assert_eq!(u.primary_phone(), Some("+15555550100"));
    }
}
