//! Ended sessions: the id of every session token signed out before its expiry, kept until
//! that expiry (after it the token is refused anyway), and the session generation a sign-out
//! of an old token without an id advances.

use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::{Store, StoreError, tables};

impl Store {
    /// Records that session `session` of `user`, valid until `expires_at` (unix seconds), has
    /// ended; deletes the records of sessions expired before `now` in the same transaction.
    pub async fn end_session(
        &self,
        session: Uuid,
        user: Uuid,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let mut ended = txn.open_table(tables::ENDED_SESSIONS)?;
                ended.retain_in(..(now, ""), |_, _| false)?;
                let (session, user) = (session.to_string(), user.to_string());
                ended.insert((expires_at, session.as_str()), user.as_str())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// The ended sessions that have not expired at `now` (unix seconds), with their expiry.
    pub async fn ended_sessions(&self, now: u64) -> Result<Vec<(Uuid, u64)>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let mut out = Vec::new();
            for row in txn.open_table(tables::ENDED_SESSIONS)?.range((now, "")..)? {
                let (key, _) = row?;
                let (expires_at, session) = key.value();
                if let Ok(session) = Uuid::parse_str(session) {
                    out.push((session, expires_at));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Moves `user` to the next session generation, ending every session token issued so far;
    /// returns the new generation.
    pub async fn next_session_generation(&self, user: Uuid) -> Result<u64, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let generation = {
                let key = user.to_string();
                let mut generations = txn.open_table(tables::SESSION_GENERATIONS)?;
                let generation = generations.get(key.as_str())?.map_or(0, |g| g.value()) + 1;
                generations.insert(key.as_str(), generation)?;
                generation
            };
            txn.commit()?;
            Ok(generation)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ended_sessions_are_kept_until_they_expire_and_then_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("z.redb")).unwrap();
        let (a, b, user) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        store.end_session(a, user, 100, 50).await.unwrap();
        store.end_session(b, user, 300, 50).await.unwrap();
        assert_eq!(store.ended_sessions(50).await.unwrap().len(), 2);
        assert_eq!(store.ended_sessions(200).await.unwrap(), vec![(b, 300)]);
        // A later sign-out deletes what expired; a reopened file keeps the rest.
        store
            .end_session(Uuid::new_v4(), user, 400, 200)
            .await
            .unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("z.redb")).unwrap();
        assert_eq!(store.ended_sessions(0).await.unwrap().len(), 2);
        assert_eq!(store.next_session_generation(user).await.unwrap(), 1);
        assert_eq!(store.next_session_generation(user).await.unwrap(), 2);
    }
}
