//! The security log: failed sign-ins, lockouts, sign-outs, password changes and API key
//! creation and revocation, under the tracing target `zerostate::security`.
//!
//! A flood must not flood the log: lines are let through a token bucket ([`LINES_PER_SEC`],
//! [`LINE_BURST`]); the ones it holds back are counted, and the next line that passes says
//! how many (`suppressed`). Every event, logged or not, is counted in
//! `zerostate_security_events_total{event}`. Never logged: passwords, and what was typed
//! into the email field (an unknown account is `user_id = none`; people type passwords there).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

/// Security lines per second, on average.
pub const LINES_PER_SEC: u32 = 1;
/// Security lines at once.
pub const LINE_BURST: u32 = 50;

/// The tracing target of every line.
pub const TARGET: &str = "zerostate::security";

/// Something that happened to an account or a credential.
#[derive(Debug, Clone, Copy)]
pub enum SecurityEvent {
    /// A wrong password, or an email with no account (`user: None`).
    LoginFailed {
        client: IpAddr,
        user: Option<Uuid>,
    },
    /// This failure locked the email for `secs`.
    LockedOut {
        client: IpAddr,
        user: Option<Uuid>,
        secs: u64,
    },
    LoggedOut {
        client: IpAddr,
        user: Uuid,
    },
    PasswordChanged {
        client: IpAddr,
        user: Uuid,
    },
    ApiKeyCreated {
        user: Uuid,
        key: Uuid,
    },
    ApiKeyRevoked {
        user: Uuid,
        key: Uuid,
    },
}

impl SecurityEvent {
    /// The `event` label and field.
    pub fn name(&self) -> &'static str {
        match self {
            SecurityEvent::LoginFailed { .. } => "login_failed",
            SecurityEvent::LockedOut { .. } => "locked_out",
            SecurityEvent::LoggedOut { .. } => "logged_out",
            SecurityEvent::PasswordChanged { .. } => "password_changed",
            SecurityEvent::ApiKeyCreated { .. } => "api_key_created",
            SecurityEvent::ApiKeyRevoked { .. } => "api_key_revoked",
        }
    }
}

/// The rate-limited security log. See the module docs.
pub struct SecurityLog {
    lines: DefaultDirectRateLimiter,
    /// Lines held back since the last one that passed.
    suppressed: AtomicU64,
}

impl Default for SecurityLog {
    fn default() -> Self {
        let per_sec = NonZeroU32::new(LINES_PER_SEC).expect("positive");
        let burst = NonZeroU32::new(LINE_BURST).expect("positive");
        Self {
            lines: RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst)),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl SecurityLog {
    /// Counts `event`, and logs it unless the log is over its rate.
    pub fn record(&self, event: SecurityEvent) {
        metrics::counter!("zerostate_security_events_total", "event" => event.name()).increment(1);
        if self.lines.check().is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let name = event.name();
        match event {
            SecurityEvent::LoginFailed { client, user } => tracing::warn!(
                target: TARGET, event = name, %client, user_id = display_user(user), suppressed,
                "sign-in failed"
            ),
            SecurityEvent::LockedOut { client, user, secs } => tracing::warn!(
                target: TARGET, event = name, %client, user_id = display_user(user), lock_secs = secs,
                suppressed, "sign-ins locked for an email after repeated failures"
            ),
            SecurityEvent::LoggedOut { client, user } => tracing::info!(
                target: TARGET, event = name, %client, user_id = %user, suppressed, "signed out"
            ),
            SecurityEvent::PasswordChanged { client, user } => tracing::info!(
                target: TARGET, event = name, %client, user_id = %user, suppressed,
                "password changed; older sessions ended"
            ),
            SecurityEvent::ApiKeyCreated { user, key } => tracing::info!(
                target: TARGET, event = name, user_id = %user, key_id = %key, suppressed,
                "API key created"
            ),
            SecurityEvent::ApiKeyRevoked { user, key } => tracing::info!(
                target: TARGET, event = name, user_id = %user, key_id = %key, suppressed,
                "API key revoked"
            ),
        }
    }

    /// Lines held back since the last one logged.
    #[cfg(test)]
    fn held_back(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

fn display_user(user: Option<Uuid>) -> String {
    user.map_or_else(|| "none".to_owned(), |u| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_held_back_past_the_burst_and_counted() {
        let log = SecurityLog::default();
        let event = SecurityEvent::LoginFailed {
            client: "10.0.0.1".parse().unwrap(),
            user: None,
        };
        for _ in 0..1000 {
            log.record(event);
        }
        // The burst passed (a few more may have refilled meanwhile); the rest were counted.
        let held = log.held_back();
        assert!(
            (900..=1000 - u64::from(LINE_BURST)).contains(&held),
            "{held}"
        );
    }
}
