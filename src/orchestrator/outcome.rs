//! A run's limits going in and its verdict coming out: pure functions of the agent, the task
//! and the executor's output, so each rule is tested without running anything.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::config::LimitSettings;
use crate::records::{
    Agent, AgentOutcome, Attempt, FailureCode, Finished, Limits, Task, TaskStatus,
};
use crate::runtime::{Outcome, RunLimits, RunOutput};

/// How much of stderr is kept on the task and quoted in its error.
const STDERR_TAIL_CHARS: usize = 2000;

/// An agent's limits for one run: what its manifest asked for (else the server's default),
/// capped by the server's maxima in force now; the wall time also by the task's `timeout`.
pub fn run_limits(server: &LimitSettings, agent: &Limits, task_timeout: Duration) -> RunLimits {
    let pick = |asked: Option<u64>, default: u64, max: u64| asked.unwrap_or(default).min(max);
    let l = server;
    let timeout_cap = pick(agent.timeout_secs, l.timeout_secs, l.max_timeout_secs);
    RunLimits {
        timeout: task_timeout.min(Duration::from_secs(timeout_cap)),
        memory_bytes: pick(agent.memory_bytes, l.memory_bytes, l.max_memory_bytes) as usize,
        stdin_bytes: pick(agent.stdin_bytes, l.max_stdin_bytes, l.max_stdin_bytes) as usize,
        stdout_bytes: pick(agent.stdout_bytes, l.max_stdout_bytes, l.max_stdout_bytes) as usize,
        stderr_bytes: pick(agent.stderr_bytes, l.max_stderr_bytes, l.max_stderr_bytes) as usize,
        fuel: (l.max_fuel > 0).then(|| pick(agent.fuel, l.max_fuel, l.max_fuel)),
    }
}

/// The run's wall time: `timeout`, cut short so it never goes past the deadline. `None` when
/// the deadline has passed.
pub fn within_deadline(
    timeout: Duration,
    deadline: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<Duration> {
    let Some(deadline) = deadline else {
        return Some(timeout);
    };
    let left = deadline - now;
    (left > time::Duration::ZERO).then(|| timeout.min(left.unsigned_abs()))
}

/// What the guest gets: argv (its name, then the manifest's), environment (the manifest's,
/// then `ZEROSTATE_*`), and stdin (the input as JSON, else the query).
pub struct Invocation {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
}

impl Invocation {
    pub fn of(task: &Task, agent: &Agent) -> Self {
        let stdin = match &task.input {
            Some(input) => serde_json::to_vec(input).expect("JSON values serialise"),
            None => task.query.as_bytes().to_vec(),
        };
        let mut env: Vec<(String, String)> = agent
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend([
            ("ZEROSTATE_TASK_ID".to_owned(), task.id.to_string()),
            ("ZEROSTATE_AGENT_ID".to_owned(), agent.id.to_string()),
            ("ZEROSTATE_QUERY".to_owned(), task.query.to_string()),
        ]);
        let mut args = Vec::with_capacity(1 + agent.argv.len());
        args.push(agent.name.clone());
        args.extend(agent.argv.iter().cloned());
        Self { args, env, stdin }
    }
}

/// What a run's end means for its task.
#[derive(Debug)]
pub enum Verdict {
    /// The server is stopping: back to the queue for the next start.
    Interrupted,
    /// Canceled by its owner while it ran (a cancel that lands after the guest ended still
    /// wins: no failover, no re-run).
    Canceled { ran_ms: u64 },
    /// The run finished the task with `finished`, unless `may_fail_over` (a failure another
    /// agent might not meet) and another agent bids. `outcome` moves the agent's statistics;
    /// `None` when the failure was not the agent's doing.
    Finished {
        finished: Box<Finished>,
        outcome: Option<AgentOutcome>,
        may_fail_over: bool,
    },
}

/// A finished run, as the verdict needs it.
pub struct RunReport<'a> {
    pub agent_id: uuid::Uuid,
    pub agent_name: &'a str,
    pub output: &'a RunOutput,
    pub limits: &'a RunLimits,
    /// The run's timeout was cut short by the deadline.
    pub cut_by_deadline: bool,
    /// The owner asked to cancel it.
    pub canceled: bool,
    pub started_at: OffsetDateTime,
}

/// Judges a run's end.
pub fn judge(run: RunReport<'_>) -> Verdict {
    let output = run.output;
    let duration_ms = output.duration.as_millis() as u64;
    if output.outcome == Outcome::Interrupted {
        return Verdict::Interrupted;
    }
    if output.outcome == Outcome::Canceled || run.canceled {
        return Verdict::Canceled {
            ran_ms: duration_ms,
        };
    }
    let stderr = tail(&String::from_utf8_lossy(&output.stderr), STDERR_TAIL_CHARS);
    let success = output.outcome == Outcome::Completed;
    let timed_out = output.outcome == Outcome::TimedOut;
    let error = (!success).then(|| describe_failure(&output.outcome, run.limits, &stderr));
    // A timeout forced by the caller's deadline is not the agent's fault, and another agent
    // would meet the same deadline.
    let deadline_cut = timed_out && run.cut_by_deadline;
    // Nor is input larger than the agent declares it accepts, or a module the node could not
    // load: it never started.
    let never_started = matches!(output.outcome, Outcome::InputLimit | Outcome::Unloadable(_));
    let blameless = deadline_cut || never_started;
    let attempt = Attempt {
        agent_id: run.agent_id,
        agent_name: run.agent_name.to_owned(),
        outcome: match output.outcome {
            Outcome::Completed => "completed",
            Outcome::TimedOut => "timed_out",
            _ => "failed",
        }
        .to_owned(),
        error: error.clone(),
        error_code: failure_code(&output.outcome),
        duration_ms,
        started_at: run.started_at,
    };
    let status = match (success, timed_out) {
        (true, _) => TaskStatus::Completed,
        (false, true) => TaskStatus::TimedOut,
        (false, false) => TaskStatus::Failed,
    };
    Verdict::Finished {
        finished: Box::new(Finished {
            status,
            attempt,
            result: parse_result(&output.stdout),
            error,
            error_code: failure_code(&output.outcome),
            stderr,
            exit_code: match output.outcome {
                Outcome::Exited(code) => Some(code),
                _ => None,
            },
            duration_ms,
        }),
        outcome: (!blameless).then_some(AgentOutcome {
            agent_id: run.agent_id,
            success,
            duration_ms,
        }),
        may_fail_over: !success && !deadline_cut,
    }
}

/// stdout as JSON when it parses, else as text; `None` when empty.
fn parse_result(stdout: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(serde_json::from_str(trimmed).unwrap_or_else(|_| Value::String(text.into_owned())))
}

fn tail(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(max_chars)).collect()
}

/// The stable code of a run that did not complete.
fn failure_code(outcome: &Outcome) -> Option<FailureCode> {
    Some(match outcome {
        Outcome::Completed | Outcome::Interrupted => return None,
        Outcome::Exited(_) => FailureCode::ExitCode,
        Outcome::TimedOut => FailureCode::Timeout,
        Outcome::MemoryLimit => FailureCode::MemoryLimit,
        Outcome::OutputLimit => FailureCode::OutputLimit,
        Outcome::StackOverflow => FailureCode::StackOverflow,
        Outcome::FuelExhausted => FailureCode::FuelExhausted,
        Outcome::InputLimit => FailureCode::InputLimit,
        Outcome::Trapped(_) => FailureCode::Trap,
        Outcome::Canceled => FailureCode::Canceled,
        Outcome::Unloadable(_) => FailureCode::AgentUnavailable,
    })
}

fn describe_failure(outcome: &Outcome, limits: &RunLimits, stderr: &str) -> String {
    let base = match outcome {
        Outcome::Exited(code) => format!("agent exited with code {code}"),
        Outcome::TimedOut => match limits.timeout.subsec_millis() {
            0 => format!("timed out after {} s", limits.timeout.as_secs()),
            _ => format!("timed out after {:.1} s", limits.timeout.as_secs_f64()),
        },
        Outcome::MemoryLimit => format!(
            "memory limit of {} MiB exceeded",
            limits.memory_bytes / (1024 * 1024)
        ),
        Outcome::OutputLimit => format!("output limit of {} bytes exceeded", limits.stdout_bytes),
        Outcome::StackOverflow => "agent trapped: call stack exhausted".to_owned(),
        Outcome::FuelExhausted => "agent ran out of fuel".to_owned(),
        Outcome::InputLimit => format!(
            "the input is larger than the agent accepts ({} bytes)",
            limits.stdin_bytes
        ),
        Outcome::Trapped(message) => format!("agent trapped: {message}"),
        Outcome::Unloadable(reason) => format!("the agent's module could not be loaded: {reason}"),
        Outcome::Completed | Outcome::Interrupted | Outcome::Canceled => {
            unreachable!("not a failure")
        }
    };
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match last_line {
        Some(line) => format!("{base}; stderr: {}", line.trim()),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn run_limits_take_the_manifest_capped_by_the_server() {
        let mut server = Settings::default().limits;
        let defaults = run_limits(&server, &Limits::default(), Duration::from_secs(60));
        assert_eq!(
            (
                defaults.timeout,
                defaults.memory_bytes,
                defaults.stdout_bytes,
                defaults.fuel
            ),
            (Duration::from_secs(30), 256 << 20, 1 << 20, None)
        );
        let asked = Limits {
            memory_bytes: Some(900 << 20),
            timeout_secs: Some(100),
            stdout_bytes: Some(10),
            fuel: Some(5),
            ..Limits::default()
        };
        // The task's own timeout is shorter; the server lowered its memory maximum since.
        server.max_memory_bytes = 512 << 20;
        server.max_fuel = 1000;
        let run = run_limits(&server, &asked, Duration::from_secs(20));
        assert_eq!(
            (run.timeout, run.memory_bytes, run.stdout_bytes, run.fuel),
            (Duration::from_secs(20), 512 << 20, 10, Some(5))
        );
    }

    #[test]
    fn a_deadline_cuts_the_timeout_and_a_passed_one_stops_the_run() {
        let now = OffsetDateTime::now_utc();
        let timeout = Duration::from_secs(30);
        assert_eq!(within_deadline(timeout, None, now), Some(timeout));
        let soon = now + time::Duration::seconds(2);
        assert_eq!(
            within_deadline(timeout, Some(soon), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(within_deadline(timeout, Some(now), now), None);
    }

    #[test]
    fn results_are_json_when_they_parse() {
        assert_eq!(
            parse_result(b" {\"a\": 1}\n"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            parse_result(b"plain text\n"),
            Some(Value::String("plain text\n".into()))
        );
        assert_eq!(parse_result(b"  \n"), None);
    }

    fn limits() -> RunLimits {
        RunLimits {
            timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            stdin_bytes: 4 << 20,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 16,
            fuel: None,
        }
    }

    #[test]
    fn failures_quote_the_last_stderr_line() {
        let limits = limits();
        assert_eq!(
            describe_failure(
                &Outcome::Exited(3),
                &limits,
                "warming up\nbad input: line 4\n"
            ),
            "agent exited with code 3; stderr: bad input: line 4"
        );
        assert_eq!(
            describe_failure(&Outcome::TimedOut, &limits, ""),
            "timed out after 2 s"
        );
        assert_eq!(
            describe_failure(&Outcome::MemoryLimit, &limits, ""),
            "memory limit of 256 MiB exceeded"
        );
    }

    fn verdict(outcome: Outcome, cut_by_deadline: bool, canceled: bool) -> Verdict {
        let agent = Agent::fixture("a", 0.1, &[]);
        let output = RunOutput {
            outcome,
            stdout: b"{\"n\": 1}".to_vec(),
            stderr: Vec::new(),
            duration: Duration::from_millis(7),
        };
        judge(RunReport {
            agent_id: agent.id,
            agent_name: &agent.name,
            output: &output,
            limits: &limits(),
            cut_by_deadline,
            canceled,
            started_at: OffsetDateTime::now_utc(),
        })
    }

    #[test]
    fn verdicts_blame_the_agent_only_for_its_own_failures() {
        let Verdict::Finished {
            finished,
            outcome,
            may_fail_over,
        } = verdict(Outcome::Completed, false, false)
        else {
            panic!("a completed run ends the task");
        };
        assert_eq!(finished.status, TaskStatus::Completed);
        assert_eq!(finished.result, Some(serde_json::json!({"n": 1})));
        assert!(outcome.unwrap().success && !may_fail_over);

        let Verdict::Finished {
            outcome,
            may_fail_over,
            ..
        } = verdict(Outcome::TimedOut, true, false)
        else {
            panic!("a timeout ends the run");
        };
        assert!(outcome.is_none(), "the deadline's fault, not the agent's");
        assert!(!may_fail_over, "another agent would meet the same deadline");

        let Verdict::Finished {
            finished,
            outcome,
            may_fail_over,
        } = verdict(Outcome::Exited(2), false, false)
        else {
            panic!("an exit ends the run");
        };
        assert_eq!(finished.exit_code, Some(2));
        assert!(!outcome.unwrap().success && may_fail_over);

        assert!(matches!(
            verdict(Outcome::InputLimit, false, false),
            Verdict::Finished { outcome: None, .. }
        ));
        assert!(matches!(
            verdict(Outcome::Completed, false, true),
            Verdict::Canceled { ran_ms: 7 }
        ));
        assert!(matches!(
            verdict(Outcome::Interrupted, false, false),
            Verdict::Interrupted
        ));
    }
}
