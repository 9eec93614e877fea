//! Every redb table in `zerostate.redb`, with its key and value encoding.
//!
//! Values marked JSON are `serde_json` encodings of the named Rust type; JSON keeps records
//! readable with any redb tool and lets fields be added with `#[serde(default)]`. Ids are
//! hyphenated lowercase UUID text. Timestamps inside records are RFC 3339.

use redb::TableDefinition;
use uuid::Uuid;

/// `user id` → JSON [`crate::records::User`].
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// `lowercased email` → `user id`. Enforces one account per email.
pub const USERS_BY_EMAIL: TableDefinition<&str, &str> = TableDefinition::new("users_by_email");

/// `agent id` → JSON [`crate::records::Agent`], including its live outcome statistics.
pub const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");

/// `(owner id, agent name)` → `agent id`. One agent per name per owner; makes `--demo`
/// publishing idempotent.
pub const AGENTS_BY_OWNER_NAME: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("agents_by_owner_name");

/// `(agent id, version)` → JSON [`crate::records::AgentVersion`]: every binary an agent has
/// had that was not deleted.
pub const AGENT_VERSIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("agent_versions");

/// `sha256 hex` → how many agent versions use that blob. Written in the same transaction as
/// the versions; a blob whose count reaches zero is deleted (and a blob without a count, left
/// by a crash between storing the bytes and the version, is swept at start).
pub const BLOB_REFS: TableDefinition<&str, u64> = TableDefinition::new("blob_refs");

/// `(agent id, user id)` → JSON [`crate::records::Review`]. One review per user and agent.
pub const REVIEWS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("reviews");

/// `(user id, agent id)` → tasks of that user the agent completed: who may review it.
/// Written with the task states in [`crate::store::Store::apply_tasks`].
pub const COMPLETED_RUNS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("completed_runs");

/// `sha256 hex` → JSON `BlobMeta` (size, chunk count): the embedded blob store's
/// (`src/blob/`), which keeps its bytes in this file. The S3 blob store (`src/blob/s3.rs`)
/// writes a row with 0 chunks before it uploads an object and removes it once the object is
/// deleted: the start-up sweep of blobs without a reference then finds the objects a crash or
/// an S3 outage left behind.
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

/// `(sha256 hex, chunk index)` → raw bytes, at most the blob store's `CHUNK_SIZE` (256 KiB)
/// each.
pub const BLOB_CHUNKS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("blob_chunks");

/// `task id` → [`crate::records::Task`] in the binary encoding of [`crate::records::codec`]
/// (JSON in rows written by schema 1). The task tables are a view of the task WAL
/// (`<data_dir>/wal`), written in batches by the journal's ledger; a row's `version` tells
/// replay which WAL changes it already holds.
pub const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");

/// `(owner id, submit sequence)` → `task id`. A reverse range lists a user's tasks newest first.
pub const TASKS_BY_OWNER: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("tasks_by_owner");

/// `submit sequence` → `task id` for every task not yet in a terminal state. Start-up re-queues
/// exactly these, in submit order, so recovery costs O(unfinished tasks).
pub const ACTIVE_TASKS: TableDefinition<u64, &str> = TableDefinition::new("active_tasks");

/// `(finish time in unix ms, submit sequence)` → `task id` for every task in a terminal state,
/// oldest first: what retention prunes.
pub const FINISHED_TASKS: TableDefinition<(u64, u64), &str> =
    TableDefinition::new("finished_tasks");

/// `user id` (or [`ALL_USERS`]) → JSON [`crate::records::TaskCounts`], updated in the same
/// transaction as the status changes they count.
pub const TASK_COUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("task_counts");

/// The [`TASK_COUNTS`] and [`ANALYTICS`] owner key of the server-wide figures.
pub const ALL_USERS: &str = "*";

/// The owner key of `owner`'s figures in [`TASK_COUNTS`] and [`ANALYTICS`]: the user id, or
/// [`ALL_USERS`] for everyone's.
pub fn owner_key(owner: Option<Uuid>) -> String {
    owner.map_or_else(|| ALL_USERS.to_owned(), |o| o.to_string())
}

/// `(owner id, Idempotency-Key)` → `task id` (16 raw UUID bytes) followed by the claim time in
/// unix seconds (u64 LE). A claim older than 24 h no longer binds the key.
pub const IDEMPOTENCY_KEYS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("idempotency_keys");

/// Named counters: [`NEXT_TASK_SEQ`], [`SCHEMA_VERSION`].
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Next submit sequence number (FIFO order within a priority, and listing order), as of the
/// last applied batch; replay raises it past any sequence found in the WAL.
pub const NEXT_TASK_SEQ: &str = "next_task_seq";

/// Layout version of this file, checked at open.
pub const SCHEMA_VERSION: &str = "schema_version";

/// `sha256 hex of the whole key` → JSON [`crate::records::ApiKey`]. The key itself is never
/// stored; a request's key is found by its hash.
pub const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");

/// `(user id, key id)` → `sha256 hex` in [`API_KEYS`]: a user's keys, oldest first.
pub const API_KEYS_BY_USER: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("api_keys_by_user");

/// `user id` → session generation: the `gen` claim a session token of that user must carry.
/// A password change increments it, which ends every older session. Users without a row are
/// at generation 0.
pub const SESSION_GENERATIONS: TableDefinition<&str, u64> =
    TableDefinition::new("session_generations");

/// `(expiry in unix seconds, session id)` → `user id`: session tokens signed out before their
/// expiry (the `jti` claim). Ordered by expiry, so the expired ones are one range to delete.
pub const ENDED_SESSIONS: TableDefinition<(u64, &str), &str> =
    TableDefinition::new("ended_sessions");

/// `(user id or [`ALL_USERS`], cell width in seconds, cell start in unix seconds, agent id)` →
/// JSON [`crate::records::Cell`]: the tasks of that owner and agent that
/// finished in that minute (width 60) or hour (width 3600). Written with the task states in
/// [`crate::store::Store::apply_tasks`]; old cells are deleted by retention.
pub const ANALYTICS: TableDefinition<(&str, u32, u64, &str), &[u8]> =
    TableDefinition::new("analytics");
