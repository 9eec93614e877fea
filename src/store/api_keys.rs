//! API key records, and the session generations that a password change advances.

use redb::{ReadableDatabase, ReadableTable};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError, decode, encode, read_json, tables};
use crate::records::{ApiKey, KeyHash, User, hex};

/// Parses the hex key of [`tables::API_KEYS`].
fn parse_hash(text: &str) -> Option<KeyHash> {
    let mut hash = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

impl Store {
    /// Every API key, for the in-memory key ring.
    pub async fn all_api_keys(&self) -> Result<Vec<(KeyHash, ApiKey)>, StoreError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(tables::API_KEYS)?;
            let mut keys = Vec::new();
            for row in table.iter()? {
                let (hash, value) = row?;
                match parse_hash(hash.value()) {
                    Some(h) => keys.push((h, decode("api_keys", value.value())?)),
                    None => tracing::warn!(
                        key = hash.value(),
                        "skipping an api_keys row with a malformed hash"
                    ),
                }
            }
            Ok(keys)
        })
        .await
    }

    /// Stores a new key unless its owner already has `max` keys (then `false`).
    pub async fn insert_api_key(
        &self,
        hash: KeyHash,
        key: ApiKey,
        max: usize,
    ) -> Result<bool, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let (user, id, hash) = (key.user_id.to_string(), key.id.to_string(), hex(&hash));
                let mut by_user = txn.open_table(tables::API_KEYS_BY_USER)?;
                let held = by_user
                    .range((user.as_str(), "")..)?
                    .take_while(|row| row.as_ref().is_ok_and(|(k, _)| k.value().0 == user))
                    .count();
                if held >= max {
                    return Ok(false);
                }
                by_user.insert((user.as_str(), id.as_str()), hash.as_str())?;
                txn.open_table(tables::API_KEYS)?
                    .insert(hash.as_str(), encode(&key).as_slice())?;
            }
            txn.commit()?;
            Ok(true)
        })
        .await
    }

    /// A user's keys with their hashes, oldest first.
    pub async fn api_keys_of(&self, user: Uuid) -> Result<Vec<(KeyHash, ApiKey)>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let by_user = txn.open_table(tables::API_KEYS_BY_USER)?;
            let keys = txn.open_table(tables::API_KEYS)?;
            let user = user.to_string();
            let mut out = Vec::new();
            for row in by_user.range((user.as_str(), "")..)? {
                let (k, hash) = row?;
                if k.value().0 != user {
                    break;
                }
                if let (Some(h), Some(key)) = (
                    parse_hash(hash.value()),
                    read_json(&keys, "api_keys", hash.value())?,
                ) {
                    out.push((h, key));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Deletes one of `user`'s keys; its hash, or `None` if the user has no such key.
    pub async fn delete_api_key(
        &self,
        user: Uuid,
        id: Uuid,
    ) -> Result<Option<KeyHash>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let removed = {
                let (user, id) = (user.to_string(), id.to_string());
                let Some(hash) = txn
                    .open_table(tables::API_KEYS_BY_USER)?
                    .remove((user.as_str(), id.as_str()))?
                    .map(|h| h.value().to_owned())
                else {
                    return Ok(None);
                };
                txn.open_table(tables::API_KEYS)?.remove(hash.as_str())?;
                parse_hash(&hash)
            };
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    /// Records a key's last use (if the key still exists).
    pub async fn touch_api_key(&self, hash: KeyHash, at: OffsetDateTime) -> Result<(), StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let mut keys = txn.open_table(tables::API_KEYS)?;
                let hash = hex(&hash);
                if let Some(mut key) = read_json::<ApiKey>(&keys, "api_keys", &hash)? {
                    key.last_used_at = Some(at);
                    keys.insert(hash.as_str(), encode(&key).as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// The users whose session generation is above 0.
    pub async fn session_generations(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let mut out = Vec::new();
            for row in txn.open_table(tables::SESSION_GENERATIONS)?.iter()? {
                let (user, generation) = row?;
                if let Ok(user) = Uuid::parse_str(user.value()) {
                    out.push((user, generation.value()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Sets a user's password hash and ends their sessions (the generation goes up by one), in
    /// one transaction. Returns the account and its new generation; `None` if it is gone.
    pub async fn set_password(
        &self,
        id: Uuid,
        password_hash: String,
    ) -> Result<Option<(User, u64)>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let key = id.to_string();
            let changed = {
                let mut users = txn.open_table(tables::USERS)?;
                let Some(mut user) = read_json::<User>(&users, "users", &key)? else {
                    return Ok(None);
                };
                user.password_hash = password_hash;
                users.insert(key.as_str(), encode(&user).as_slice())?;
                let mut generations = txn.open_table(tables::SESSION_GENERATIONS)?;
                let generation = generations.get(key.as_str())?.map_or(0, |g| g.value()) + 1;
                generations.insert(key.as_str(), generation)?;
                (user, generation)
            };
            txn.commit()?;
            Ok(Some(changed))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = crate::records::hash_key("zs_example");
        assert_eq!(parse_hash(&hex(&hash)), Some(hash));
        assert_eq!(parse_hash("abc"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
