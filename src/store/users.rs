//! User records and the email index.

use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::{Store, StoreError, encode, read_json, tables};
use crate::records::User;

impl Store {
    /// Inserts a new user. Returns `false` (and writes nothing) if the email is taken.
    pub async fn insert_user(&self, user: User) -> Result<bool, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let mut by_email = txn.open_table(tables::USERS_BY_EMAIL)?;
                if by_email.get(user.email.as_str())?.is_some() {
                    return Ok(false);
                }
                let id = user.id.to_string();
                by_email.insert(user.email.as_str(), id.as_str())?;
                txn.open_table(tables::USERS)?
                    .insert(id.as_str(), encode(&user).as_slice())?;
            }
            txn.commit()?;
            Ok(true)
        })
        .await
    }

    /// Applies `change` to the stored user in one write transaction (so two changes made at
    /// once cannot undo each other) and returns the new record; `None` if there is no such
    /// user. `change` must not touch the email: the email index is not rewritten.
    pub async fn update_user(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut User) + Send + 'static,
    ) -> Result<Option<User>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let key = id.to_string();
            let updated = {
                let mut table = txn.open_table(tables::USERS)?;
                let Some(mut user) = read_json::<User>(&table, "users", &key)? else {
                    return Ok(None);
                };
                let email = user.email.clone();
                change(&mut user);
                debug_assert_eq!(user.email, email, "update_user cannot change the email");
                table.insert(key.as_str(), encode(&user).as_slice())?;
                user
            };
            txn.commit()?;
            Ok(Some(updated))
        })
        .await
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        self.get_json(tables::USERS, id.to_string()).await
    }

    /// The account with this email and its session generation, read together.
    pub async fn user_by_email_with_generation(
        &self,
        email: String,
    ) -> Result<Option<(User, u64)>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let Some(id) = txn
                .open_table(tables::USERS_BY_EMAIL)?
                .get(email.as_str())?
                .map(|v| v.value().to_owned())
            else {
                return Ok(None);
            };
            let Some(user) = read_json(&txn.open_table(tables::USERS)?, "users", &id)? else {
                return Ok(None);
            };
            let generation = txn
                .open_table(tables::SESSION_GENERATIONS)?
                .get(id.as_str())?
                .map_or(0, |g| g.value());
            Ok(Some((user, generation)))
        })
        .await
    }

    pub async fn user_by_email(&self, email: String) -> Result<Option<User>, StoreError> {
        Ok(self
            .user_by_email_with_generation(email)
            .await?
            .map(|(user, _)| user))
    }
}
