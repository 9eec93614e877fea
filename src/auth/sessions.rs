//! Sessions signed out before their expiry, in memory: checked on every request that carries
//! a session token, so a lookup is one read-locked hash probe.
//!
//! The store's `ended_sessions` table is the truth (it survives a restart); this is loaded
//! from it at start and changed together with it. An entry matters only until its token
//! expires (the signature check refuses it after that), so expired entries are dropped once
//! the map has doubled since the last sweep: memory follows the sign-outs of one token
//! lifetime, and each sweep is paid for by as many inserts.

use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;

/// Fewest entries before a sweep is worth it.
const SWEEP_FLOOR: usize = 1024;

/// Session id → its expiry (unix seconds). A std RwLock: held for one map operation (a sweep
/// included, which is amortised over the inserts before it).
#[derive(Default)]
pub struct EndedSessions {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    ended: HashMap<Uuid, u64>,
    /// Entries left by the last sweep.
    swept_to: usize,
}

impl EndedSessions {
    /// The ended sessions `(id, expiry)` read from the store.
    pub fn load(rows: Vec<(Uuid, u64)>) -> Self {
        let ended: HashMap<Uuid, u64> = rows.into_iter().collect();
        let swept_to = ended.len();
        Self {
            inner: RwLock::new(Inner { ended, swept_to }),
        }
    }

    pub fn contains(&self, session: &Uuid) -> bool {
        self.inner
            .read()
            .expect("ended sessions")
            .ended
            .contains_key(session)
    }

    /// Records `session` (valid until `expires_at`) as ended; sweeps out the expired ones
    /// when the map has doubled.
    pub fn insert(&self, session: Uuid, expires_at: u64, now: u64) {
        let mut inner = self.inner.write().expect("ended sessions");
        inner.ended.insert(session, expires_at);
        if inner.ended.len() >= (2 * inner.swept_to).max(SWEEP_FLOOR) {
            inner.ended.retain(|_, expiry| *expiry >= now);
            inner.swept_to = inner.ended.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.read().expect("ended sessions").ended.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_go_once_the_map_doubles() {
        let sessions = EndedSessions::load(vec![(Uuid::new_v4(), 10)]);
        let kept = Uuid::new_v4();
        sessions.insert(kept, 1_000, 5);
        assert!(sessions.contains(&kept));
        for _ in 0..SWEEP_FLOOR - 3 {
            sessions.insert(Uuid::new_v4(), 50, 20);
        }
        assert_eq!(sessions.len(), SWEEP_FLOOR - 1);
        // The insert that reaches the floor sweeps what expired before `now`.
        sessions.insert(Uuid::new_v4(), 1_000, 100);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.contains(&kept));
    }
}
