//! The accounts component: sign-up, sign-in, roles, profile and password changes, API keys,
//! and the system account for bundled agents.
//!
//! Authenticating a request never touches the database: session tokens are checked against
//! the signing key, the in-memory session generations and ended sessions, API keys against
//! the in-memory key ring. All are loaded at start and changed here only, together with the
//! store.
//!
//! Sign-in runs past the [`LoginGuard`] (per-email lockout, hashing lanes); security events
//! go to the rate-limited [`SecurityLog`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use super::api_keys::{self, KeyRing, NewKey};
use super::audit::{SecurityEvent, SecurityLog};
use super::guard::{HashGate, Lane, Locked, LoginGuard};
use super::password;
use super::sessions::EndedSessions;
use super::token::TokenKeys;
use crate::config::{LockoutSettings, RateLimitSettings};
use crate::error::{ApiError, Code};
use crate::realtime::{Fanout, SignOut};
use crate::records::{ApiKey, Email, KeyHash, Role, Scope, Scopes, User, hash_key};
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
    /// Too many failed sign-ins with this email: refused for this many seconds.
    #[error("too many failed sign-ins with this email; try again in {0} s")]
    Locked(u64),
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("the account no longer exists")]
    AccountGone,
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    InvalidKey(String),
    #[error("you already have {0} API keys, the most allowed (quota api_keys); revoke one first")]
    TooManyKeys(u64),
    #[error("no API key with id `{0}`")]
    KeyNotFound(String),
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
            AccountError::Locked(secs) => {
                return ApiError::new(Code::TooManyAttempts, e.to_string()).with_retry_after(*secs);
            }
            AccountError::WrongPassword => Code::WrongPassword,
            AccountError::InvalidToken(_) | AccountError::AccountGone => Code::InvalidToken,
            AccountError::InvalidScope(_) => Code::InvalidScope,
            AccountError::InvalidKey(_) => Code::InvalidRequest,
            AccountError::TooManyKeys(_) => Code::TooManyApiKeys,
            AccountError::KeyNotFound(_) => Code::ApiKeyNotFound,
            AccountError::Store(e) => return ApiError::internal(e),
        };
        ApiError::new(code, e.to_string())
    }
}

/// Who made a request, and with what.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    pub user_id: Uuid,
    pub credential: Credential,
    /// When the credential stops working on its own (a session's expiry, a key's), if ever.
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A session token from sign-in: everything the account may do (admin powers included),
    /// until it is signed out (`session`, its id) or the account's session generation moves
    /// past `generation`. Tokens issued before sessions had ids have none.
    Session {
        generation: u64,
        session: Option<Uuid>,
    },
    /// An API key: only what its scopes allow, never account management or admin powers.
    ApiKey {
        id: Uuid,
        hash: KeyHash,
        scopes: Scopes,
    },
}

/// The accounts component: sign-up, sign-in, credentials and their checks.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    keys: Arc<TokenKeys>,
    /// Permits for argon2 work, one per core, in two lanes (see [`HashGate`]).
    hashing: Arc<HashGate>,
    /// The per-email lockout and the addresses whose sign-ins failed.
    guard: Arc<LoginGuard>,
    audit: Arc<SecurityLog>,
    /// Sessions signed out before their expiry (the store's `ended_sessions`).
    ended: Arc<EndedSessions>,
    /// Every API key, by hash.
    key_ring: Arc<KeyRing>,
    /// Session generation of every user above generation 0 (the store's
    /// `session_generations`). A std RwLock: held for one map operation.
    generations: Arc<RwLock<HashMap<Uuid, u64>>>,
    /// To close the live connections of credentials that stop working.
    fanout: Arc<dyn Fanout>,
    /// `quotas.api_keys`: most keys one account may hold (0: no limit; admins: none).
    max_api_keys: u64,
    /// Whether each account read so far is an admin: submits ask on every call, and a store
    /// read each time cost the hot path a blocking-pool hop. Roles change only through this
    /// component while the server runs (the CLI cannot open the database then), which keeps
    /// it current. A std RwLock: held for one map operation.
    admins: Arc<RwLock<HashMap<Uuid, bool>>>,
}

impl Accounts {
    /// Loads the API keys and session generations.
    pub async fn open(
        store: Store,
        keys: Arc<TokenKeys>,
        fanout: Arc<dyn Fanout>,
    ) -> Result<Self, StoreError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let key_ring = KeyRing::new(store.all_api_keys().await?);
        let generations = store.session_generations().await?.into_iter().collect();
        let ended = EndedSessions::load(store.ended_sessions(unix_now()).await?);
        Ok(Self {
            store,
            keys,
            hashing: Arc::new(HashGate::new(cores)),
            guard: Arc::new(LoginGuard::new(Some(RateLimitSettings::default().lockout))),
            audit: Arc::default(),
            ended: Arc::new(ended),
            key_ring: Arc::new(key_ring),
            generations: Arc::new(RwLock::new(generations)),
            fanout,
            max_api_keys: api_keys::MAX_KEYS_PER_USER,
            admins: Arc::default(),
        })
    }

    /// The sign-in lockout as configured: `None` turns it off.
    pub fn with_lockout(mut self, policy: Option<LockoutSettings>) -> Self {
        self.guard = Arc::new(LoginGuard::new(policy));
        self
    }

    /// Sets the most API keys one account may hold (`quotas.api_keys`; 0: no limit).
    /// Admins are exempt.
    pub fn with_api_key_quota(mut self, max: u64) -> Self {
        self.max_api_keys = max;
        self
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    fn generation(&self, user: Uuid) -> u64 {
        self.generations
            .read()
            .expect("session generations")
            .get(&user)
            .copied()
            .unwrap_or(0)
    }

    /// Records `generation` as `user`'s (never going back, whatever order changes land in).
    fn advance_generation(&self, user: Uuid, generation: u64) {
        let mut generations = self.generations.write().expect("session generations");
        let current = generations.entry(user).or_default();
        *current = (*current).max(generation);
    }

    /// Whether a credential checked earlier still works: the key is not revoked or expired,
    /// the session not ended or expired. For connections that outlive their request.
    pub fn still_valid(&self, principal: &Principal) -> bool {
        if principal
            .expires_at
            .is_some_and(|at| at <= OffsetDateTime::now_utc())
        {
            return false;
        }
        match principal.credential {
            Credential::Session {
                generation,
                session,
            } => {
                generation == self.generation(principal.user_id)
                    && session.is_none_or(|id| !self.ended.contains(&id))
            }
            Credential::ApiKey { hash, .. } => self.key_ring.get(&hash).is_some(),
        }
    }

    /// Checks a bearer credential: an API key (`zs_…`) or a session token. Touches the store
    /// only to record an API key's use, at most once a minute per key.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AccountError> {
        if token.starts_with(api_keys::KEY_PREFIX) {
            let hash = hash_key(token);
            let Some(key) = self.key_ring.get(&hash) else {
                return Err(AccountError::InvalidToken("unknown or revoked API key"));
            };
            let now = OffsetDateTime::now_utc();
            if key.expired(now) {
                return Err(AccountError::InvalidToken("this API key has expired"));
            }
            // Awaited, not spawned: a write left running could outlive the server.
            if key.touch(now.unix_timestamp())
                && let Err(e) = self.store.touch_api_key(hash, now).await
            {
                tracing::warn!(error = %e, "could not record an API key's last use");
            }
            return Ok(Principal {
                user_id: key.key.user_id,
                credential: Credential::ApiKey {
                    id: key.key.id,
                    hash,
                    scopes: key.scopes,
                },
                expires_at: key.key.expires_at,
            });
        }
        let claims = self
            .keys
            .verify(token)
            .map_err(|_| AccountError::InvalidToken("invalid or expired token"))?;
        if claims.generation != self.generation(claims.sub) {
            return Err(AccountError::InvalidToken(
                "this session ended when the password changed; sign in again",
            ));
        }
        if claims.jti.is_some_and(|id| self.ended.contains(&id)) {
            return Err(AccountError::InvalidToken(
                "this session was signed out; sign in again",
            ));
        }
        Ok(Principal {
            user_id: claims.sub,
            credential: Credential::Session {
                generation: claims.generation,
                session: claims.jti,
            },
            expires_at: OffsetDateTime::from_unix_timestamp(claims.exp as i64).ok(),
        })
    }

    /// Creates an account and returns it with a fresh session token.
    pub async fn register(&self, reg: Registration) -> Result<(String, User), AccountError> {
        let email = Email::parse(&reg.email).map_err(AccountError::InvalidEmail)?;
        password::check_policy(&reg.password).map_err(AccountError::InvalidPassword)?;
        let full_name = checked_name(&reg.full_name)?;
        let hash = self
            .hash_work(Lane::Shared, move || password::hash(&reg.password))
            .await?;
        let user = self.insert(email, full_name, hash, Role::User).await?;
        // A new account is at generation 0.
        Ok((self.keys.issue(user.id, 0), user))
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
                Some(
                    self.hash_work(Lane::Trusted, move || password::hash(&password))
                        .await?,
                )
            }
            None => None,
        };
        if let Some(existing) = self.store.user_by_email(email.as_str().to_owned()).await? {
            if let Some(hash) = hash.clone() {
                // Ends the account's sessions, as a password change does.
                self.store.set_password(existing.id, hash).await?;
            }
            let updated = self
                .store
                .update_user(existing.id, move |user| {
                    if admin {
                        user.role = Role::Admin;
                    }
                })
                .await?;
            // `None`: deleted since the lookup, so it is created below instead.
            if let Some(user) = updated {
                self.remember_role(&user);
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

    /// Whether `id` is an admin; an unknown id is no admin. A promotion takes effect without
    /// a new token.
    pub async fn is_admin(&self, id: Uuid) -> Result<bool, AccountError> {
        let known = self
            .admins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        if let Some(admin) = known {
            return Ok(admin);
        }
        match self.store.user(id).await? {
            Some(user) => Ok(self.remember_role(&user)),
            None => Ok(false),
        }
    }

    /// Records `user`'s role for [`Accounts::is_admin`]; returns whether they are an admin.
    fn remember_role(&self, user: &User) -> bool {
        let admin = user.role == Role::Admin;
        self.admins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.id, admin);
        admin
    }

    /// Checks credentials from `client`. Unknown email and wrong password take the same time
    /// and answer the same error; so does a locked email, whatever the password and whether
    /// or not it has an account (then without checking the password at all).
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: IpAddr,
    ) -> Result<(String, User), AccountError> {
        let parsed = Email::parse(email);
        let counted = match &parsed {
            Ok(email) => self.guard.email_key(email.as_str()),
            Err(_) => self.guard.email_key(&email.trim().to_lowercase()),
        };
        let now = Instant::now();
        let earlier_failures = self.guard.begin(counted, now).map_err(|Locked(left)| {
            metrics::counter!("zerostate_rate_limited_total", "limit" => "lockout").increment(1);
            AccountError::Locked(whole_secs(left))
        })?;
        let lane = if earlier_failures || self.guard.suspect(client, now) {
            Lane::Shared
        } else {
            Lane::Trusted
        };
        // The generation is read with the password hash it goes with: a password change that
        // commits while this login checks the old one leaves the token it gets behind.
        let found = match parsed {
            Ok(email) => {
                self.store
                    .user_by_email_with_generation(email.as_str().to_owned())
                    .await?
            }
            Err(_) => None,
        };
        let (user, generation) = match found {
            Some((user, generation)) => (Some(user), generation),
            None => (None, 0),
        };
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self
            .hash_work(lane, move || match &phc {
                Some(phc) => password::verify(&password, phc),
                None => password::verify(&password, password::decoy_hash()),
            })
            .await?;
        match user {
            Some(user) if ok => {
                self.guard.succeeded(counted);
                Ok((self.keys.issue(user.id, generation), user))
            }
            user => {
                self.login_failed(counted, client, user.map(|u| u.id));
                Err(AccountError::InvalidCredentials)
            }
        }
    }

    /// Records a failed sign-in: the address becomes a suspect, and the log says whether the
    /// failure locked the email.
    fn login_failed(&self, counted: u64, client: IpAddr, user: Option<Uuid>) {
        let now = Instant::now();
        self.guard.failed_from(client, now);
        let event = match self.guard.failed(counted, now) {
            Some(lock) => SecurityEvent::LockedOut {
                client,
                user,
                secs: whole_secs(lock),
            },
            None => SecurityEvent::LoginFailed { client, user },
        };
        self.audit.record(event);
    }

    /// Ends the session `principal` signed in with, from `client`: its token stops working at
    /// once (also after a restart), and the connections opened with it close. A token from
    /// before sessions had ids ends every session of the account.
    pub async fn logout(&self, principal: Principal, client: IpAddr) -> Result<(), AccountError> {
        let Credential::Session { session, .. } = principal.credential else {
            return Err(AccountError::InvalidToken(
                "API keys do not sign out; revoke the key instead",
            ));
        };
        let this = self.clone();
        let user = principal.user_id;
        run_to_end(async move {
            match session {
                Some(id) => {
                    let expires_at = principal
                        .expires_at
                        .map_or(u64::MAX, |at| at.unix_timestamp().max(0) as u64);
                    let now = unix_now();
                    this.store.end_session(id, user, expires_at, now).await?;
                    this.ended.insert(id, expires_at, now);
                    this.fanout.sign_out(user, SignOut::Session(id));
                }
                None => {
                    let generation = this.store.next_session_generation(user).await?;
                    this.advance_generation(user, generation);
                    this.fanout.sign_out(user, SignOut::Sessions);
                }
            }
            this.audit.record(SecurityEvent::LoggedOut { client, user });
            Ok(())
        })
        .await
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, AccountError> {
        Ok(self.store.user(id).await?)
    }

    /// Changes the account's display name.
    pub async fn update_profile(&self, id: Uuid, full_name: &str) -> Result<User, AccountError> {
        let full_name = checked_name(full_name)?;
        self.store
            .update_user(id, move |user| user.full_name = full_name)
            .await?
            .ok_or(AccountError::AccountGone)
    }

    /// Changes the password after checking the current one. Every other session of the
    /// account ends (their live connections close); API keys keep working. Returns a new
    /// session token.
    pub async fn change_password(
        &self,
        id: Uuid,
        current: String,
        new: String,
        client: IpAddr,
    ) -> Result<(String, User), AccountError> {
        let this = self.clone();
        run_to_end(async move { this.change_password_now(id, current, new, client).await }).await
    }

    async fn change_password_now(
        &self,
        id: Uuid,
        current: String,
        new: String,
        client: IpAddr,
    ) -> Result<(String, User), AccountError> {
        let user = self
            .store
            .user(id)
            .await?
            .ok_or(AccountError::AccountGone)?;
        let phc = user.password_hash.clone();
        if !self
            .hash_work(Lane::Trusted, move || password::verify(&current, &phc))
            .await?
        {
            return Err(AccountError::WrongPassword);
        }
        password::check_policy(&new).map_err(AccountError::InvalidPassword)?;
        let hash = self
            .hash_work(Lane::Trusted, move || password::hash(&new))
            .await?;
        let (user, generation) = self
            .store
            .set_password(id, hash)
            .await?
            .ok_or(AccountError::AccountGone)?;
        self.advance_generation(id, generation);
        self.fanout.sign_out(id, SignOut::Sessions);
        self.audit
            .record(SecurityEvent::PasswordChanged { client, user: id });
        Ok((self.keys.issue(id, generation), user))
    }

    /// Creates an API key. `expires_in_days`: 1 to [`api_keys::MAX_EXPIRY_DAYS`], or never.
    pub async fn create_api_key(
        &self,
        user: Uuid,
        name: &str,
        scopes: &[String],
        expires_in_days: Option<u64>,
    ) -> Result<NewKey, AccountError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > api_keys::MAX_NAME_CHARS {
            return Err(AccountError::InvalidKey(format!(
                "name must be 1 to {} characters",
                api_keys::MAX_NAME_CHARS
            )));
        }
        let known = || {
            Scope::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parsed = Vec::new();
        for scope in scopes {
            let scope = Scope::parse(scope.trim()).ok_or_else(|| {
                AccountError::InvalidScope(format!(
                    "unknown scope `{scope}`; scopes are {}",
                    known()
                ))
            })?;
            parsed.push(scope);
        }
        parsed.sort();
        parsed.dedup();
        if parsed.is_empty() {
            return Err(AccountError::InvalidScope(format!(
                "give the key at least one scope: {}",
                known()
            )));
        }
        let expires_at = match expires_in_days {
            None => None,
            Some(days @ 1..=api_keys::MAX_EXPIRY_DAYS) => {
                Some(OffsetDateTime::now_utc() + time::Duration::days(days as i64))
            }
            Some(_) => {
                return Err(AccountError::InvalidKey(format!(
                    "expires_in_days must be between 1 and {}",
                    api_keys::MAX_EXPIRY_DAYS
                )));
            }
        };
        let new = api_keys::generate(user, name.to_owned(), parsed, expires_at);
        let max = match self.max_api_keys {
            // Keys are made with a session only, so the account's role is the caller's.
            max if max > 0 && !self.is_admin(user).await? => max,
            _ => u64::MAX,
        };
        let (this, hash, key) = (self.clone(), new.hash, new.key.clone());
        run_to_end(async move {
            if !this
                .store
                .insert_api_key(
                    hash,
                    key.clone(),
                    usize::try_from(max).unwrap_or(usize::MAX),
                )
                .await?
            {
                return Err(AccountError::TooManyKeys(max));
            }
            this.audit
                .record(SecurityEvent::ApiKeyCreated { user, key: key.id });
            this.key_ring.insert(hash, key);
            Ok(())
        })
        .await?;
        Ok(new)
    }

    /// The user's keys, oldest first, with their exact last use.
    pub async fn api_keys(&self, user: Uuid) -> Result<Vec<ApiKey>, AccountError> {
        let stored = self.store.api_keys_of(user).await?;
        Ok(stored
            .into_iter()
            .map(|(hash, key)| match self.key_ring.get(&hash) {
                Some(live) => live.view(),
                None => key,
            })
            .collect())
    }

    /// Deletes one of the user's keys: it stops working at once, and connections opened with
    /// it close.
    pub async fn revoke_api_key(&self, user: Uuid, id: Uuid) -> Result<(), AccountError> {
        let this = self.clone();
        run_to_end(async move { this.revoke_api_key_now(user, id).await }).await
    }

    async fn revoke_api_key_now(&self, user: Uuid, id: Uuid) -> Result<(), AccountError> {
        let hash = self
            .store
            .delete_api_key(user, id)
            .await?
            .ok_or_else(|| AccountError::KeyNotFound(id.to_string()))?;
        self.key_ring.remove(&hash);
        self.fanout.sign_out(user, SignOut::Key(id));
        self.audit
            .record(SecurityEvent::ApiKeyRevoked { user, key: id });
        Ok(())
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

    /// Runs password hashing on the blocking pool, at most one job per core at a time, with a
    /// permit of `lane`.
    async fn hash_work<R: Send + 'static>(
        &self,
        lane: Lane,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, AccountError> {
        let _permit = self.hashing.enter(lane).await;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| AccountError::Store(StoreError::Join(e)))
    }
}

/// Runs a change of credentials on its own task: the request that asked for it may be
/// abandoned (its client gone) after the store has committed, and the in-memory key ring,
/// session generations and live connections must follow the store regardless.
async fn run_to_end<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T, AccountError>> + Send + 'static,
) -> Result<T, AccountError> {
    tokio::spawn(change)
        .await
        .map_err(|e| AccountError::Store(StoreError::Join(e)))?
}

/// `left` in whole seconds, rounded up, at least 1: what `Retry-After` says.
fn whole_secs(left: Duration) -> u64 {
    left.as_secs_f64().ceil().max(1.0) as u64
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

/// The trimmed name, if it is short enough.
fn checked_name(full_name: &str) -> Result<String, AccountError> {
    let full_name = full_name.trim();
    if full_name.chars().count() > 200 {
        return Err(AccountError::InvalidName);
    }
    Ok(full_name.to_owned())
}
