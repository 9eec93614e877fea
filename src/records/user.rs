//! The account record, its role, its public view and the checked email type.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A stored account. Never serialised to clients: see [`UserView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    /// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`), so parameters can change per user.
    pub password_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Defaulted so that records written before roles existed read as [`Role::User`].
    #[serde(default)]
    pub role: Role,
}

/// What an account may do beyond its own resources. Sign-up always gives [`Role::User`];
/// `zerostate user create --admin`, run on the server's machine, grants [`Role::Admin`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    User,
    Admin,
}

impl Role {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What clients see of an account.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub role: Role,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            created_at: u.created_at,
            role: u.role,
        }
    }
}

/// A syntactically plausible email address, trimmed and lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Accepts `local@domain.tld` without whitespace, at most 254 bytes. Deliverability is not
    /// checked: there is no mail server on an air-gapped box.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if valid {
            Ok(Self(email))
        } else {
            Err(format!("`{}` is not a valid email address", raw.trim()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{Email, Role, User};

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@c.d",
            "a@b@c.d",
            "a@.com",
            "a@b..c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn records_without_a_role_read_as_user() {
        let stored = r#"{"id":"0190a1b2-0000-7000-8000-000000000001","email":"ada@example.com",
            "full_name":"Ada","password_hash":"$argon2id$x","created_at":"2024-01-02T03:04:05Z"}"#;
        let user: User = serde_json::from_str(stored).unwrap();
        assert_eq!(user.role, Role::User);
        assert_eq!(Role::default(), Role::User);
    }

    #[test]
    fn roles_serialise_as_snake_case() {
        assert_eq!(serde_json::to_string(&Role::Admin).unwrap(), r#""admin""#);
        assert_eq!(serde_json::to_string(&Role::User).unwrap(), r#""user""#);
        let admin: Role = serde_json::from_str(r#""admin""#).unwrap();
        assert_eq!(admin, Role::Admin);
        assert!(serde_json::from_str::<Role>(r#""Admin""#).is_err());
        for role in [Role::User, Role::Admin] {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
    }
}
