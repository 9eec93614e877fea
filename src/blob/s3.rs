//! [`S3Blobs`]: agent modules as objects of an S3 bucket (compatibility mode), through the
//! `object_store` crate (its signing, XML and multipart; none of ours).
//!
//! Key layout, one object per blob:
//!
//! ```text
//! <prefix>/blobs/<sha256>      the module's bytes, exactly (no prefix: blobs/<sha256>)
//! ```
//!
//! Every S3 call goes through the `s3` [`Breaker`]: while it is open, calls fail at once with
//! [`BlobError::Unavailable`] (503 `dependency_unavailable`). A missing object is an answer,
//! not an outage. Reads re-hash the bytes and refuse a mismatch ([`BlobError::Corrupt`]).
//! Reference counts and garbage collection stay in the store, as for embedded blobs: the
//! collector calls [`BlobStore::delete`]. The store's `blobs` table lists every object that may
//! exist (a row written before the upload, removed after the delete), so the start-up sweep
//! of unreferenced blobs finds what a crash or an outage left in the bucket. Secrets never reach a log line or an error: the
//! credentials live only inside the object_store client, which prints none of them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{Method, Signer, Url};
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::{BlobError, BlobMeta, BlobStore, sha256_hex};
use crate::breaker::{Breaker, Tripped};
use crate::config::BlobSettings;
use crate::store::{Store, encode, tables};
use crate::telemetry::LogBudget;

/// Modules bigger than this go up as a multipart upload.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;

/// Size of one part of a multipart upload (S3 wants at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Slowest transfer rate a call carrying bytes is given time for, beyond `call_timeout_ms`:
/// an 8 MiB part gets 8 s more.
const MIN_TRANSFER_BYTES_PER_SEC: u64 = 1024 * 1024;

/// Failed S3 calls are logged at most this often (an outage fails every call).
static FAILURE_LOG: LogBudget = LogBudget::every(Duration::from_secs(10));

/// A misconfiguration found at start-up: names the setting and what to change.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    #[error("blobs.{0} is not set; blobs.backend = \"s3\" needs it")]
    Missing(&'static str),
    #[error(
        "blobs.access_key_id and blobs.secret_access_key are not set (nor AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY in the environment); set both to a key pair of the S3 server"
    )]
    MissingCredentials,
    #[error("blobs.endpoint: {0}")]
    Invalid(String),
    #[error(
        "blobs.endpoint {endpoint} is unreachable ({reason}); check the address and that the S3 \
         server is running"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "blobs.bucket: there is no bucket `{bucket}` at {endpoint}; create it, or set \
         blobs.bucket to an existing one"
    )]
    BucketMissing { bucket: String, endpoint: String },
    #[error(
        "blobs.access_key_id / blobs.secret_access_key: the S3 server refused the credentials \
         for bucket `{bucket}`; set a key pair it accepts, allowed to list, read, write and \
         delete in the bucket"
    )]
    CredentialsRefused { bucket: String },
    #[error("blobs: the S3 server refused to list bucket `{bucket}`: {reason}")]
    Refused { bucket: String, reason: String },
}

/// Blobs in an S3 bucket. Cheap to clone.
#[derive(Clone)]
pub struct S3Blobs {
    store: Arc<AmazonS3>,
    breaker: Breaker,
    /// The database: its `blobs` table lists the objects that may exist, for the sweep.
    /// `None` on a worker node, which only reads modules.
    db: Option<Store>,
    /// `<prefix>/blobs`: the parent of every key.
    root: Path,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobs").field("root", &self.root).finish()
    }
}

/// The access key pair: the settings, else the standard AWS variables.
fn credentials(settings: &BlobSettings) -> Result<(String, String), S3ConfigError> {
    let or_env = |value: &str, var: &str| {
        Some(value.to_owned())
            .filter(|v| !v.is_empty())
            .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
    };
    let id = or_env(&settings.access_key_id, "AWS_ACCESS_KEY_ID");
    let secret = or_env(settings.secret_access_key.expose(), "AWS_SECRET_ACCESS_KEY");
    id.zip(secret).ok_or(S3ConfigError::MissingCredentials)
}

/// The object_store client for `settings`, retrying a failed request once, quickly: the
/// breaker, not a retry loop, decides when S3 is down.
fn client(settings: &BlobSettings, call_timeout: Duration) -> Result<AmazonS3, S3ConfigError> {
    for (name, value) in [
        ("endpoint", &settings.endpoint),
        ("bucket", &settings.bucket),
        ("region", &settings.region),
    ] {
        if value.trim().is_empty() {
            return Err(S3ConfigError::Missing(name));
        }
    }
    check_endpoint(&settings.endpoint)?;
    let (id, secret) = credentials(settings)?;
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
        },
        max_retries: 1,
        retry_timeout: call_timeout,
    };
    AmazonS3Builder::new()
        .with_endpoint(settings.endpoint.trim_end_matches('/'))
        .with_virtual_hosted_style_request(!settings.path_style)
        .with_region(&settings.region)
        .with_bucket_name(&settings.bucket)
        .with_access_key_id(id)
        .with_secret_access_key(secret)
        .with_retry(retry)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_connect_timeout(call_timeout),
        )
        .build()
        .map_err(|e| S3ConfigError::Invalid(e.to_string()))
}

/// An `http://` or `https://` URL with a host: object_store panics on a request to anything
/// else, so it is refused here, by name.
fn check_endpoint(endpoint: &str) -> Result<(), S3ConfigError> {
    let url = Url::parse(endpoint).map_err(|e| {
        S3ConfigError::Invalid(format!(
            "`{endpoint}` is not a URL ({e}); give http(s)://host[:port]"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(S3ConfigError::Invalid(format!(
            "`{endpoint}` is not an http:// or https:// URL with a host"
        )));
    }
    Ok(())
}

/// `<prefix>/blobs`, the prefix without surrounding slashes.
fn root(prefix: &str) -> Path {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        Path::from("blobs")
    } else {
        Path::from(format!("{prefix}/blobs"))
    }
}

/// Whether an S3 error says the dependency is down (a missing object says nothing of it).
fn is_outage(error: &object_store::Error) -> bool {
    !matches!(error, object_store::Error::NotFound { .. })
}

/// The innermost cause of `error` (object_store's messages repeat their causes): "tcp
/// connect error: Connection refused" rather than three times the request's URL.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// What a failed start-up listing says about the settings.
fn misconfiguration(error: object_store::Error, settings: &BlobSettings) -> S3ConfigError {
    let bucket = settings.bucket.clone();
    let missing = || S3ConfigError::BucketMissing {
        bucket: settings.bucket.clone(),
        endpoint: settings.endpoint.clone(),
    };
    let text = error.to_string();
    let refused_codes = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    ];
    match error {
        object_store::Error::NotFound { .. } => missing(),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            S3ConfigError::CredentialsRefused { bucket }
        }
        _ if text.contains("NoSuchBucket") => missing(),
        _ if refused_codes.iter().any(|code| text.contains(code)) => {
            S3ConfigError::CredentialsRefused { bucket }
        }
        // An HTTP answer that is none of the above: the server is there but refuses.
        _ if text.contains("HTTP status") || text.contains("Server returned") => {
            S3ConfigError::Refused {
                bucket,
                reason: text,
            }
        }
        e => S3ConfigError::Unreachable {
            endpoint: settings.endpoint.clone(),
            reason: root_cause(&e),
        },
    }
}

impl S3Blobs {
    /// Builds the client and lists the bucket once: a misconfiguration (missing setting,
    /// unreachable endpoint, missing bucket, refused credentials) is an error naming the
    /// setting to change. No object is written.
    pub async fn connect(
        settings: &BlobSettings,
        breaker: Breaker,
        db: Store,
    ) -> Result<Self, S3ConfigError> {
        Self::open(settings, breaker, Some(db)).await
    }

    /// A store for a node that only reads modules (a worker node): nothing to sweep, so no
    /// database.
    pub async fn reader(settings: &BlobSettings, breaker: Breaker) -> Result<Self, S3ConfigError> {
        Self::open(settings, breaker, None).await
    }

    async fn open(
        settings: &BlobSettings,
        breaker: Breaker,
        db: Option<Store>,
    ) -> Result<Self, S3ConfigError> {
        let store = client(settings, breaker.call_timeout())?;
        let blobs = Self {
            db,
            store: Arc::new(store),
            root: root(&settings.prefix),
            breaker,
        };
        blobs.probe(settings).await?;
        tracing::info!(
            endpoint = %settings.endpoint,
            bucket = %settings.bucket,
            root = %blobs.root,
            "agent modules are kept in S3"
        );
        Ok(blobs)
    }

    /// Lists the root once (one page of keys); a failure says which setting is wrong.
    async fn probe(&self, settings: &BlobSettings) -> Result<(), S3ConfigError> {
        let timeout = self.breaker.call_timeout();
        let listed = self.store.list_with_delimiter(Some(&self.root));
        match tokio::time::timeout(timeout, listed).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(misconfiguration(e, settings)),
            Err(_) => Err(S3ConfigError::Unreachable {
                endpoint: settings.endpoint.clone(),
                reason: format!("no answer within {} ms", timeout.as_millis()),
            }),
        }
    }

    /// The key of the blob `hash`.
    pub fn key(&self, hash: &str) -> Path {
        self.root.clone().join(hash)
    }

    /// The breaker every call goes through.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Time allowed for a call carrying `bytes`.
    fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.breaker.call_timeout() + Duration::from_secs(bytes / MIN_TRANSFER_BYTES_PER_SEC)
    }

    /// A failed call as a blob error: a missing object is `NotFound`; anything else means S3
    /// is unavailable (the cause goes to the log, at most once every 10 s).
    fn failure(&self, tripped: Tripped<object_store::Error>, hash: &str) -> BlobError {
        let dependency = self.breaker.dependency();
        match tripped {
            Tripped::Failed(object_store::Error::NotFound { .. }) => {
                BlobError::NotFound(hash.to_owned())
            }
            Tripped::Open { retry_after, .. } => BlobError::Unavailable {
                dependency,
                retry_after,
            },
            other => {
                if let Some(suppressed) = FAILURE_LOG.allow() {
                    tracing::warn!(error = %other, suppressed, "S3 call failed");
                }
                BlobError::Unavailable {
                    dependency,
                    retry_after: self.breaker.retry_after().unwrap_or_default(),
                }
            }
        }
    }

    async fn head(&self, hash: &str) -> Result<bool, BlobError> {
        let path = self.key(hash);
        match self
            .breaker
            .call_with(self.store.head(&path), is_outage)
            .await
        {
            Ok(_) => Ok(true),
            Err(Tripped::Failed(object_store::Error::NotFound { .. })) => Ok(false),
            Err(e) => Err(self.failure(e, hash)),
        }
    }

    async fn store(&self, bytes: Bytes) -> Result<String, BlobError> {
        let hash = hash(bytes.clone()).await?;
        if self.head(&hash).await? {
            return Ok(hash);
        }
        self.note(&hash, bytes.len() as u64).await?;
        let path = self.key(&hash);
        if bytes.len() > MULTIPART_THRESHOLD {
            self.upload_parts(&path, bytes, &hash).await?;
        } else {
            let timeout = self.transfer_timeout(bytes.len() as u64);
            let put = self.store.put(&path, PutPayload::from(bytes));
            self.breaker
                .call_within(timeout, put, is_outage)
                .await
                .map_err(|e| self.failure(e, &hash))?;
        }
        Ok(hash)
    }

    /// A multipart upload of [`PART_SIZE`] parts, one at a time; aborted on a failure (so
    /// the bucket keeps no parts), visible only once complete.
    async fn upload_parts(&self, path: &Path, bytes: Bytes, hash: &str) -> Result<(), BlobError> {
        let mut upload = self
            .breaker
            .call_with(self.store.put_multipart(path), is_outage)
            .await
            .map_err(|e| self.failure(e, hash))?;
        for start in (0..bytes.len()).step_by(PART_SIZE) {
            let part = bytes.slice(start..(start + PART_SIZE).min(bytes.len()));
            let timeout = self.transfer_timeout(part.len() as u64);
            let sent = upload.put_part(PutPayload::from(part));
            if let Err(e) = self.breaker.call_within(timeout, sent, is_outage).await {
                let _ = tokio::time::timeout(self.breaker.call_timeout(), upload.abort()).await;
                return Err(self.failure(e, hash));
            }
        }
        let timeout = self.breaker.call_timeout();
        match self
            .breaker
            .call_within(timeout, upload.complete(), is_outage)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = tokio::time::timeout(timeout, upload.abort()).await;
                Err(self.failure(e, hash))
            }
        }
    }

    async fn read(&self, hash: String) -> Result<Bytes, BlobError> {
        let path = self.key(&hash);
        let found = self
            .breaker
            .call_with(self.store.get(&path), is_outage)
            .await
            .map_err(|e| self.failure(e, &hash))?;
        let timeout = self.transfer_timeout(found.meta.size);
        let bytes = self
            .breaker
            .call_within(timeout, found.bytes(), is_outage)
            .await
            .map_err(|e| self.failure(e, &hash))?;
        let actual = self::hash(bytes.clone()).await?;
        if actual != hash {
            return Err(BlobError::Corrupt { hash, actual });
        }
        Ok(bytes)
    }

    async fn remove(&self, hash: String) -> Result<(), BlobError> {
        let path = self.key(&hash);
        match self
            .breaker
            .call_with(self.store.delete(&path), is_outage)
            .await
        {
            Ok(()) | Err(Tripped::Failed(object_store::Error::NotFound { .. })) => {
                self.forget(hash).await
            }
            Err(e) => Err(self.failure(e, &hash)),
        }
    }

    /// Lists `hash` in the `blobs` table (see [`tables::BLOBS`]) before its object is
    /// uploaded, so that an object a crash leaves unreferenced is found by the start-up sweep.
    async fn note(&self, hash: &str, size: u64) -> Result<(), BlobError> {
        let (hash, meta) = (hash.to_owned(), encode(&BlobMeta { size, chunks: 0 }));
        let write = move |db: &redb::Database| {
            let txn = db.begin_write()?;
            txn.open_table(tables::BLOBS)?
                .insert(hash.as_str(), meta.as_slice())?;
            txn.commit()?;
            Ok(())
        };
        match &self.db {
            Some(db) => Ok(db.run(write).await?),
            None => Ok(()),
        }
    }

    /// Takes `hash` off the `blobs` table once its object is gone.
    async fn forget(&self, hash: String) -> Result<(), BlobError> {
        let write = move |db: &redb::Database| {
            let txn = db.begin_write()?;
            txn.open_table(tables::BLOBS)?.remove(hash.as_str())?;
            txn.commit()?;
            Ok(())
        };
        match &self.db {
            Some(db) => Ok(db.run(write).await?),
            None => Ok(()),
        }
    }

    /// A presigned GET of the blob's object, valid for `ttl`. Signing is local (no call is
    /// made), but while the breaker is open the link would lead nowhere: refused then.
    async fn presign(&self, hash: String, ttl: Duration) -> Result<Option<String>, BlobError> {
        if let Some(retry_after) = self.breaker.retry_after() {
            return Err(BlobError::Unavailable {
                dependency: self.breaker.dependency(),
                retry_after,
            });
        }
        let url = self
            .store
            .signed_url(Method::GET, &self.key(&hash), ttl)
            .await
            .map_err(|e| self.failure(Tripped::Failed(e), &hash))?;
        Ok(Some(url.to_string()))
    }
}

/// sha256 of `bytes` on the blocking pool (a big module takes a while).
async fn hash(bytes: Bytes) -> Result<String, BlobError> {
    Ok(tokio::task::spawn_blocking(move || sha256_hex(&bytes)).await?)
}

impl BlobStore for S3Blobs {
    fn put(&self, bytes: Bytes) -> BoxFuture<'_, Result<String, BlobError>> {
        self.store(bytes).boxed()
    }

    fn get(&self, hash: String) -> BoxFuture<'_, Result<Bytes, BlobError>> {
        self.read(hash).boxed()
    }

    fn exists(&self, hash: String) -> BoxFuture<'_, Result<bool, BlobError>> {
        async move { self.head(&hash).await }.boxed()
    }

    fn delete(&self, hash: String) -> BoxFuture<'_, Result<(), BlobError>> {
        self.remove(hash).boxed()
    }

    fn presigned_get(
        &self,
        hash: String,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<String>, BlobError>> {
        self.presign(hash, ttl).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefix_blobs_hash_with_or_without_a_prefix() {
        assert_eq!(root("").as_ref(), "blobs");
        assert_eq!(root("/site-a/").as_ref(), "site-a/blobs");
        assert_eq!(root("a/b").join("ff").as_ref(), "a/b/blobs/ff");
    }

    #[test]
    fn missing_settings_are_named() {
        let mut s = BlobSettings {
            backend: crate::config::BlobBackend::S3,
            ..BlobSettings::default()
        };
        let named = |s: &BlobSettings| client(s, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(named(&s).starts_with("blobs.endpoint is not set"));
        s.endpoint = "http://127.0.0.1:1".into();
        assert!(named(&s).starts_with("blobs.bucket is not set"));
        s.bucket = "modules".into();
        s.endpoint = "not a url".into();
        assert!(named(&s).starts_with("blobs.endpoint: `not a url` is not a URL"));
        s.endpoint = "ftp://host".into();
        assert!(named(&s).contains("is not an http:// or https:// URL"));
    }
}
