//! Accounts, roles and credentials: argon2id password hashes, HS256 session JWTs signed with a
//! per-install secret, and scoped API keys.
//!
//! Hashing costs ~20 ms of CPU and always runs on the blocking pool, never on async threads.

mod accounts;
mod api_keys;
mod password;
mod token;

pub use accounts::{AccountError, Accounts, Credential, Principal, Registration};
pub use api_keys::NewKey;
pub use token::{Claims, TokenError, TokenKeys};
