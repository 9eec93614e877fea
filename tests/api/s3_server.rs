//! A real S3 server for the compatibility-mode tests: `moto_server` (PyPI `moto[server]`,
//! installed by `.ci/run`) on a free port of 127.0.0.1, killed on drop. Moto keeps
//! everything in memory: a restart loses the buckets, so [`S3Server::restart`] creates them
//! again (what a real S3 keeps across its own outage).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use zerostate::config::{BlobBackend, BlobSettings, Secret};

use crate::helpers::DEADLINE;
use crate::redis_server::free_port;

/// The dummy key pair every test uses (moto accepts any unless told to check).
pub const ACCESS_KEY_ID: &str = "test-access-key";
pub const SECRET_ACCESS_KEY: &str = "test-secret-key";

pub struct S3Server {
    pub port: u16,
    /// Extra environment of the moto process (e.g. to make it check credentials).
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Buckets created so far, created again by a restart.
    buckets: Vec<String>,
}

impl S3Server {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts moto with `env` added to its environment.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let mut server = Self {
            port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            buckets: Vec::new(),
        };
        server.spawn().await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (`python3 -m pip install 'moto[server]'`; .ci/run does)");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let answers = async {
            while client.get(self.endpoint()).send().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(DEADLINE, answers)
            .await
            .expect("moto_server answers");
    }

    /// Creates a bucket (moto takes an unsigned `PUT /<bucket>`: test setup only).
    pub async fn create_bucket(&mut self, bucket: &str) {
        let url = format!("{}/{bucket}", self.endpoint());
        let status = reqwest::Client::new()
            .put(url)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "bucket {bucket}: {status}");
        if !self.buckets.iter().any(|b| b == bucket) {
            self.buckets.push(bucket.to_owned());
        }
    }

    /// Kills the server: connections to its port are refused from now on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the buckets it had (empty: moto forgets).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
        for bucket in self.buckets.clone() {
            self.create_bucket(&bucket).await;
        }
    }

    /// `[blobs]` settings for `bucket` under `prefix` on this server.
    pub fn settings(&self, bucket: &str, prefix: &str) -> BlobSettings {
        BlobSettings {
            backend: BlobBackend::S3,
            endpoint: self.endpoint(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            path_style: true,
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: Secret::new(SECRET_ACCESS_KEY),
        }
    }

    /// A client of `bucket`, to look at and tamper with objects behind the server's back.
    pub fn client(&self, bucket: &str) -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_region("us-east-1")
                .with_bucket_name(bucket)
                .with_access_key_id(ACCESS_KEY_ID)
                .with_secret_access_key(SECRET_ACCESS_KEY)
                .build()
                .unwrap(),
        )
    }

    /// The keys in `bucket` under `prefix`, sorted.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let client = self.client(bucket);
        let prefix = Path::from(prefix);
        let objects: Vec<_> = client.list(Some(&prefix)).try_collect().await.unwrap();
        let mut keys: Vec<String> = objects.into_iter().map(|o| o.location.into()).collect();
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP relay to a port that can be cut (every connection dropped, new ones refused at
/// once) and mended: an S3 outage that, unlike stopping moto, keeps the objects.
pub struct Relay {
    pub port: u16,
    /// Cancelled by a cut: ends every relayed connection. Replaced when mended.
    live: Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn to(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let live = Arc::new(std::sync::Mutex::new(
            tokio_util::sync::CancellationToken::new(),
        ));
        let token = live.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let cut = token.lock().unwrap().clone();
                if cut.is_cancelled() {
                    continue; // Dropped: the client sees the connection closed.
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        Self { port, live, accept }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.live.lock().unwrap().cancel();
    }

    pub fn mend(&self) {
        *self.live.lock().unwrap() = tokio_util::sync::CancellationToken::new();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
