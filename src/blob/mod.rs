//! Content-addressed binary storage for agent modules, keyed by the sha256 of the whole blob:
//! identical uploads share one copy. Every read re-hashes the bytes and fails loudly on a
//! mismatch rather than running a module that is not the one that was validated.
//!
//! [`BlobStore`] is the seam; reference counts and garbage collection stay with the agents'
//! records in the store. The embedded implementation, [`EmbeddedBlobs`], splits blobs into
//! chunks in the same redb file as everything else (blocking work runs through
//! [`Store::run`]). In compatibility mode [`s3::S3Blobs`] keeps them in an S3 bucket; the
//! backend is chosen once at start-up (`[blobs] backend`).

pub mod links;
pub mod s3;

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::records::hex;
use crate::store::{Store, StoreError, decode, encode, tables};

/// Size of one stored chunk. Small enough that a read never copies a whole module at once.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Stored description of a blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobMeta {
    pub size: u64,
    pub chunks: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("blob {hash} is corrupt: content hashes to {actual}")]
    Corrupt { hash: String, actual: String },
    /// The blob store's dependency (S3) is down, or its breaker open: nothing was changed.
    #[error("{dependency} is unavailable; retry in {}s", crate::breaker::retry_secs(*.retry_after))]
    Unavailable {
        dependency: &'static str,
        retry_after: Duration,
    },
    #[error("hashing a blob stopped: {0}")]
    Hashing(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BlobError {
    /// 503 `dependency_unavailable` with `Retry-After` when the dependency is down; any other
    /// blob failure is internal (a missing or corrupt blob the store references is a bug or
    /// damage, never the client's doing).
    pub fn api_error(&self) -> crate::error::ApiError {
        match self {
            BlobError::Unavailable {
                dependency,
                retry_after,
            } => crate::breaker::unavailable(dependency, *retry_after),
            other => crate::error::ApiError::internal(other),
        }
    }
}

impl From<BlobError> for crate::error::ApiError {
    fn from(e: BlobError) -> Self {
        e.api_error()
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Where agent modules are kept, by the lowercase hex sha256 of their bytes.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` unless a blob with the same hash exists; resolves to the hash once the
    /// blob is durable.
    fn put(&self, bytes: Bytes) -> BoxFuture<'_, Result<String, BlobError>>;

    /// The blob's bytes, checked against its hash.
    fn get(&self, hash: String) -> BoxFuture<'_, Result<Bytes, BlobError>>;

    /// Whether a blob is stored.
    fn exists(&self, hash: String) -> BoxFuture<'_, Result<bool, BlobError>>;

    /// Deletes a blob (deleting one that does not exist is not an error). The caller checks
    /// that no version uses it (see [`crate::store::tables::BLOB_REFS`]).
    fn delete(&self, hash: String) -> BoxFuture<'_, Result<(), BlobError>>;

    /// A URL that downloads the blob without this server for `ttl`, where the backend can
    /// sign one (S3's presigned GET); `None` where it cannot (embedded: the server serves it).
    fn presigned_get(
        &self,
        hash: String,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<String>, BlobError>> {
        let _ = (hash, ttl);
        async { Ok(None) }.boxed()
    }
}

/// Blobs in chunks of the redb file. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBlobs {
    store: Store,
}

impl EmbeddedBlobs {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl BlobStore for EmbeddedBlobs {
    fn put(&self, bytes: Bytes) -> BoxFuture<'_, Result<String, BlobError>> {
        let write = move |db: &redb::Database| {
            let hash = sha256_hex(&bytes);
            let txn = db.begin_write()?;
            {
                let mut blobs = txn.open_table(tables::BLOBS)?;
                if blobs.get(hash.as_str())?.is_none() {
                    let mut chunks = txn.open_table(tables::BLOB_CHUNKS)?;
                    let mut count = 0u32;
                    for (i, chunk) in bytes.chunks(CHUNK_SIZE).enumerate() {
                        chunks.insert((hash.as_str(), i as u32), chunk)?;
                        count += 1;
                    }
                    let meta = BlobMeta {
                        size: bytes.len() as u64,
                        chunks: count,
                    };
                    blobs.insert(hash.as_str(), encode(&meta).as_slice())?;
                }
            }
            txn.commit()?;
            Ok(hash)
        };
        async move { Ok(self.store.run(write).await?) }.boxed()
    }

    /// Reads and hashes on the blocking pool.
    fn get(&self, hash: String) -> BoxFuture<'_, Result<Bytes, BlobError>> {
        let read = move |db: &redb::Database| {
            let txn = db.begin_read()?;
            let Some(meta) = txn
                .open_table(tables::BLOBS)?
                .get(hash.as_str())?
                .map(|v| v.value().to_vec())
            else {
                return Ok(Err(BlobError::NotFound(hash)));
            };
            let meta: BlobMeta = decode("blobs", &meta)?;
            let chunks = txn.open_table(tables::BLOB_CHUNKS)?;
            let mut out = Vec::with_capacity(meta.size as usize);
            for entry in chunks.range((hash.as_str(), 0)..(hash.as_str(), meta.chunks))? {
                out.extend_from_slice(entry?.1.value());
            }
            let actual = sha256_hex(&out);
            if actual != hash {
                return Ok(Err(BlobError::Corrupt { hash, actual }));
            }
            Ok(Ok(Bytes::from(out)))
        };
        async move { self.store.run(read).await? }.boxed()
    }

    fn exists(&self, hash: String) -> BoxFuture<'_, Result<bool, BlobError>> {
        let read = move |db: &redb::Database| {
            let txn = db.begin_read()?;
            Ok(txn.open_table(tables::BLOBS)?.get(hash.as_str())?.is_some())
        };
        async move { Ok(self.store.run(read).await?) }.boxed()
    }

    fn delete(&self, hash: String) -> BoxFuture<'_, Result<(), BlobError>> {
        let write = move |db: &redb::Database| {
            let txn = db.begin_write()?;
            {
                let mut blobs = txn.open_table(tables::BLOBS)?;
                let meta = blobs
                    .remove(hash.as_str())?
                    .map(|v| decode::<BlobMeta>("blobs", v.value()))
                    .transpose()?;
                if let Some(meta) = meta {
                    let mut chunks = txn.open_table(tables::BLOB_CHUNKS)?;
                    for i in 0..meta.chunks {
                        chunks.remove((hash.as_str(), i))?;
                    }
                }
            }
            txn.commit()?;
            Ok(())
        };
        async move { Ok(self.store.run(write).await?) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_across_chunks_and_deduplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let blobs: &dyn BlobStore = &EmbeddedBlobs::new(store.clone());
        let data: Vec<u8> = (0..(CHUNK_SIZE * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let hash = blobs.put(Bytes::from(data.clone())).await.unwrap();
        assert_eq!(hash, sha256_hex(&data));
        assert_eq!(blobs.put(Bytes::from(data.clone())).await.unwrap(), hash);
        assert_eq!(blobs.get(hash.clone()).await.unwrap(), data);
        assert!(matches!(
            blobs.get(sha256_hex(b"nope")).await,
            Err(BlobError::NotFound(_))
        ));
        blobs.delete(hash.clone()).await.unwrap();
        assert!(!blobs.exists(hash.clone()).await.unwrap());
        assert!(matches!(
            blobs.get(hash.clone()).await,
            Err(BlobError::NotFound(_))
        ));
        blobs.delete(hash.clone()).await.unwrap();
    }

    #[tokio::test]
    async fn a_corrupted_chunk_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let blobs: &dyn BlobStore = &EmbeddedBlobs::new(store.clone());
        let hash = blobs
            .put(Bytes::from_static(b"original bytes"))
            .await
            .unwrap();
        let key = hash.clone();
        store
            .run(move |db| {
                let txn = db.begin_write()?;
                txn.open_table(tables::BLOB_CHUNKS)?
                    .insert((key.as_str(), 0), b"tampered bytes!".as_slice())?;
                txn.commit()?;
                Ok(())
            })
            .await
            .unwrap();
        assert!(matches!(
            blobs.get(hash.clone()).await,
            Err(BlobError::Corrupt { .. })
        ));
    }
}
