//! Scoped API keys for scripts: `zs_` + 40 random alphanumerics, shown once at creation and
//! stored only as their sha256.
//!
//! Every key is held in memory (keyed by that hash), so checking one costs a hash and a map
//! lookup, and a revoked key stops working at the next request. `last_used_at` is kept exact
//! in memory and written to the store at most once a minute per key, so a busy script does not
//! turn every request into a database write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use rand::Rng;
use rand::distr::Alphanumeric;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::records::{ApiKey, KeyHash, Scope, Scopes, hash_key};

/// What every key starts with, so scanners and people can tell it from a session token.
pub const KEY_PREFIX: &str = "zs_";
/// Random characters after [`KEY_PREFIX`] (about 238 bits).
const KEY_RANDOM_CHARS: usize = 40;
/// Characters of the key shown in listings: the prefix and the first 8 random ones.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 8;
/// Most keys one account may hold unless `quotas.api_keys` says otherwise.
pub const MAX_KEYS_PER_USER: u64 = 100;
/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest lifetime a key may ask for.
pub const MAX_EXPIRY_DAYS: u64 = 3650;
/// `last_used_at` reaches the store at most this often per key.
const PERSIST_EVERY_SECS: i64 = 60;

/// A new key as created: the secret (shown once) and its record.
pub struct NewKey {
    pub secret: String,
    pub hash: KeyHash,
    pub key: ApiKey,
}

/// Draws a new key for `user_id`. Name, scopes and expiry are checked by the caller.
pub fn generate(
    user_id: Uuid,
    name: String,
    scopes: Vec<Scope>,
    expires_at: Option<OffsetDateTime>,
) -> NewKey {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    let secret = format!("{KEY_PREFIX}{random}");
    NewKey {
        hash: hash_key(&secret),
        key: ApiKey {
            id: Uuid::now_v7(),
            user_id,
            name,
            prefix: secret[..SHOWN_CHARS].to_owned(),
            scopes,
            created_at: OffsetDateTime::now_utc(),
            last_used_at: None,
            expires_at,
        },
        secret,
    }
}

/// A key in memory, with its use time.
pub struct LiveKey {
    pub key: ApiKey,
    pub scopes: Scopes,
    /// Unix seconds of the last use; 0 if never.
    last_used: AtomicI64,
    /// Unix seconds of the last use written to the store.
    persisted: AtomicI64,
}

impl LiveKey {
    fn new(key: ApiKey) -> Self {
        let used = key.last_used_at.map_or(0, OffsetDateTime::unix_timestamp);
        Self {
            scopes: key.scopes.iter().copied().collect(),
            key,
            last_used: AtomicI64::new(used),
            persisted: AtomicI64::new(used),
        }
    }

    /// Notes a use at `now` (unix seconds); true if it should be written to the store now,
    /// which is the case for at most one caller per [`PERSIST_EVERY_SECS`].
    pub fn touch(&self, now: i64) -> bool {
        self.last_used.fetch_max(now, Ordering::Relaxed);
        let persisted = self.persisted.load(Ordering::Relaxed);
        now - persisted >= PERSIST_EVERY_SECS
            && self
                .persisted
                .compare_exchange(persisted, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The record with its in-memory use time.
    pub fn view(&self) -> ApiKey {
        let mut key = self.key.clone();
        let used = self.last_used.load(Ordering::Relaxed);
        if used > 0 {
            key.last_used_at = OffsetDateTime::from_unix_timestamp(used).ok();
        }
        key
    }

    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.key.expires_at.is_some_and(|at| at <= now)
    }
}

/// Every key, by hash. A std RwLock: held for a map operation, never across an await.
#[derive(Default)]
pub struct KeyRing {
    keys: RwLock<HashMap<KeyHash, Arc<LiveKey>>>,
}

impl KeyRing {
    pub fn new(keys: impl IntoIterator<Item = (KeyHash, ApiKey)>) -> Self {
        Self {
            keys: RwLock::new(
                keys.into_iter()
                    .map(|(hash, key)| (hash, Arc::new(LiveKey::new(key))))
                    .collect(),
            ),
        }
    }

    pub fn get(&self, hash: &KeyHash) -> Option<Arc<LiveKey>> {
        self.keys.read().expect("key ring").get(hash).cloned()
    }

    pub fn insert(&self, hash: KeyHash, key: ApiKey) {
        self.keys
            .write()
            .expect("key ring")
            .insert(hash, Arc::new(LiveKey::new(key)));
    }

    pub fn remove(&self, hash: &KeyHash) {
        self.keys.write().expect("key ring").remove(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_shown_by_their_start() {
        let a = generate(Uuid::new_v4(), "ci".into(), vec![Scope::TasksRead], None);
        let b = generate(Uuid::new_v4(), "ci".into(), vec![Scope::TasksRead], None);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        assert!(a.secret[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(a.key.prefix, a.secret[..11]);
        assert_eq!(a.hash, hash_key(&a.secret));
        assert_eq!(crate::records::hex(&a.hash).len(), 64);
    }

    #[test]
    fn scopes_parse_by_their_names_and_form_sets() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
            assert_eq!(serde_json::to_value(scope).unwrap(), scope.as_str());
        }
        assert_eq!(Scope::parse("tasks:admin"), None);
        let set: Scopes = [Scope::TasksRead, Scope::AgentsWrite].into_iter().collect();
        assert!(set.contains(Scope::TasksRead) && set.contains(Scope::AgentsWrite));
        assert!(!set.contains(Scope::TasksWrite) && !set.contains(Scope::AgentsRead));
    }

    #[test]
    fn use_times_reach_the_store_once_a_minute() {
        let key = LiveKey::new(generate(Uuid::new_v4(), "k".into(), vec![], None).key);
        assert!(key.touch(1_000));
        assert!(!key.touch(1_030), "30 s later: memory only");
        assert_eq!(key.view().last_used_at.unwrap().unix_timestamp(), 1_030);
        assert!(key.touch(1_060));
        assert!(!key.touch(1_000), "an older time never goes back");
        assert_eq!(key.view().last_used_at.unwrap().unix_timestamp(), 1_060);
    }
}
