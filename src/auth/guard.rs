//! The sign-in guard: the per-email lockout, and the two lanes password hashing runs in.
//!
//! Lockout: failed sign-ins are counted per email whether or not an account has it, and a
//! locked email answers the same whatever the password, so neither the count nor the lock
//! tells whether the account exists. An attempt counts as a failure when it starts (a success
//! clears the count), so attempts made at once cannot slip past the threshold together.
//!
//! Lanes: argon2 costs ~20 ms of CPU, so a flood of sign-ins queues on the hashing permits.
//! Attempts from an address whose sign-ins failed lately, or for an email with failures, and
//! every sign-up, wait in the shared lane; the rest (a person signing in from a quiet address,
//! a password change) in the trusted lane, which goes first and has a permit of its own, and
//! the newest waiter goes first ([`HashGate`]): a flood of wrong passwords from elsewhere
//! costs a person about one hash of waiting, not the whole queue.
//!
//! Both maps are bounded ([`MAX_TRACKED`]) and behind std mutexes held for one map operation.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

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
    /// Any free permit, before any waiting [`Lane::Shared`] job.
    Trusted,
    /// One of all but one of the permits.
    Shared,
}

/// The hashing permits: one per core (at least two), one of them never held by
/// [`Lane::Shared`]. Each argon2 hash holds 19 MiB for ~20 ms, so unbounded concurrent
/// hashing would exhaust memory instead of queueing.
///
/// Waiters are served newest first, trusted before shared. First come, first served would
/// make a person who signs in during a flood wait behind every attempt queued before them
/// (64 new addresses at once are 64 attempts nothing tells from a person's); newest first,
/// they wait for about one hash, and the flood's own attempts, the oldest, wait longest.
/// The lock is a std Mutex held for a few vector operations.
pub struct HashGate {
    state: Mutex<Gate>,
}

struct Gate {
    free: usize,
    shared_held: usize,
    shared_cap: usize,
    /// Waiting jobs, newest last. A sender whose job was dropped fails to send and is skipped.
    trusted: Vec<oneshot::Sender<()>>,
    shared: Vec<oneshot::Sender<()>>,
}

impl Gate {
    fn can_take(&self, lane: Lane) -> bool {
        self.free > 0 && (lane == Lane::Trusted || self.shared_held < self.shared_cap)
    }

    fn take(&mut self, lane: Lane) {
        self.free -= 1;
        if lane == Lane::Shared {
            self.shared_held += 1;
        }
    }

    fn give_back(&mut self, lane: Lane) {
        self.free += 1;
        if lane == Lane::Shared {
            self.shared_held -= 1;
        }
    }

    /// Hands free permits to the newest waiters that are still there.
    fn dispatch(&mut self) {
        for lane in [Lane::Trusted, Lane::Shared] {
            while self.can_take(lane) {
                let waiting = match lane {
                    Lane::Trusted => self.trusted.pop(),
                    Lane::Shared => self.shared.pop(),
                };
                let Some(waiter) = waiting else { break };
                self.take(lane);
                if waiter.send(()).is_err() {
                    self.give_back(lane);
                }
            }
        }
    }
}

/// A hashing permit; given back when dropped.
pub struct HashPermit<'a> {
    gate: &'a HashGate,
    lane: Lane,
}

impl Drop for HashPermit<'_> {
    fn drop(&mut self) {
        self.gate.release(self.lane);
    }
}

/// A job waiting for a permit. Dropped after the permit was handed to it but before it saw
/// it, it gives the permit back.
struct Waiting<'a> {
    gate: &'a HashGate,
    lane: Lane,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                self.gate.release(self.lane);
            }
        }
    }
}

impl HashGate {
    pub fn new(cores: usize) -> Self {
        let permits = cores.max(2);
        Self {
            state: Mutex::new(Gate {
                free: permits,
                shared_held: 0,
                shared_cap: permits - 1,
                trusted: Vec::new(),
                shared: Vec::new(),
            }),
        }
    }

    /// Waits for a permit of `lane`.
    pub async fn enter(&self, lane: Lane) -> HashPermit<'_> {
        let rx = {
            let mut gate = self.gate();
            if gate.can_take(lane) {
                gate.take(lane);
                return HashPermit { gate: self, lane };
            }
            let (tx, rx) = oneshot::channel();
            let waiters = match lane {
                Lane::Trusted => &mut gate.trusted,
                Lane::Shared => &mut gate.shared,
            };
            // Waiters whose client hung up are swept when the list doubles: newest-first
            // service may never reach them under a flood.
            if waiters.len() >= 64 && waiters.len().is_power_of_two() {
                waiters.retain(|w| !w.is_closed());
            }
            waiters.push(tx);
            rx
        };
        let mut waiting = Waiting {
            gate: self,
            lane,
            rx,
            done: false,
        };
        // The sender stays in the gate until a permit given back sends on it.
        let _ = (&mut waiting.rx).await;
        waiting.done = true;
        HashPermit { gate: self, lane }
    }

    fn release(&self, lane: Lane) {
        let mut gate = self.gate();
        gate.give_back(lane);
        gate.dispatch();
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.state.lock().expect("hashing permits")
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
    async fn the_trusted_lane_takes_the_last_permit_and_the_newest_waiter_goes_first() {
        let within = Duration::from_millis;
        let gate = std::sync::Arc::new(HashGate::new(2));
        let busy = gate.enter(Lane::Shared).await;
        let shared = tokio::time::timeout(within(50), gate.enter(Lane::Shared));
        assert!(shared.await.is_err(), "the shared lane has one permit");
        let trusted = tokio::time::timeout(within(5000), gate.enter(Lane::Trusted));
        let held = trusted
            .await
            .expect("the last permit is the trusted lane's");
        // Both permits held: three jobs wait. The newest trusted one goes first, then the
        // older trusted one, then the shared one.
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut jobs = Vec::new();
        for (name, lane) in [
            ("shared", Lane::Shared),
            ("old", Lane::Trusted),
            ("new", Lane::Trusted),
        ] {
            let (gate, order) = (gate.clone(), order.clone());
            jobs.push(tokio::spawn(async move {
                let _permit = gate.enter(lane).await;
                order.lock().unwrap().push(name);
            }));
            tokio::time::sleep(within(20)).await;
        }
        drop((busy, held));
        for job in jobs {
            job.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["new", "old", "shared"]);
        // A waiter that gave up holds nothing afterwards.
        let a = gate.enter(Lane::Trusted).await;
        let b = gate.enter(Lane::Trusted).await;
        let gave_up = tokio::time::timeout(within(20), gate.enter(Lane::Trusted)).await;
        assert!(gave_up.is_err());
        drop((a, b));
        let both = async {
            (
                gate.enter(Lane::Trusted).await,
                gate.enter(Lane::Trusted).await,
            )
        };
        assert!(tokio::time::timeout(within(5000), both).await.is_ok());
    }
}
