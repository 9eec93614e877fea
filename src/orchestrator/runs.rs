//! Live per-user statistics of finished runs: completions in the last minute and duration
//! percentiles, kept in memory (they restart empty; the durable counts are in the store).
//!
//! Cost is bounded per user: one 60-slot ring of per-second completion counts and the
//! durations of the latest [`DURATIONS_KEPT`] runs. Nothing is capped server-wide, so a busy
//! user cannot push a quiet one's figures out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

/// How many of a user's latest run durations the percentiles look at.
pub const DURATIONS_KEPT: usize = 1_000;
const WINDOW_SECS: u64 = 60;

/// Live statistics of one user's recent runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RecentStats {
    /// Runs that completed in the last 60 seconds.
    pub completed_last_minute: u64,
    /// Median duration of the user's latest 1,000 runs, `null` when there are none.
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
}

struct UserRuns {
    /// `(second, completions in it)`, indexed by second modulo the window.
    per_second: [(u64, u32); WINDOW_SECS as usize],
    durations: VecDeque<u64>,
}

impl Default for UserRuns {
    fn default() -> Self {
        Self {
            per_second: [(0, 0); WINDOW_SECS as usize],
            durations: VecDeque::new(),
        }
    }
}

/// The statistics of every user. A std Mutex: held for a map lookup and a few array writes.
pub struct RecentRuns {
    /// Seconds are counted from here (monotonic, unlike the wall clock).
    epoch: Instant,
    users: Mutex<HashMap<Uuid, UserRuns>>,
}

impl Default for RecentRuns {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            users: Mutex::default(),
        }
    }
}

impl RecentRuns {
    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    /// Records one finished run of `owner`, completed or not, ending `at`.
    pub fn record(&self, owner: Uuid, completed: bool, duration_ms: u64, at: Instant) {
        let second = self.second(at);
        let mut users = self.users.lock().expect("recent runs");
        let runs = users.entry(owner).or_default();
        if completed {
            let slot = &mut runs.per_second[(second % WINDOW_SECS) as usize];
            if slot.0 != second {
                *slot = (second, 0);
            }
            slot.1 += 1;
        }
        if runs.durations.len() == DURATIONS_KEPT {
            runs.durations.pop_front();
        }
        runs.durations.push_back(duration_ms);
    }

    /// `owner`'s figures as of `now`.
    pub fn stats(&self, owner: Uuid, now: Instant) -> RecentStats {
        let second = self.second(now);
        let users = self.users.lock().expect("recent runs");
        let Some(runs) = users.get(&owner) else {
            return RecentStats::default();
        };
        let completed_last_minute = runs
            .per_second
            .iter()
            .filter(|(s, _)| *s + WINDOW_SECS > second && *s <= second)
            .map(|(_, n)| u64::from(*n))
            .sum();
        let mut durations: Vec<u64> = runs.durations.iter().copied().collect();
        drop(users);
        durations.sort_unstable();
        let percentile = |p: f64| {
            (!durations.is_empty())
                .then(|| durations[((durations.len() - 1) as f64 * p).round() as usize])
        };
        RecentStats {
            completed_last_minute,
            p50_ms: percentile(0.5),
            p95_ms: percentile(0.95),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn completions_leave_the_window_after_a_minute_and_users_are_apart() {
        let runs = RecentRuns::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = runs.epoch;
        for ms in 1..=100 {
            runs.record(alice, true, ms, t0 + Duration::from_millis(ms * 10));
        }
        runs.record(alice, false, 500, t0);
        // Far more runs than one user's window keeps, from someone else.
        for _ in 0..5_000 {
            runs.record(bob, true, 1, t0 + Duration::from_secs(30));
        }
        let at = |secs| t0 + Duration::from_secs(secs);
        let stats = runs.stats(alice, at(10));
        assert_eq!(stats.completed_last_minute, 100);
        assert_eq!((stats.p50_ms, stats.p95_ms), (Some(51), Some(96)));
        assert_eq!(runs.stats(bob, at(31)).completed_last_minute, 5_000);
        assert_eq!(runs.stats(alice, at(61)).completed_last_minute, 0);
        assert_eq!(runs.stats(bob, at(89)).completed_last_minute, 5_000);
        assert_eq!(runs.stats(bob, at(90)).completed_last_minute, 0);
        assert_eq!(runs.stats(Uuid::new_v4(), at(1)), RecentStats::default());
    }
}
