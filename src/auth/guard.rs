//! The sign-in guard: the per-email lockout, and the two lanes password hashing runs in.
//!
//! Lockout: failed sign-ins are counted per email whether or not an account has it, and a
//! locked email answers the same whatever the password, so neither the count nor the lock
//! tells whether the account exists. An attempt counts as a failure when it starts (a success
//! clears the count), so attempts made at once cannot slip past the threshold together.
//!
//! Lanes: argon2 costs ~20 ms of CPU, so a flood of sign-ins queues on the hashing permits.
//! Attempts from an address whose sign-ins failed lately, or for an email with failures, and
//! every sign-up, wait for the shared permits only; the rest (a person signing in from a
//! quiet address, a password change) may also take the one reserved permit, so a flood of
//! wrong passwords from elsewhere costs them one hash of waiting, not the whole queue.
//!
//! Both maps are bounded ([`MAX_TRACKED`]) and behind std mutexes held for one map operation.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::LockoutSettings;
use crate::records::client_bucket;

/// Most emails (and, separately, addresses) tracked at once: ~50 bytes each. Past it, stale
/// entries are dropped; if none are, a new email is not tracked (no lock is ever lifted to
/// make room, so flooding the table cannot unlock anyone).
const MAX_TRACKED: usize = 100_000;

/// How long an address whose sign-in failed waits in the shared lane.
const SUSPECT_FOR: Duration = Duration::from_secs(15 * 60);

/// At most one sweep of a full map per this long: a flood of new keys must not turn every
/// attempt into a scan.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Failed sign-ins of one email.
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// A sign-in refused because its email is locked: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked(pub Duration);

/// The lockout and the suspect addresses. See the module docs.
pub struct LoginGuard {
    /// `None`: the lockout is off.
    policy: Option<LockoutSettings>,
    /// Emails are kept as keyed hashes (a per-process random key): nothing anyone typed into
    /// the email field stays in memory, and every key is 8 bytes.
    hasher: std::collections::hash_map::RandomState,
    emails: Mutex<Tracked<u64, Failures>>,
    /// Client bucket (see [`client_bucket`]) → its last failed sign-in.
    suspects: Mutex<Tracked<u128, Instant>>,
}

/// A bounded map and when it was last swept.
struct Tracked<K, V> {
    map: HashMap<K, V>,
    swept: Option<Instant>,
}

impl<K: std::hash::Hash + Eq, V> Tracked<K, V> {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
            swept: None,
        }
    }

    /// Whether `key` may be added: there is room, or a sweep (at most one per
    /// [`SWEEP_EVERY`]) dropping what `stale` says made some.
    fn room_for(&mut self, key: &K, now: Instant, stale: impl Fn(&V) -> bool) -> bool {
        if self.map.len() < MAX_TRACKED || self.map.contains_key(key) {
            return true;
        }
        if self
            .swept
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY)
        {
            self.swept = Some(now);
            self.map.retain(|_, v| !stale(v));
            self.map.shrink_to_fit();
        }
        self.map.len() < MAX_TRACKED
    }
}

impl LoginGuard {
    /// `None` turns the lockout off; suspect addresses are tracked either way.
    pub fn new(policy: Option<LockoutSettings>) -> Self {
        Self {
            policy: policy.filter(|p| p.failures > 0),
            hasher: Default::default(),
            emails: Mutex::new(Tracked::new()),
            suspects: Mutex::new(Tracked::new()),
        }
    }

    /// The key an email is counted under: its normalised form, hashed.
    pub fn email_key(&self, normalised: &str) -> u64 {
        self.hasher.hash_one(normalised)
    }

    /// Starts an attempt for `email`: refused while it is locked; otherwise counted as a
    /// failure (until [`LoginGuard::succeeded`]), and the attempt that reaches the threshold
    /// locks the email for the attempts after it. Returns whether the email has failures
    /// from before this attempt.
    pub fn begin(&self, email: u64, now: Instant) -> Result<bool, Locked> {
        let Some(policy) = self.policy else {
            return Ok(false);
        };
        let forget = Duration::from_secs(policy.max_secs);
        let mut emails = self.emails.lock().expect("lockout table");
        let stale = |f: &Failures| {
            now.duration_since(f.last) >= forget && f.locked_until.is_none_or(|t| t <= now)
        };
        if !emails.room_for(&email, now, stale) {
            return Ok(true);
        }
        let entry = emails.map.entry(email).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if let Some(until) = entry.locked_until
            && until > now
        {
            return Err(Locked(until - now));
        }
        if stale(entry) {
            entry.count = 0;
        }
        let earlier = entry.count > 0;
        entry.count += 1;
        entry.last = now;
        if entry.count >= policy.failures {
            entry.locked_until = Some(now + lock_for(&policy, entry.count));
        }
        Ok(earlier)
    }

    /// The attempt failed: if the email's count is at the threshold, its lock runs from now
    /// (it started with the attempt, to hold off the attempts made meanwhile).
    pub fn failed(&self, email: u64, now: Instant) -> Option<Duration> {
        let policy = self.policy?;
        let mut emails = self.emails.lock().expect("lockout table");
        let entry = emails.map.get_mut(&email)?;
        if entry.count < policy.failures {
            return None;
        }
        let lock = lock_for(&policy, entry.count);
        entry.locked_until = entry.locked_until.max(Some(now + lock));
        entry.last = now;
        Some(lock)
    }

    /// The attempt had the right password: the email's count and lock are cleared.
    pub fn succeeded(&self, email: u64) {
        if self.policy.is_some() {
            self.emails
                .lock()
                .expect("lockout table")
                .map
                .remove(&email);
        }
    }

    /// The email's current failure count.
    #[cfg(test)]
    fn failures(&self, email: u64) -> u32 {
        let emails = self.emails.lock().expect("lockout table");
        emails.map.get(&email).map_or(0, |f| f.count)
    }

    /// A sign-in from `client` failed: its next ones wait in the shared lane.
    pub fn failed_from(&self, client: IpAddr, now: Instant) {
        let bucket = client_bucket(client);
        let mut suspects = self.suspects.lock().expect("suspect table");
        if suspects.room_for(&bucket, now, |at| now.duration_since(*at) >= SUSPECT_FOR) {
            suspects.map.insert(bucket, now);
        }
    }

    /// Whether a sign-in from `client` failed in the last [`SUSPECT_FOR`]. With the table
    /// full of fresh entries, an unknown address is a suspect too.
    pub fn suspect(&self, client: IpAddr, now: Instant) -> bool {
        let suspects = self.suspects.lock().expect("suspect table");
        match suspects.map.get(&client_bucket(client)) {
            Some(at) => now.duration_since(*at) < SUSPECT_FOR,
            None => suspects.map.len() >= MAX_TRACKED,
        }
    }
}

/// The lock after the failure that made the count `count` (≥ the threshold): `base_secs`,
/// doubled for each failure past the threshold, at most `max_secs`.
fn lock_for(policy: &LockoutSettings, count: u32) -> Duration {
    let doublings = (count - policy.failures).min(30);
    let secs = policy
        .base_secs
        .saturating_mul(1 << doublings)
        .min(policy.max_secs);
    Duration::from_secs(secs)
}

/// Which permits a hashing job may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The shared permits or the reserved one, whichever frees first.
    Trusted,
    /// The shared permits only.
    Shared,
}

/// The hashing permits: one per core in all, one of them reserved for [`Lane::Trusted`]
/// (with one core, one shared and one reserved). Each argon2 hash holds 19 MiB for ~20 ms,
/// so unbounded concurrent hashing would exhaust memory instead of queueing.
pub struct HashGate {
    shared: Semaphore,
    reserved: Semaphore,
}

impl HashGate {
    pub fn new(cores: usize) -> Self {
        Self {
            shared: Semaphore::new(cores.saturating_sub(1).max(1)),
            reserved: Semaphore::new(1),
        }
    }

    /// Waits for a permit of `lane`.
    pub async fn enter(&self, lane: Lane) -> SemaphorePermit<'_> {
        let permit = match lane {
            Lane::Shared => self.shared.acquire().await,
            Lane::Trusted => tokio::select! {
                biased;
                p = self.reserved.acquire() => p,
                p = self.shared.acquire() => p,
            },
        };
        permit.expect("the hashing semaphores are never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(failures: u32) -> LockoutSettings {
        LockoutSettings {
            failures,
            base_secs: 60,
            max_secs: 3600,
        }
    }

    #[test]
    fn the_attempt_that_reaches_the_threshold_locks_the_ones_after_it_and_locks_double() {
        let guard = LoginGuard::new(Some(policy(3)));
        let email = guard.email_key("ada@example.com");
        let t0 = Instant::now();
        assert_eq!(guard.begin(email, t0), Ok(false));
        assert_eq!(guard.begin(email, t0), Ok(true));
        assert_eq!(guard.begin(email, t0), Ok(true), "the third attempt runs");
        assert_eq!(guard.begin(email, t0), Err(Locked(Duration::from_secs(60))));
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(guard.begin(email, t1), Err(Locked(Duration::from_secs(30))));
        // After the lock, one more failure locks for twice as long, up to the maximum.
        let t2 = t0 + Duration::from_secs(60);
        assert_eq!(guard.begin(email, t2), Ok(true));
        assert_eq!(
            guard.begin(email, t2),
            Err(Locked(Duration::from_secs(120)))
        );
        assert_eq!(guard.failures(email), 4);
        // The failure itself restarts the lock: it runs from when the password was refused.
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!(guard.failed(email, t3), Some(Duration::from_secs(120)));
        assert_eq!(
            guard.begin(email, t3 + Duration::from_secs(119)),
            Err(Locked(Duration::from_secs(1)))
        );
        assert_eq!(
            lock_for(&policy(3), 20),
            Duration::from_secs(3600),
            "capped"
        );
        // A success clears everything; so does max_secs without a failure.
        guard.succeeded(email);
        assert_eq!(guard.begin(email, t2), Ok(false));
        let later = t2 + Duration::from_secs(3600);
        assert_eq!(guard.begin(email, later), Ok(false), "forgotten");
        // Other emails are counted apart; with no policy nothing is.
        let other = guard.email_key("grace@example.com");
        assert_eq!(guard.begin(other, t0), Ok(false));
        let off = LoginGuard::new(None);
        for _ in 0..10 {
            assert_eq!(off.begin(email, t0), Ok(false));
        }
    }

    #[test]
    fn an_address_whose_sign_in_failed_is_a_suspect_for_a_while() {
        let guard = LoginGuard::new(None);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        guard.failed_from(a, t0);
        assert!(guard.suspect(a, t0) && !guard.suspect(b, t0));
        assert!(!guard.suspect(a, t0 + SUSPECT_FOR));
    }

    #[test]
    fn a_full_table_drops_stale_entries_and_never_a_lock() {
        let guard = LoginGuard::new(Some(policy(1)));
        let t0 = Instant::now();
        for n in 0..MAX_TRACKED as u64 {
            assert_eq!(guard.begin(n, t0), Ok(false));
        }
        // Full of locked emails: a new one is not tracked, the locks stay.
        assert_eq!(guard.begin(u64::MAX, t0), Ok(true));
        assert!(guard.begin(7, t0).is_err());
        // Once they are stale, the sweep makes room.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(guard.begin(u64::MAX, later), Ok(false));
        assert_eq!(guard.failures(u64::MAX), 1);
    }

    #[tokio::test]
    async fn the_reserved_permit_serves_the_trusted_lane_while_the_shared_ones_are_busy() {
        let gate = HashGate::new(2);
        let _busy = gate.enter(Lane::Shared).await;
        let trusted = tokio::time::timeout(Duration::from_secs(5), gate.enter(Lane::Trusted));
        let _reserved = trusted.await.expect("not queued behind the shared lane");
        let shared = tokio::time::timeout(Duration::from_millis(50), gate.enter(Lane::Shared));
        assert!(shared.await.is_err(), "the shared lane waits");
    }
}
