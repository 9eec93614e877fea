//! The embedded store: one redb file (`<data_dir>/zerostate.redb`) holding users, agents, agent
//! binaries and tasks. Table layouts are in [`tables`].
//!
//! Threading: redb calls block, so every public method hops to the blocking pool through
//! [`Store::run`]; none may be called from an async thread directly. Writes commit with
//! `Durability::Immediate`, so a method that returned `Ok` survives a crash, except task
//! batches ([`Store::apply_tasks`]): tasks are journaled in the WAL first, and the store is
//! their materialised view, synced at each WAL checkpoint.

pub mod tables;

mod agents;
mod analytics;
mod api_keys;
mod sessions;
mod tasks;
mod users;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use agents::{Holdings, Inserted, Refusal};
pub use tasks::{IdempotencyClaim, OwnerPage, TaskBatch};

/// The layout version this build writes. Version 1 files (task rows as JSON) open too: their
/// rows read as they are, and the file is marked current, so an older build refuses it
/// instead of misreading a binary row. Version 3 added agent versions, blob reference counts
/// and the completed-runs index; opening an older file fills them in from the agents and
/// tasks (see [`agents::migrate_to_v3`]). Version 4 added the analytics cells, counted from
/// the finished tasks at the upgrade (see [`analytics::backfill`]).
const CURRENT_SCHEMA: u64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("corrupt record in table {table}: {source}")]
    Corrupt {
        table: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    CorruptTask(#[from] crate::records::codec::CodecError),
    #[error("data file has schema version {found}, this build supports 1 to {CURRENT_SCHEMA}")]
    Schema { found: u64 },
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        crate::error::ApiError::internal(&e)
    }
}

/// redb's page cache. The kernel's page cache holds the file too, so a large one mostly
/// duplicates memory, and every page it takes is fresh memory, slow to fault in under a write
/// burst: with redb's 1 GiB default the task engine ran 20-25 % slower than with this
/// (`cargo bench --bench queue_throughput -- 500000 engine`).
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Shared handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) the database file and creates any missing table. Blocking.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(tables::USERS)?;
            txn.open_table(tables::USERS_BY_EMAIL)?;
            txn.open_table(tables::AGENTS)?;
            txn.open_table(tables::AGENTS_BY_OWNER_NAME)?;
            txn.open_table(tables::BLOBS)?;
            txn.open_table(tables::BLOB_CHUNKS)?;
            txn.open_table(tables::TASKS)?;
            txn.open_table(tables::TASKS_BY_OWNER)?;
            txn.open_table(tables::ACTIVE_TASKS)?;
            txn.open_table(tables::TASK_COUNTS)?;
            txn.open_table(tables::IDEMPOTENCY_KEYS)?;
            txn.open_table(tables::FINISHED_TASKS)?;
            txn.open_table(tables::AGENT_VERSIONS)?;
            txn.open_table(tables::BLOB_REFS)?;
            txn.open_table(tables::REVIEWS)?;
            txn.open_table(tables::COMPLETED_RUNS)?;
            txn.open_table(tables::API_KEYS)?;
            txn.open_table(tables::API_KEYS_BY_USER)?;
            txn.open_table(tables::SESSION_GENERATIONS)?;
            txn.open_table(tables::ENDED_SESSIONS)?;
            txn.open_table(tables::ANALYTICS)?;
            let found = txn
                .open_table(tables::META)?
                .get(tables::SCHEMA_VERSION)?
                .map(|v| v.value());
            match found {
                Some(CURRENT_SCHEMA) => {}
                None | Some(1..=3) => {
                    if found.is_none_or(|v| v < 3) {
                        agents::migrate_to_v3(&txn)?;
                    }
                    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
                    let counted = analytics::backfill(&txn, now)?;
                    if counted > 0 {
                        tracing::info!(
                            tasks = counted,
                            "analytics counted from the finished tasks"
                        );
                    }
                    txn.open_table(tables::META)?
                        .insert(tables::SCHEMA_VERSION, CURRENT_SCHEMA)?;
                }
                Some(found) => return Err(StoreError::Schema { found }),
            }
        }
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The database, for components that keep their own tables in the same file (blobs).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// Runs `f` on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Database) -> Result<R, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await?
    }

    /// Reads one JSON record.
    async fn get_json<T: DeserializeOwned + Send + 'static>(
        &self,
        table: redb::TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(table)?;
            t.get(key.as_str())?
                .map(|v| decode(table.name(), v.value()))
                .transpose()
        })
        .await
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise infallibly")
}

pub(crate) fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table: table.to_owned(),
        source,
    })
}

/// Reads a JSON record inside an open transaction.
pub(crate) fn read_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    table.get(key)?.map(|v| decode(name, v.value())).transpose()
}
