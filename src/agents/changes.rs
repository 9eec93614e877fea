//! Changes to published agents: edits, versions, rollback, deletion, downloads and reviews.
//! Only the owner or an admin may change an agent; everyone signed in may read it.
//!
//! Each change is one store transaction; the in-memory views follow through
//! [`Marketplace::changed`], and the fan-out announces it as `agent_update`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::events;
use super::manifest::{Manifest, ManifestError, RawManifest, is_semver};
use super::marketplace::{AgentError, Caller, Marketplace, Target, compile_schema};
use crate::blob::links::LINK_TTL_SECS;
use crate::records::{Agent, AgentStatus, AgentVersion, Review};

/// How an edit's body applies to the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// JSON Merge Patch (RFC 7396): fields given replace, `null` removes, others stay.
    Merge,
    /// The body is the whole manifest; fields left out take their defaults.
    Replace,
}

/// A version's module, read and hash-checked.
pub struct Download {
    pub agent: Agent,
    pub version: AgentVersion,
    pub bytes: Bytes,
}

/// What a signed link answers.
pub enum SignedDownload {
    /// The bytes, served by this server (embedded blobs).
    Bytes(Box<Download>),
    /// A presigned URL of the blob's object (S3 blobs), valid while the link is.
    Redirect { url: String, sha256: String },
}

/// A signed link to one version's module.
pub struct SignedLink {
    /// Path and query of the download (`/api/v1/agents/{id}/binary?...`).
    pub path: String,
    pub expires_at: OffsetDateTime,
}

/// RFC 7396: applies `patch` to `target`.
fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let map = target.as_object_mut().expect("made an object above");
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(&key);
                } else {
                    merge_patch(map.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other,
    }
}

fn now_secs() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

impl Marketplace {
    /// The agent, if `caller` may change it.
    async fn owned(&self, caller: &Caller, id: Uuid) -> Result<Agent, AgentError> {
        let agent = self.get(id).await?;
        if agent.owner_id != caller.id && !caller.admin {
            return Err(AgentError::Forbidden);
        }
        Ok(agent)
    }

    /// Edits an agent's manifest fields (name, description, capabilities, price, limits, argv,
    /// env, input_schema, metadata). Versions change through the binary routes only.
    pub async fn edit(
        &self,
        caller: &Caller,
        id: Uuid,
        body: Value,
        mode: Edit,
    ) -> Result<Agent, AgentError> {
        let current = self.owned(caller, id).await?;
        let Value::Object(fields) = &body else {
            return Err(ManifestError("the body must be a JSON object".into()).into());
        };
        if fields.contains_key("version") {
            return Err(ManifestError(
                "version cannot be edited: upload a new version with POST /api/v1/agents/{id}/binary"
                    .into(),
            )
            .into());
        }
        let manifest = match mode {
            Edit::Merge => {
                let mut merged = RawManifest::of(&current);
                merge_patch(&mut merged, body);
                merged
            }
            Edit::Replace => body,
        };
        let raw: RawManifest = serde_json::from_value(manifest)
            .map_err(|e| ManifestError(format!("the agent is not valid: {e}")))?;
        let m = Manifest::parse(raw, &self.rules.limits)?;
        if let Some(schema) = &m.input_schema {
            compile_schema(schema)?;
        }
        let text_changed = m.name != current.name
            || m.description != current.description
            || m.capabilities != current.capabilities;
        let agent = self
            .store
            .edit_agent(id, move |a| {
                a.name = m.name;
                a.description = m.description;
                a.capabilities = m.capabilities;
                a.price = m.price;
                a.limits = m.limits;
                a.argv = m.argv;
                a.env = m.env;
                a.input_schema = m.input_schema;
                a.metadata = m.metadata;
            })
            .await?
            .map_err(|r| AgentError::refused(r, &current.name))?;
        self.changed(&agent);
        if text_changed {
            self.indexing.follow(&[agent.id]).await;
        }
        tracing::info!(agent_id = %id, "agent edited");
        self.fanout
            .broadcast(events::agent_update(&agent, "updated"));
        Ok(agent)
    }

    /// Deletes an agent, its versions (blobs no other agent uses go too) and reviews. Its
    /// finished tasks stay readable; queued ones fail as `agent_unavailable`.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<Agent, AgentError> {
        self.owned(caller, id).await?;
        let (agent, released) = self
            .store
            .delete_agent(id)
            .await?
            .ok_or(AgentError::NotFound)?;
        self.forget(id);
        self.indexing.follow(&[id]).await;
        self.collect(released).await?;
        tracing::info!(agent_id = %id, name = %agent.name, "agent deleted");
        self.fanout
            .broadcast(events::agent_update(&agent, "deleted"));
        Ok(agent)
    }

    /// Adds a version. While the current version is ready the agent keeps serving it; the new
    /// one becomes current once it is ready (a rejected one never does).
    pub async fn add_version(
        &self,
        caller: &Caller,
        id: Uuid,
        version: Option<String>,
        wasm: Bytes,
    ) -> Result<(Agent, AgentVersion), AgentError> {
        let agent = self.owned(caller, id).await?;
        let version = version
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ManifestError("field `version` (semver) is required".into()))?;
        if !is_semver(&version) {
            return Err(ManifestError(format!(
                "version `{version}` is not semver (MAJOR.MINOR.PATCH)"
            ))
            .into());
        }
        self.check_module(&wasm, &agent.limits).await?;
        let v = AgentVersion {
            version: version.clone(),
            sha256: String::new(),
            size: wasm.len() as u64,
            created_at: OffsetDateTime::now_utc(),
            status: AgentStatus::Validating,
            rejection: None,
            build: None,
        };
        let (agent, v) = {
            let _gate = self.blob_gate.lock().await;
            self.check_quota(caller, false, v.size).await?;
            let sha256 = self.blobs.put(wasm.clone()).await?;
            let v = AgentVersion { sha256, ..v };
            let added = self.store.add_version(id, v.clone()).await?;
            match added {
                Ok(agent) => (agent, v),
                Err(refusal) => {
                    drop(_gate);
                    self.collect(vec![v.sha256]).await?;
                    return Err(AgentError::refused(refusal, &version));
                }
            }
        };
        self.changed(&agent);
        tracing::info!(agent_id = %id, %version, "agent version added");
        self.fanout
            .broadcast(events::agent_version(&agent, &version, "added"));
        self.start_build(
            Target {
                id,
                version,
                hash: v.sha256.clone(),
            },
            Some(wasm),
        );
        Ok((agent, v))
    }

    /// Replaces the current version's module in place. The agent leaves auctions until the
    /// replacement is built (use [`Marketplace::add_version`] to switch without a gap).
    pub async fn replace_binary(
        &self,
        caller: &Caller,
        id: Uuid,
        wasm: Bytes,
    ) -> Result<Agent, AgentError> {
        let agent = self.owned(caller, id).await?;
        self.check_module(&wasm, &agent.limits).await?;
        let (agent, released) = {
            let _gate = self.blob_gate.lock().await;
            let size = wasm.len() as u64;
            // The bytes replace the current version's.
            let added = size.saturating_sub(agent.binary_size);
            self.check_quota(caller, false, added).await?;
            let sha256 = self.blobs.put(wasm.clone()).await?;
            match self
                .store
                .replace_current_binary(id, sha256.clone(), size)
                .await?
            {
                Ok(done) => done,
                Err(refusal) => {
                    drop(_gate);
                    self.collect(vec![sha256]).await?;
                    return Err(AgentError::refused(refusal, &agent.version));
                }
            }
        };
        self.changed(&agent);
        self.collect(released).await?;
        tracing::info!(agent_id = %id, version = %agent.version, "agent binary replaced");
        self.fanout
            .broadcast(events::agent_version(&agent, &agent.version, "replaced"));
        self.start_build(
            Target {
                id,
                version: agent.version.clone(),
                hash: agent.binary_hash.clone(),
            },
            Some(wasm),
        );
        Ok(agent)
    }

    pub async fn versions(&self, id: Uuid) -> Result<Vec<AgentVersion>, AgentError> {
        self.get(id).await?;
        Ok(self.store.versions(id).await?)
    }

    /// One version's module (default: the current one), hash-verified.
    pub async fn download(
        &self,
        id: Uuid,
        version: Option<String>,
    ) -> Result<Download, AgentError> {
        let (agent, version) = self.stored_version(id, version).await?;
        let bytes = self.blobs.get(version.sha256.clone()).await?;
        Ok(Download {
            agent,
            version,
            bytes,
        })
    }

    /// A module by its sha256, hash-verified: for worker nodes, which run by hash.
    pub async fn module(&self, sha256: String) -> Result<bytes::Bytes, AgentError> {
        Ok(self.blobs.get(sha256).await?)
    }

    /// The agent and one of its versions (default: the current one).
    async fn stored_version(
        &self,
        id: Uuid,
        version: Option<String>,
    ) -> Result<(Agent, AgentVersion), AgentError> {
        let agent = self.get(id).await?;
        let version = version.unwrap_or_else(|| agent.version.clone());
        let v = self
            .store
            .version(id, version.clone())
            .await?
            .ok_or(AgentError::VersionNotFound(version))?;
        Ok((agent, v))
    }

    /// Deletes a version that is not current; its blob goes if nothing else uses it.
    pub async fn delete_version(
        &self,
        caller: &Caller,
        id: Uuid,
        version: String,
    ) -> Result<Agent, AgentError> {
        self.owned(caller, id).await?;
        let (agent, released) = self
            .store
            .delete_version(id, version.clone())
            .await?
            .map_err(|r| AgentError::refused(r, &version))?;
        self.changed(&agent);
        self.collect(released).await?;
        tracing::info!(agent_id = %id, %version, "agent version deleted");
        self.fanout
            .broadcast(events::agent_version(&agent, &version, "deleted"));
        Ok(agent)
    }

    /// Makes an older ready version current.
    pub async fn rollback(
        &self,
        caller: &Caller,
        id: Uuid,
        version: String,
    ) -> Result<Agent, AgentError> {
        self.owned(caller, id).await?;
        let agent = self
            .store
            .rollback(id, version.clone())
            .await?
            .map_err(|r| AgentError::refused(r, &version))?;
        self.changed(&agent);
        tracing::info!(agent_id = %id, %version, "agent rolled back");
        self.fanout
            .broadcast(events::agent_version(&agent, &version, "rollback"));
        Ok(agent)
    }

    /// A link that downloads the current version without a session for an hour.
    pub async fn signed_link(&self, id: Uuid) -> Result<SignedLink, AgentError> {
        let agent = self.get(id).await?;
        let expires = now_secs() + LINK_TTL_SECS;
        let signature = self.links.sign(id, &agent.version, expires);
        let version: String = form_urlencoded::byte_serialize(agent.version.as_bytes()).collect();
        Ok(SignedLink {
            path: format!(
                "/api/v1/agents/{id}/binary?version={version}&expires={expires}&signature={signature}"
            ),
            expires_at: OffsetDateTime::from_unix_timestamp(expires as i64)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        })
    }

    /// Downloads through a signed link: the signature and expiry are checked first. Where
    /// the blob store can presign (S3), the answer is a URL of the object valid until the
    /// link expires (at most [`LINK_TTL_SECS`]), and the bytes never pass through here.
    pub async fn download_signed(
        &self,
        id: Uuid,
        version: String,
        expires: u64,
        signature: &str,
    ) -> Result<SignedDownload, AgentError> {
        let now = now_secs();
        self.links.verify(id, &version, expires, signature, now)?;
        let (agent, version) = self.stored_version(id, Some(version)).await?;
        let ttl = Duration::from_secs(expires.saturating_sub(now).clamp(1, LINK_TTL_SECS));
        if let Some(url) = self
            .blobs
            .presigned_get(version.sha256.clone(), ttl)
            .await?
        {
            let sha256 = version.sha256;
            return Ok(SignedDownload::Redirect { url, sha256 });
        }
        let bytes = self.blobs.get(version.sha256.clone()).await?;
        Ok(SignedDownload::Bytes(Box::new(Download {
            agent,
            version,
            bytes,
        })))
    }

    /// Adds or replaces `caller`'s review; only users who had a task completed by the agent
    /// may review it, and never its owner (reviews move the agent's auction score).
    pub async fn review(
        &self,
        caller: &Caller,
        id: Uuid,
        rating: u8,
        comment: String,
    ) -> Result<Review, AgentError> {
        // An agent's owner never changes, so this check cannot go stale before the write.
        if self.get(id).await?.owner_id == caller.id {
            return Err(AgentError::OwnAgentReview);
        }
        let now = OffsetDateTime::now_utc();
        let review = Review {
            agent_id: id,
            user_id: caller.id,
            user_name: caller.name.clone(),
            rating,
            comment,
            created_at: now,
            updated_at: now,
        };
        let completed_just_now = self
            .completions
            .lock()
            .expect("completions lock")
            .contains_key(&(caller.id, id));
        let (agent, review) = self
            .store
            .put_review(review, completed_just_now)
            .await?
            .map_err(|r| AgentError::refused(r, ""))?;
        self.changed(&agent);
        self.fanout
            .broadcast(events::agent_update(&agent, "updated"));
        Ok(review)
    }

    /// A page of the agent's reviews, newest first, and their number.
    pub async fn reviews(
        &self,
        id: Uuid,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Review>, usize), AgentError> {
        self.get(id).await?;
        let all = self.store.reviews(id).await?;
        let total = all.len();
        Ok((all.into_iter().skip(offset).take(limit).collect(), total))
    }
}
