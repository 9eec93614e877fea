//! User records and the email index.

use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::{Store, StoreError, encode, read_json, tables};
use crate::auth::User;

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

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        self.get_json(tables::USERS, id.to_string()).await
    }

    pub async fn user_by_email(&self, email: String) -> Result<Option<User>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let Some(id) = txn
                .open_table(tables::USERS_BY_EMAIL)?
                .get(email.as_str())?
                .map(|v| v.value().to_owned())
            else {
                return Ok(None);
            };
            read_json(&txn.open_table(tables::USERS)?, "users", &id)
        })
        .await
    }
}
