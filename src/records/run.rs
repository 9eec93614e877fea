//! One run of a task, as it crosses from the node that decides to the node that runs: the
//! [`RunOrder`] going out (what to run, under which limits), the [`RunOutput`] coming back,
//! and the [`Claim`] that proves the runner still holds the task when it reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Priority;

/// Per-run limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// Larger input is refused before the guest starts ([`Outcome::InputLimit`]).
    pub stdin_bytes: usize,
    pub stdout_bytes: usize,
    pub stderr_bytes: usize,
    /// Fuel for the run; used only by an executor built with fuel metering.
    pub fuel: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `_start` returned or called `proc_exit(0)`.
    Completed,
    /// `proc_exit(code)` with a non-zero code.
    Exited(i32),
    TimedOut,
    /// The guest tried to grow its memory past the limit.
    MemoryLimit,
    /// The guest wrote more than the stdout limit.
    OutputLimit,
    /// The guest's call stack overflowed.
    StackOverflow,
    /// The guest used up its fuel.
    FuelExhausted,
    /// The input is larger than the run's stdin limit; the guest did not start.
    InputLimit,
    /// Another trap (`unreachable`, an out-of-bounds access…) or a failed instantiation.
    Trapped(String),
    /// Stopped because the node is shutting down (or lost the task); the task should run
    /// again later.
    Interrupted,
    /// Stopped at the owner's request.
    Canceled,
    /// The module could not be made runnable on the node (its compilation failed); the guest
    /// did not start.
    Unloadable(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutput {
    pub outcome: Outcome,
    #[serde(with = "base64_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub stderr: Vec<u8>,
    pub duration: Duration,
}

/// What the guest gets: argv, environment, stdin.
pub type GuestInput = (Vec<String>, Vec<(String, String)>, Vec<u8>);

impl RunOrder {
    /// Moves what the guest gets out of the order (the rest stays for the report).
    pub fn take_guest_input(&mut self) -> GuestInput {
        (
            std::mem::take(&mut self.args),
            std::mem::take(&mut self.env),
            std::mem::take(&mut self.stdin),
        )
    }
}

impl RunOutput {
    /// A run that did not start: its module could not be made runnable.
    pub fn unloadable(reason: String) -> Self {
        Self::not_started(Outcome::Unloadable(reason))
    }

    /// A run that did not start because the node could not get on with it now (stopping,
    /// or its module's store unreachable): the task goes back to the queue.
    pub fn interrupted() -> Self {
        Self::not_started(Outcome::Interrupted)
    }

    fn not_started(outcome: Outcome) -> Self {
        Self {
            outcome,
            stdout: Vec::new(),
            stderr: Vec::new(),
            duration: Duration::ZERO,
        }
    }
}

/// Where a queue handed a task out, when the queue is shared (Redis): the entry, and the
/// consumer that holds it. A run reports with its claim; a claim that another consumer took
/// over (the lease expired) is refused, so a late result of a lost lease changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub priority: Priority,
    /// The stream entry id.
    pub entry: String,
    /// The consumer (node and process) holding it.
    pub consumer: String,
    /// How many times the entry was handed out, this time included: with the consumer, what
    /// tells this run's lease from a later one (a takeover may hand it to the same process).
    pub deliveries: u64,
}

/// What a node needs to run a task: the module by hash, what the guest gets, its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOrder {
    pub task_id: Uuid,
    /// The task's owner: a worker node's live events about the run go to their sockets.
    pub owner_id: Uuid,
    pub agent_id: Uuid,
    /// sha256 of the module's bytes.
    pub module: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    #[serde(with = "base64_bytes")]
    pub stdin: Vec<u8>,
    pub limits: RunLimits,
    /// The task's deadline cut the run's timeout short.
    pub cut_by_deadline: bool,
    /// The task's start this run is (its `starts` once started): a result counts only while
    /// the task is still at this start (a takeover starts it again).
    pub start: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// Bytes as base64 in JSON (a third larger, not four times as an array of numbers).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_crosses_as_json_and_back() {
        let output = RunOutput {
            outcome: Outcome::Trapped("unreachable".into()),
            stdout: vec![0, 159, 255, b'{'],
            stderr: b"oops".to_vec(),
            duration: Duration::from_millis(1234),
        };
        let json = serde_json::to_string(&output).unwrap();
        assert!(json.contains("\"stdout\":\"AJ//ew==\""), "{json}");
        assert_eq!(serde_json::from_str::<RunOutput>(&json).unwrap(), output);
    }
}
