//! Accounts, roles and credentials: argon2id password hashes, HS256 session JWTs signed with a
//! per-install secret, and scoped API keys.
//!
//! Hashing costs ~20 ms of CPU and always runs on the blocking pool, never on async threads.

mod accounts;
mod api_keys;
mod password;
mod token;
mod user;

pub use accounts::{AccountError, Accounts, Credential, Principal, Registration};
pub use api_keys::{ApiKey, KeyHash, NewKey, Scope, Scopes, hash_key, hex};
pub(crate) use token::read_or_create_secret;
pub use token::{Claims, TokenError, TokenKeys};
pub use user::{Email, Role, User, UserView};
