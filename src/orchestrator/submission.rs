//! A submission as received, and the checked request it parses into: a handler or the engine
//! never sees an unchecked value (the way `Email::parse` and `Manifest::parse` work).

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::engine::TaskError;
use crate::agents::parse_capabilities;
use crate::config::TaskSettings;
use crate::records::Priority;

/// Longest accepted `query`, in bytes.
const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Longest accepted serialised `input`: it becomes the agent's stdin.
const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// A task submission as received.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// What to do, in words. The agent's stdin when there is no `input`.
    pub query: String,
    /// Structured input; serialised as JSON onto the agent's stdin.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// Capabilities the agent must all offer.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Most the caller will pay; agents priced above it do not bid.
    pub budget: f64,
    /// Whole seconds; default from config (30), at most the configured maximum (300).
    #[schema(value_type = Option<u64>)]
    pub timeout: Option<serde_json::Number>,
    /// low, normal (or medium), high, critical; default normal.
    #[schema(value_type = Option<Priority>)]
    pub priority: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub constraints: Option<Value>,
    /// Run this agent instead of the auction winner (it must still be eligible).
    pub agent_id: Option<Uuid>,
    /// RFC 3339 time by which the task must be done: a run never goes past it, and a task
    /// still queued then fails without running.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
}

/// A checked submission: what the auction and the journal take.
#[derive(Debug, Clone)]
pub struct Request {
    /// Trimmed, not empty.
    pub query: String,
    pub input: Option<Value>,
    /// Normalised (see [`parse_capabilities`]).
    pub capabilities: Vec<String>,
    pub budget: f64,
    pub timeout_secs: u64,
    pub priority: Priority,
    pub constraints: Option<Value>,
    pub agent_id: Option<Uuid>,
    /// In UTC, in the future.
    pub deadline: Option<OffsetDateTime>,
}

impl Submission {
    /// Checks every field against `settings` at `now`, in the order a client fixes them.
    pub fn parse(self, settings: &TaskSettings, now: OffsetDateTime) -> Result<Request, TaskError> {
        let query = parse_query(&self.query)?;
        if let Some(input) = &self.input {
            check_input(input)?;
        }
        let capabilities = checked_requirements(&self.capabilities, self.budget)?;
        Ok(Request {
            query,
            input: self.input,
            capabilities,
            budget: self.budget,
            timeout_secs: parse_timeout(self.timeout.as_ref(), settings)?,
            priority: parse_priority(self.priority.as_deref())?,
            constraints: self.constraints,
            agent_id: self.agent_id,
            deadline: parse_deadline(self.deadline, now)?,
        })
    }
}

/// The auction inputs shared by submit and preview: normalised capabilities, a sane budget.
pub fn checked_requirements(
    capabilities: &[String],
    budget: f64,
) -> Result<Vec<String>, TaskError> {
    if !budget.is_finite() || budget < 0.0 {
        return Err(TaskError::InvalidBudget(
            "budget must be a number ≥ 0".into(),
        ));
    }
    parse_capabilities(capabilities.iter().map(String::as_str))
        .map_err(|e| TaskError::Invalid(e.to_string()))
}

fn parse_query(raw: &str) -> Result<String, TaskError> {
    let query = raw.trim();
    if query.is_empty() {
        return Err(TaskError::Invalid("query must not be empty".into()));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(TaskError::Invalid(format!(
            "query must be at most {MAX_QUERY_BYTES} bytes"
        )));
    }
    Ok(query.to_owned())
}

fn check_input(input: &Value) -> Result<(), TaskError> {
    let size = serde_json::to_vec(input).map_or(usize::MAX, |v| v.len());
    if size > MAX_INPUT_BYTES {
        return Err(TaskError::Invalid(format!(
            "input must serialise to at most {MAX_INPUT_BYTES} bytes"
        )));
    }
    Ok(())
}

fn parse_timeout(
    timeout: Option<&serde_json::Number>,
    settings: &TaskSettings,
) -> Result<u64, TaskError> {
    let max = settings.max_timeout_secs;
    let secs = match timeout {
        None => settings.default_timeout_secs,
        // Negative and fractional numbers are out of range too.
        Some(n) => n.as_u64().unwrap_or(0),
    };
    if !(1..=max).contains(&secs) {
        return Err(TaskError::InvalidTimeout(format!(
            "timeout must be a whole number of seconds between 1 and {max}"
        )));
    }
    Ok(secs)
}

fn parse_priority(raw: Option<&str>) -> Result<Priority, TaskError> {
    match raw {
        None => Ok(Priority::Normal),
        Some(name) => Priority::parse(name)
            .ok_or_else(|| TaskError::InvalidPriority(name.trim().to_ascii_lowercase())),
    }
}

/// Kept in UTC, as every other time: a deadline is an instant, and one whose UTC year passes
/// 9999 cannot be represented (nor stored).
fn parse_deadline(
    deadline: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, TaskError> {
    let Some(deadline) = deadline else {
        return Ok(None);
    };
    let utc = deadline
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or_else(|| TaskError::Invalid("deadline is beyond the year 9999".into()))?;
    if utc <= now {
        return Err(TaskError::Invalid("deadline is in the past".into()));
    }
    Ok(Some(utc))
}

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: String) -> Result<Self, TaskError> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TaskError::Invalid(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn submission(body: serde_json::Value) -> Submission {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_submission_parses_into_checked_values() {
        let settings = Settings::default().tasks;
        let now = OffsetDateTime::now_utc();
        let request = submission(serde_json::json!({
            "query": "  hello  ", "budget": 1, "priority": " Medium ",
            "capabilities": ["NLP"], "timeout": 5,
        }))
        .parse(&settings, now)
        .unwrap();
        assert_eq!(request.query, "hello");
        assert_eq!(request.priority, Priority::Normal);
        assert_eq!(request.capabilities, ["nlp"]);
        assert_eq!(request.timeout_secs, 5);
        let defaults = submission(serde_json::json!({"query": "q", "budget": 0}))
            .parse(&settings, now)
            .unwrap();
        assert_eq!(defaults.timeout_secs, settings.default_timeout_secs);
    }

    #[test]
    fn each_bad_field_is_refused_with_its_error() {
        let settings = Settings::default().tasks;
        let now = OffsetDateTime::now_utc();
        let refused = |body| submission(body).parse(&settings, now).unwrap_err();
        assert!(matches!(
            refused(serde_json::json!({"query": "  ", "budget": 1})),
            TaskError::Invalid(_)
        ));
        assert!(matches!(
            refused(serde_json::json!({"query": "q", "budget": -1})),
            TaskError::InvalidBudget(_)
        ));
        assert!(matches!(
            refused(serde_json::json!({"query": "q", "budget": 1, "timeout": 1.5})),
            TaskError::InvalidTimeout(_)
        ));
        assert!(matches!(
            refused(serde_json::json!({"query": "q", "budget": 1, "priority": "URGENT"})),
            TaskError::InvalidPriority(p) if p == "urgent"
        ));
        assert!(matches!(
            refused(serde_json::json!({"query": "q", "budget": 1,
                "deadline": "2001-01-01T00:00:00Z"})),
            TaskError::Invalid(m) if m.contains("past")
        ));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("order-17".into()).is_ok());
        for bad in ["", "with space", "é", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad.into()).is_err(), "{bad:?}");
        }
    }
}
