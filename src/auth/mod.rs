//! Accounts, roles and sessions: argon2id password hashes, HS256 JWTs signed with a
//! per-install secret.
//!
//! Hashing costs ~20 ms of CPU and always runs on the blocking pool, never on async threads.

mod accounts;
mod password;
mod token;
mod user;

pub use accounts::{AccountError, Accounts, Registration};
pub(crate) use token::read_or_create_secret;
pub use token::{Claims, TokenError, TokenKeys};
pub use user::{Email, Role, User, UserView};
