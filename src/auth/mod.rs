//! Accounts, roles and credentials: argon2id password hashes, HS256 session JWTs signed with a
//! per-install secret (ended by signing out), scoped API keys, the sign-in lockout and the
//! security log.
//!
//! Hashing costs ~20 ms of CPU and always runs on the blocking pool, never on async threads.

mod accounts;
mod api_keys;
mod audit;
mod guard;
mod password;
mod sessions;
mod token;

pub use accounts::{AccountError, Accounts, Credential, Principal, Registration};
pub use api_keys::NewKey;
pub use token::{Claims, SECRET_FILE as TOKEN_SECRET_FILE, TokenError, TokenKeys};
