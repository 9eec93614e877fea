//! The accounts component: sign-up, sign-in, roles, and the system account for bundled agents.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::password;
use super::token::TokenKeys;
use super::user::{Email, Role, User};
use crate::error::{ApiError, Code};
use crate::store::{Store, StoreError};

/// Sign-up input as received.
pub struct Registration {
    pub email: String,
    pub password: String,
    pub full_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    InvalidEmail(String),
    #[error("{0}")]
    InvalidPassword(String),
    #[error("full_name must be at most 200 characters")]
    InvalidName,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("unknown email or wrong password")]
    InvalidCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let code = match &e {
            AccountError::InvalidEmail(_) => Code::InvalidEmail,
            AccountError::InvalidPassword(_) => Code::InvalidPassword,
            AccountError::InvalidName => Code::InvalidRequest,
            AccountError::EmailTaken => Code::EmailTaken,
            AccountError::InvalidCredentials => Code::InvalidCredentials,
            AccountError::Store(e) => return ApiError::internal(e),
        };
        ApiError::new(code, e.to_string())
    }
}

/// The accounts component: sign-up, sign-in, token checks.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    keys: Arc<TokenKeys>,
    /// One permit per core: each argon2 hash holds 19 MiB for ~20 ms, so unbounded concurrent
    /// sign-ins would exhaust memory instead of queueing.
    hashing: Arc<Semaphore>,
}

impl Accounts {
    pub fn new(store: Store, keys: Arc<TokenKeys>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            store,
            keys,
            hashing: Arc::new(Semaphore::new(cores)),
        }
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// Creates an account and returns it with a fresh session token.
    pub async fn register(&self, reg: Registration) -> Result<(String, User), AccountError> {
        let email = Email::parse(&reg.email).map_err(AccountError::InvalidEmail)?;
        password::check_policy(&reg.password).map_err(AccountError::InvalidPassword)?;
        let full_name = checked_name(&reg.full_name)?;
        let hash = self
            .hash_work(move || password::hash(&reg.password))
            .await?;
        let user = self.insert(email, full_name, hash, Role::User).await?;
        Ok((self.keys.issue(user.id), user))
    }

    /// The operator's way to make an account: creates `email` with `password` (required then)
    /// and the admin role if `admin`; or, if the email is taken, promotes that account to admin
    /// if `admin` and sets the new password if one is given. An existing account keeps its name
    /// and is never demoted. Returns the account and whether it was created.
    pub async fn create_or_promote(
        &self,
        email: &str,
        password: Option<String>,
        full_name: &str,
        admin: bool,
    ) -> Result<(User, bool), AccountError> {
        let email = Email::parse(email).map_err(AccountError::InvalidEmail)?;
        let hash = match password {
            Some(password) => {
                password::check_policy(&password).map_err(AccountError::InvalidPassword)?;
                Some(self.hash_work(move || password::hash(&password)).await?)
            }
            None => None,
        };
        if let Some(existing) = self.store.user_by_email(email.as_str().to_owned()).await? {
            let new_hash = hash.clone();
            let updated = self
                .store
                .update_user(existing.id, move |user| {
                    if admin {
                        user.role = Role::Admin;
                    }
                    if let Some(hash) = new_hash {
                        user.password_hash = hash;
                    }
                })
                .await?;
            // `None`: deleted since the lookup, so it is created below instead.
            if let Some(user) = updated {
                tracing::info!(user_id = %user.id, role = %user.role, "account updated");
                return Ok((user, false));
            }
        }
        let full_name = checked_name(full_name)?;
        let Some(hash) = hash else {
            return Err(AccountError::InvalidPassword(
                "a password is required to create an account".into(),
            ));
        };
        let role = if admin { Role::Admin } else { Role::User };
        Ok((self.insert(email, full_name, hash, role).await?, true))
    }

    /// Whether `id` is an admin. Reads the stored account each time, so a promotion takes
    /// effect without a new token; an unknown id is no admin.
    pub async fn is_admin(&self, id: Uuid) -> Result<bool, AccountError> {
        Ok(self
            .store
            .user(id)
            .await?
            .is_some_and(|user| user.role == Role::Admin))
    }

    /// Checks credentials. Unknown email and wrong password take the same time and answer the
    /// same error.
    pub async fn login(
        &self,
        email: &str,
        password: String,
    ) -> Result<(String, User), AccountError> {
        let user = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(email.as_str().to_owned()).await?,
            Err(_) => None,
        };
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self
            .hash_work(move || match &phc {
                Some(phc) => password::verify(&password, phc),
                None => password::verify(&password, password::decoy_hash()),
            })
            .await?;
        match user {
            Some(user) if ok => Ok((self.keys.issue(user.id), user)),
            _ => Err(AccountError::InvalidCredentials),
        }
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, AccountError> {
        Ok(self.store.user(id).await?)
    }

    /// Finds or creates the account used to publish bundled agents. Its password is random and
    /// never stored, so nobody can sign in as it.
    pub async fn system_user(&self, email: &str, full_name: &str) -> Result<User, AccountError> {
        if let Some(user) = self.store.user_by_email(email.to_owned()).await? {
            return Ok(user);
        }
        let (_, user) = self
            .register(Registration {
                email: email.to_owned(),
                password: Uuid::new_v4().to_string(),
                full_name: full_name.to_owned(),
            })
            .await?;
        Ok(user)
    }
}

impl Accounts {
    /// Stores a new account; [`AccountError::EmailTaken`] if the email is.
    async fn insert(
        &self,
        email: Email,
        full_name: String,
        password_hash: String,
        role: Role,
    ) -> Result<User, AccountError> {
        let user = User {
            id: Uuid::new_v4(),
            email: email.as_str().to_owned(),
            full_name,
            password_hash,
            created_at: OffsetDateTime::now_utc(),
            role,
        };
        if !self.store.insert_user(user.clone()).await? {
            return Err(AccountError::EmailTaken);
        }
        tracing::info!(user_id = %user.id, role = %user.role, "account created");
        Ok(user)
    }

    /// Runs password hashing on the blocking pool, at most one job per core at a time.
    async fn hash_work<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, AccountError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| AccountError::Store(StoreError::Join(e)))
    }
}

/// The trimmed name, if it is short enough.
fn checked_name(full_name: &str) -> Result<String, AccountError> {
    let full_name = full_name.trim();
    if full_name.chars().count() > 200 {
        return Err(AccountError::InvalidName);
    }
    Ok(full_name.to_owned())
}
