//! Session-token claims, v1 and v2 unified, and the `has()` authorization check (spec §2).

use std::borrow::Cow;

use num_bigint::BigUint;
use serde::Serialize;
use serde_json::{Map, Value};

/// The `sts` claim: whether the session is active or still has tasks pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SessionStatus {
    /// `"active"`.
    Active,
    /// `"pending"`: the user still has session tasks (e.g. choosing an organization).
    Pending,
    /// Any other value, kept verbatim.
    #[serde(untagged)]
    Other(String),
}

/// The organization active in the session (v1 `org_*` claims or the v2 `o` claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveOrganization {
    id: String,
    role: Option<String>,
    slug: Option<String>,
    permissions: Vec<String>,
}

impl ActiveOrganization {
    /// `org_...`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The role with its `org:` prefix, e.g. `org:admin` (v2's `rol` is prefixed for you).
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }
    /// The organization slug.
    pub fn slug(&self) -> Option<&str> {
        self.slug.as_deref()
    }
    /// Permissions such as `org:invoices:read` (v2: decoded from `fea`/`per`/`fpm`). System
    /// permissions (`org:sys_*`) are never in a token.
    pub fn permissions(&self) -> &[String] {
        &self.permissions
    }
}

/// The `act` claim: present while someone impersonates the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The impersonator's user id.
    pub sub: Option<String>,
    /// Issuer of the actor token.
    pub iss: Option<String>,
    /// The impersonator's session id.
    pub sid: Option<String>,
    /// Actor type, e.g. `"agent"`.
    #[serde(rename = "type")]
    pub actor_type: Option<String>,
}

/// Verified claims of a Clerk session token, v1 and v2 in one shape.
///
/// Obtain it from [`TokenVerifier::verify_at`](crate::TokenVerifier::verify_at) or, in a
/// handler, through [`ClerkSession`](crate::ClerkSession) (which derefs to it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClerkClaims {
    user_id: String,
    session_id: Option<String>,
    session_status: Option<SessionStatus>,
    authorized_party: Option<String>,
    issuer: Option<String>,
    expires_at: i64,
    issued_at: Option<i64>,
    not_before: Option<i64>,
    token_id: Option<String>,
    version: u8,
    org: Option<ActiveOrganization>,
    features: Option<String>,
    plans: Option<String>,
    factor_verification_age: Option<[i64; 2]>,
    actor: Option<Actor>,
    #[serde(rename = "claims")]
    raw: Map<String, Value>,
}

impl ClerkClaims {
    /// Builds claims from a payload whose `sub` and `exp` were already checked.
    pub(crate) fn from_payload(raw: Map<String, Value>, user_id: String, expires_at: i64) -> Self {
        let version = if raw.get("v").and_then(Value::as_f64) == Some(2.0) {
            2
        } else {
            1
        };
        let str_claim = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_owned);
        let int_claim = |name: &str| {
            raw.get(name)
                .and_then(Value::as_f64)
                .map(|f| f.trunc() as i64)
        };
        let session_status = raw.get("sts").and_then(Value::as_str).map(|s| match s {
            "active" => SessionStatus::Active,
            "pending" => SessionStatus::Pending,
            other => SessionStatus::Other(other.to_owned()),
        });
        let (features, plans) = if version == 2 {
            (str_claim("fea"), str_claim("pla"))
        } else {
            (None, None)
        };
        let org = if version == 2 {
            org_v2(&raw)
        } else {
            org_v1(&raw)
        };
        let factor_verification_age =
            raw.get("fva")
                .and_then(Value::as_array)
                .and_then(|a| match a.as_slice() {
                    [f1, f2] => Some([f1.as_i64()?, f2.as_i64()?]),
                    _ => None,
                });
        let actor = raw.get("act").and_then(Value::as_object).map(|act| {
            let s = |n: &str| act.get(n).and_then(Value::as_str).map(str::to_owned);
            Actor {
                sub: s("sub"),
                iss: s("iss"),
                sid: s("sid"),
                actor_type: s("type"),
            }
        });
        Self {
            session_id: str_claim("sid"),
            authorized_party: str_claim("azp"),
            issuer: str_claim("iss"),
            issued_at: int_claim("iat"),
            not_before: int_claim("nbf"),
            token_id: str_claim("jti"),
            user_id,
            session_status,
            expires_at,
            version,
            org,
            features,
            plans,
            factor_verification_age,
            actor,
            raw,
        }
    }

    /// Claims from a payload that was already verified elsewhere (signature, times, azp):
    /// `None` without a string `sub` or a numeric `exp`. Decodes v1 and v2 exactly as
    /// [`TokenVerifier`](crate::TokenVerifier) does.
    pub fn from_verified_payload(payload: Map<String, Value>) -> Option<Self> {
        let sub = payload.get("sub")?.as_str()?.to_owned();
        let exp = payload.get("exp")?.as_f64()?.trunc() as i64;
        Some(Self::from_payload(payload, sub, exp))
    }

    /// `sub`: the Clerk user id (`user_...`).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
    /// `sid`: the session id (`sess_...`); absent in JWT-template tokens.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }
    /// `sts`: absent unless the instance opted in to session tasks.
    pub fn session_status(&self) -> Option<&SessionStatus> {
        self.session_status.as_ref()
    }
    /// True when `sts` is `"pending"`.
    pub fn is_pending(&self) -> bool {
        self.session_status == Some(SessionStatus::Pending)
    }
    /// `azp`: the origin that minted the token.
    pub fn authorized_party(&self) -> Option<&str> {
        self.authorized_party.as_deref()
    }
    /// `iss`: the instance's Frontend API URL.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }
    /// `exp`, Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
    /// `iat`, Unix seconds.
    pub fn issued_at(&self) -> Option<i64> {
        self.issued_at
    }
    /// `nbf`, Unix seconds.
    pub fn not_before(&self) -> Option<i64> {
        self.not_before
    }
    /// `jti` (v2).
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }
    /// The claims version: 2 when the token has `"v": 2`, otherwise 1.
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The active organization, if any.
    pub fn org(&self) -> Option<&ActiveOrganization> {
        self.org.as_ref()
    }
    /// Feature entries of `fea` as `(scope, feature)`, e.g. `("o", "dashboard")` (v2 only).
    pub fn features(&self) -> impl Iterator<Item = (&str, &str)> {
        scoped_entries(self.features.as_deref())
    }
    /// Plan entries of `pla` as `(scope, plan)` (v2 only).
    pub fn plans(&self) -> impl Iterator<Item = (&str, &str)> {
        scoped_entries(self.plans.as_deref())
    }
    /// `fva`: minutes since the first- and second-factor verification (`-1` = not enrolled).
    pub fn factor_verification_age(&self) -> Option<[i64; 2]> {
        self.factor_verification_age
    }
    /// `act`: the impersonator, when the session is impersonated.
    pub fn actor(&self) -> Option<&Actor> {
        self.actor.as_ref()
    }
    /// Any claim by name, including custom claims from the session-token template.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }
    /// All claims as they were in the token.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// Clerk's `has()`: true iff at least one requested dimension (organization role/permission,
    /// billing feature/plan, reverification) passes and none fails. `has(Has::default())` is
    /// false, as is any check on a token without a user.
    ///
    /// ```
    /// # use clerk_actix::{ClerkClaims, Has};
    /// # fn demo(claims: &ClerkClaims) {
    /// claims.has(Has::role("org:admin"));
    /// claims.has(Has::permission("org:invoices:read").and_feature("o:billing"));
    /// # }
    /// ```
    pub fn has(&self, check: Has<'_>) -> bool {
        if self.user_id.is_empty() {
            return false;
        }
        let dims = [
            self.check_org(&check),
            self.check_billing(&check),
            self.check_reverification(&check),
        ];
        dims.contains(&Some(true)) && !dims.contains(&Some(false))
    }

    fn check_org(&self, check: &Has<'_>) -> Option<bool> {
        if check.role.is_none() && check.permission.is_none() {
            return None;
        }
        let Some(org) = &self.org else {
            return Some(false);
        };
        let role_ok = check.role.is_none_or(|wanted| {
            org.role
                .as_deref()
                .is_some_and(|have| prefix_with_org(have) == prefix_with_org(wanted))
        });
        let permission_ok = check.permission.is_none_or(|wanted| {
            let wanted = prefix_with_org(wanted);
            org.permissions.iter().any(|p| *p == wanted)
        });
        Some(role_ok && permission_ok)
    }

    fn check_billing(&self, check: &Has<'_>) -> Option<bool> {
        if check.feature.is_none() && check.plan.is_none() {
            return None;
        }
        let feature_ok = check
            .feature
            .is_none_or(|f| billing_match(self.features.as_deref(), f));
        let plan_ok = check
            .plan
            .is_none_or(|p| billing_match(self.plans.as_deref(), p));
        Some(feature_ok && plan_ok)
    }

    fn check_reverification(&self, check: &Has<'_>) -> Option<bool> {
        let wanted = check.reverification?;
        let Some([f1, f2]) = self.factor_verification_age else {
            return Some(false);
        };
        let (level, after) = wanted.level_and_minutes();
        if after == 0 {
            return Some(false);
        }
        let after = i64::from(after);
        let fresh = |age: i64| age != -1 && after > age;
        Some(match level {
            VerificationLevel::FirstFactor => fresh(f1),
            VerificationLevel::SecondFactor => {
                if f2 != -1 {
                    fresh(f2)
                } else {
                    fresh(f1)
                }
            }
            VerificationLevel::MultiFactor => {
                if f2 == -1 {
                    fresh(f1)
                } else {
                    fresh(f1) && fresh(f2)
                }
            }
        })
    }
}

/// Strips any leading `org:` prefixes and adds exactly one (Clerk's `prefixWithOrg`).
fn prefix_with_org(value: &str) -> Cow<'_, str> {
    let mut bare = value;
    while let Some(rest) = bare.strip_prefix("org:") {
        bare = rest;
    }
    if bare.len() + 4 == value.len() {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("org:{bare}"))
    }
}

fn scoped_entries(claim: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    claim
        .into_iter()
        .flat_map(|s| s.split(',').map(str::trim))
        .filter_map(|entry| entry.split_once(':'))
}

/// Feature / plan check against a `fea` / `pla` claim (`scope:id` list).
fn billing_match(claim: Option<&str>, wanted: &str) -> bool {
    let Some(claim) = claim.filter(|c| !c.is_empty()) else {
        return false;
    };
    let (want_org, want_user, id) = match wanted.split_once(':') {
        Some((scope, id)) => match scope {
            "o" | "org" | "organization" => (true, false, id),
            "u" | "user" => (false, true, id),
            _ => return false,
        },
        None => (true, true, wanted),
    };
    let mut found = false;
    for entry in claim.split(',').map(str::trim) {
        // Clerk's splitByScope throws on an entry without a scope, and has() turns it into false.
        let Some((scope, entry_id)) = entry.split_once(':') else {
            return false;
        };
        if entry_id == id
            && ((want_org && scope.contains('o')) || (want_user && scope.contains('u')))
        {
            found = true;
        }
    }
    found
}

fn org_v1(raw: &Map<String, Value>) -> Option<ActiveOrganization> {
    let id = raw.get("org_id")?.as_str()?.to_owned();
    let s = |n: &str| raw.get(n).and_then(Value::as_str).map(str::to_owned);
    let permissions = raw
        .get("org_permissions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some(ActiveOrganization {
        id,
        role: s("org_role"),
        slug: s("org_slug"),
        permissions,
    })
}

fn org_v2(raw: &Map<String, Value>) -> Option<ActiveOrganization> {
    let o = raw.get("o")?.as_object()?;
    let id = o.get("id")?.as_str()?.to_owned();
    let s = |n: &str| o.get(n).and_then(Value::as_str);
    Some(ActiveOrganization {
        id,
        role: s("rol").map(|r| prefix_with_org(r).into_owned()),
        slug: s("slg").map(str::to_owned),
        permissions: decode_org_permissions(
            raw.get("fea").and_then(Value::as_str),
            s("per"),
            s("fpm"),
        ),
    })
}

/// Decodes v2 organization permissions from `fea`, `o.per` and `o.fpm` (spec §2.4).
///
/// `fpm[i]` is the bitmask for the i-th entry of `fea` (the position rule of Clerk's docs and
/// its Python, Ruby and C# SDKs); entries whose scope does not include `o` yield nothing. Bit 0
/// is the first permission of `per`. Masks are decimal strings of any size; a malformed mask
/// grants nothing for its feature.
pub fn decode_org_permissions(
    fea: Option<&str>,
    per: Option<&str>,
    fpm: Option<&str>,
) -> Vec<String> {
    let (Some(fea), Some(per), Some(fpm)) = (fea, per, fpm) else {
        return Vec::new();
    };
    if fea.is_empty() || per.is_empty() || fpm.is_empty() {
        return Vec::new();
    }
    let permissions: Vec<&str> = per.split(',').map(str::trim).collect();
    let mut out = Vec::new();
    for (feature_entry, mask) in fea.split(',').map(str::trim).zip(fpm.split(',')) {
        let Some((scope, feature)) = feature_entry.split_once(':') else {
            continue;
        };
        if !scope.contains('o') {
            continue;
        }
        let mask = mask.trim();
        if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some(mask) = BigUint::parse_bytes(mask.as_bytes(), 10) else {
            continue;
        };
        for (bit, permission) in permissions.iter().enumerate() {
            if mask.bit(bit as u64) {
                out.push(format!("org:{feature}:{permission}"));
            }
        }
    }
    out
}

/// A factor level for [`Reverification::Custom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationLevel {
    /// The first factor (password, email code, ...).
    FirstFactor,
    /// The second factor, falling back to the first when no second factor is enrolled.
    SecondFactor,
    /// Both factors (the first alone when no second factor is enrolled).
    MultiFactor,
}

/// A reverification requirement, checked against the `fva` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reverification {
    /// Multi-factor within 10 minutes.
    StrictMfa,
    /// Second factor within 10 minutes.
    Strict,
    /// Second factor within 60 minutes.
    Moderate,
    /// Second factor within 24 hours.
    Lax,
    /// A custom level and freshness window (`after_minutes` must be > 0).
    Custom {
        /// Which factor(s) must be fresh.
        level: VerificationLevel,
        /// Maximum age in minutes.
        after_minutes: u32,
    },
}

impl Reverification {
    const fn level_and_minutes(self) -> (VerificationLevel, u32) {
        match self {
            Self::StrictMfa => (VerificationLevel::MultiFactor, 10),
            Self::Strict => (VerificationLevel::SecondFactor, 10),
            Self::Moderate => (VerificationLevel::SecondFactor, 60),
            Self::Lax => (VerificationLevel::SecondFactor, 1440),
            Self::Custom {
                level,
                after_minutes,
            } => (level, after_minutes),
        }
    }
}

/// What [`ClerkClaims::has`] checks: any combination of role, permission, feature, plan and
/// reverification. All given parts must hold. Builds in `const` context, so a guard's
/// requirement costs no allocation per request.
///
/// ```
/// use clerk_actix::Has;
/// const ADMIN_BILLING: Has<'static> = Has::role("org:admin").and_feature("o:billing");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Has<'a> {
    role: Option<&'a str>,
    permission: Option<&'a str>,
    feature: Option<&'a str>,
    plan: Option<&'a str>,
    reverification: Option<Reverification>,
}

impl<'a> Has<'a> {
    /// Organization role, `org:admin` (a bare `admin` means the same).
    pub const fn role(role: &'a str) -> Self {
        Self::none().and_role(role)
    }
    /// Organization permission, `org:invoices:read` (the `org:` prefix is optional).
    pub const fn permission(permission: &'a str) -> Self {
        Self::none().and_permission(permission)
    }
    /// Billing feature: `o:x` / `org:x`, `u:x` / `user:x`, or a bare `x` for either scope.
    pub const fn feature(feature: &'a str) -> Self {
        Self::none().and_feature(feature)
    }
    /// Billing plan, scoped as for [`feature`](Self::feature).
    pub const fn plan(plan: &'a str) -> Self {
        Self::none().and_plan(plan)
    }
    /// Reverification freshness.
    pub const fn reverification(reverification: Reverification) -> Self {
        Self::none().and_reverification(reverification)
    }
    const fn none() -> Self {
        Self {
            role: None,
            permission: None,
            feature: None,
            plan: None,
            reverification: None,
        }
    }
    /// Also require a role.
    pub const fn and_role(mut self, role: &'a str) -> Self {
        self.role = Some(role);
        self
    }
    /// Also require a permission.
    pub const fn and_permission(mut self, permission: &'a str) -> Self {
        self.permission = Some(permission);
        self
    }
    /// Also require a feature.
    pub const fn and_feature(mut self, feature: &'a str) -> Self {
        self.feature = Some(feature);
        self
    }
    /// Also require a plan.
    pub const fn and_plan(mut self, plan: &'a str) -> Self {
        self.plan = Some(plan);
        self
    }
    /// Also require reverification.
    pub const fn and_reverification(mut self, reverification: Reverification) -> Self {
        self.reverification = Some(reverification);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: Value) -> ClerkClaims {
        let Value::Object(map) = json else { panic!() };
        let sub = map
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        ClerkClaims::from_payload(map, sub, 0)
    }

    #[test]
    fn fpm_position_rule_from_the_docs_example() {
        assert_eq!(
            decode_org_permissions(
                Some("o:dashboard,o:teams"),
                Some("manage,read"),
                Some("3,2")
            ),
            [
                "org:dashboard:manage",
                "org:dashboard:read",
                "org:teams:read"
            ]
        );
    }

    #[test]
    fn fpm_mixed_scope_uses_position_in_fea() {
        assert_eq!(
            decode_org_permissions(
                Some("u:dashboard,o:teams,o:billing"),
                Some("manage,read"),
                Some("0,2,3")
            ),
            ["org:teams:read", "org:billing:manage", "org:billing:read"]
        );
    }

    #[test]
    fn fpm_masks_beyond_2_pow_53_are_exact() {
        let per: Vec<String> = (0..54).map(|i| format!("permission_{i}")).collect();
        let got =
            decode_org_permissions(Some("o:f"), Some(&per.join(",")), Some("9007199254740993"));
        assert_eq!(got, ["org:f:permission_0", "org:f:permission_53"]);
    }

    #[test]
    fn fpm_malformed_masks_grant_nothing() {
        for bad in ["1invalid", "-1", "1.5", "", "+1", "1_0"] {
            assert!(
                decode_org_permissions(Some("o:f"), Some("a,b"), Some(bad)).is_empty(),
                "{bad}"
            );
        }
        assert!(decode_org_permissions(None, Some("a"), Some("1")).is_empty());
        assert!(decode_org_permissions(Some("o:f"), None, Some("1")).is_empty());
        assert!(decode_org_permissions(Some("o:f"), Some("a"), None).is_empty());
        // Bits beyond per.len() are ignored.
        assert_eq!(
            decode_org_permissions(Some("o:f"), Some("a"), Some("255")),
            ["org:f:a"]
        );
    }

    #[test]
    fn has_of_nothing_is_false_and_no_user_is_false() {
        let c = claims(
            serde_json::json!({"sub": "user_1", "org_id": "org_1", "org_role": "org:admin"}),
        );
        assert!(!c.has(Has::default()));
        assert!(c.has(Has::role("admin")));
        let c = claims(serde_json::json!({"sub": "", "org_id": "org_1", "org_role": "org:admin"}));
        assert!(!c.has(Has::role("admin")));
    }

    #[test]
    fn role_and_permission_need_an_org_and_both_must_hold() {
        let c = claims(serde_json::json!({"sub": "user_1", "org_id": "org_1",
            "org_role": "org:admin", "org_permissions": ["org:a:read"]}));
        assert!(c.has(Has::role("org:admin").and_permission("a:read")));
        assert!(!c.has(Has::role("org:admin").and_permission("a:write")));
        assert!(!c.has(Has::role("org:member").and_permission("a:read")));
        assert!(!c.has(Has::permission("org:a")));
        assert!(c.has(Has::role("org:org:admin")));
        let no_org = claims(serde_json::json!({"sub": "user_1"}));
        assert!(!no_org.has(Has::role("org:admin")));
        // A failing org dimension is not rescued by a passing reverification.
        let no_org = claims(serde_json::json!({"sub": "user_1", "fva": [0, 0]}));
        assert!(!no_org.has(Has::role("org:admin").and_reverification(Reverification::Strict)));
        assert!(no_org.has(Has::reverification(Reverification::Strict)));
    }

    #[test]
    fn billing_scopes() {
        let c = claims(serde_json::json!({"sub": "user_1", "v": 2,
            "fea": "o:dashboard,u:profile,ou:both", "pla": "u:free"}));
        assert!(c.has(Has::feature("dashboard")));
        assert!(c.has(Has::feature("org:dashboard")));
        assert!(!c.has(Has::feature("user:dashboard")));
        assert!(c.has(Has::feature("u:profile")));
        assert!(c.has(Has::feature("o:both")) && c.has(Has::feature("u:both")));
        assert!(!c.has(Has::feature("lol:dashboard")));
        assert!(c.has(Has::plan("free")) && !c.has(Has::plan("o:free")));
        assert!(!c.has(Has::feature("dashboard").and_plan("pro")));
        let bad = claims(serde_json::json!({"sub": "user_1", "v": 2, "fea": "o:a,broken"}));
        assert!(!bad.has(Has::feature("a")));
        let v1 = claims(serde_json::json!({"sub": "user_1", "fea": "o:a"}));
        assert!(!v1.has(Has::feature("a")));
    }

    #[test]
    fn reverification_levels() {
        let c = |fva: Value| claims(serde_json::json!({"sub": "user_1", "fva": fva}));
        let custom = |level, after_minutes| {
            Has::reverification(Reverification::Custom {
                level,
                after_minutes,
            })
        };
        assert!(c(serde_json::json!([7, -1])).has(Has::reverification(Reverification::Strict)));
        assert!(c(serde_json::json!([7, -1])).has(Has::reverification(Reverification::StrictMfa)));
        assert!(!c(serde_json::json!([7, -1])).has(custom(VerificationLevel::FirstFactor, 5)));
        assert!(!c(serde_json::json!([7, 20])).has(Has::reverification(Reverification::StrictMfa)));
        assert!(!c(serde_json::json!([-1, -1])).has(Has::reverification(Reverification::Lax)));
        assert!(!c(serde_json::json!([1, 1])).has(custom(VerificationLevel::FirstFactor, 0)));
        assert!(!c(serde_json::json!("7,-1")).has(Has::reverification(Reverification::Lax)));
        assert!(!claims(serde_json::json!({"sub": "user_1"}))
            .has(Has::reverification(Reverification::Lax)));
    }
}
