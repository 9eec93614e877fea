//! The primary's internal routes, as a worker node calls them (`X-Service-Token`).

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::config::ClusterSettings;
use crate::queue::Lease;
use crate::records::{RunOrder, RunOutput};

/// A call to the primary that did not get an answer it could use.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    /// The primary refused the request itself (4xx): sending it again changes nothing.
    pub refused: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            message,
            refused: false,
        }
    }
}

#[derive(Deserialize)]
struct BeginAnswer {
    order: Option<RunOrder>,
}

#[derive(Deserialize)]
struct CompleteAnswer {
    applied: bool,
}

pub struct Primary {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Primary {
    pub fn new(settings: &ClusterSettings) -> Result<Self, String> {
        // No redirects: the token must never follow one to another host.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: settings.primary_url.trim_end_matches('/').to_owned(),
            token: settings.service_token.expose().to_owned(),
        })
    }

    /// Checks the primary takes this node's token. A primary that cannot be reached yet is
    /// only logged (nodes may start in any order); a refused token stops the worker.
    pub async fn check(&self) -> Result<(), crate::cluster::Misconfigured> {
        let url = format!("{}/internal/v1/ping", self.base);
        let answer = self
            .http
            .get(url)
            .header("x-service-token", &self.token)
            .send()
            .await;
        match answer.map(|r| r.status()) {
            Ok(status) if status.is_success() => Ok(()),
            Ok(status) if status.is_client_error() => Err(crate::cluster::Misconfigured {
                setting: "cluster.service_token",
                problem: format!(
                    "the primary at {} refused this node ({status}): set the same \
                     cluster.service_token on the primary and the workers, and check \
                     cluster.primary_url",
                    self.base
                ),
            }),
            Ok(status) => {
                tracing::warn!(%status, primary = %self.base, "the primary answered the check with an error; going on");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(primary = %self.base, error = %e, "cannot reach the primary yet; going on (tasks wait for it)");
                Ok(())
            }
        }
    }

    pub async fn begin(&self, lease: &Lease) -> Result<Option<RunOrder>, Failure> {
        let body = json!({ "lease": lease });
        let answer: BeginAnswer = self.post("/internal/v1/runs/begin", &body).await?;
        Ok(answer.order)
    }

    pub async fn complete(
        &self,
        lease: &Lease,
        order: &RunOrder,
        output: &RunOutput,
    ) -> Result<bool, Failure> {
        let body = json!({ "lease": lease, "order": order, "output": output });
        let answer: CompleteAnswer = self.post("/internal/v1/runs/complete", &body).await?;
        Ok(answer.applied)
    }

    /// A module's bytes by sha256 (the caller checks them against it).
    pub async fn module(&self, sha256: &str) -> Result<Bytes, Failure> {
        let url = format!("{}/internal/v1/blobs/{sha256}", self.base);
        let response = self
            .http
            .get(url)
            .header("x-service-token", &self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the primary: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the primary answered {status}").into());
        }
        Ok(response.bytes().await.map_err(|e| e.to_string())?)
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Failure> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-service-token", &self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the primary: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Failure {
                message: format!("the primary answered {status}: {text}"),
                refused: status.is_client_error(),
            });
        }
        Ok(response.json().await.map_err(|e| e.to_string())?)
    }
}
