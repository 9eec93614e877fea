//! `serve --demo`: publishes the bundled agents from `assets/agents/*/` (embedded in the binary)
//! under a demo account, so a fresh install can run a task at once. Idempotent: an agent the
//! demo account already has is left alone.

use std::time::Duration;

use bytes::Bytes;
use rust_embed::RustEmbed;

use crate::agents::Marketplace;
use crate::agents::manifest::RawManifest;
use crate::auth::Accounts;
use crate::records::AgentStatus;

/// The account that owns the demo agents. Nobody can sign in as it.
pub const DEMO_EMAIL: &str = "demo@zerostate.local";

#[derive(RustEmbed)]
#[folder = "assets/agents/"]
#[include = "*/manifest.json"]
#[include = "*/agent.wasm"]
struct DemoAgents;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("bundled manifest {path} is invalid: {source}")]
    Manifest {
        path: String,
        source: serde_json::Error,
    },
    #[error("bundled agent {0} has no agent.wasm")]
    MissingModule(String),
    #[error("{0}")]
    Publish(String),
}

/// The bundled agents: (directory name, manifest, module).
pub fn bundled() -> Result<Vec<(String, RawManifest, Bytes)>, DemoError> {
    let mut agents = Vec::new();
    let mut dirs: Vec<String> = DemoAgents::iter()
        .filter_map(|p| p.strip_suffix("/manifest.json").map(str::to_owned))
        .collect();
    dirs.sort();
    for dir in dirs {
        let path = format!("{dir}/manifest.json");
        let manifest = DemoAgents::get(&path).expect("listed by iter");
        let raw: RawManifest = serde_json::from_slice(&manifest.data)
            .map_err(|source| DemoError::Manifest { path, source })?;
        let module = DemoAgents::get(&format!("{dir}/agent.wasm"))
            .ok_or_else(|| DemoError::MissingModule(dir.clone()))?;
        agents.push((dir, raw, Bytes::from(module.data.into_owned())));
    }
    Ok(agents)
}

/// Longest wait for a demo agent's build (they are small: milliseconds from the cache, well
/// under a second to compile).
const BUILD_WAIT: Duration = Duration::from_secs(120);

/// Publishes every bundled agent the demo account does not have yet, and waits for their
/// builds, so they can run as soon as the server listens.
pub async fn publish(accounts: &Accounts, marketplace: &Marketplace) -> Result<(), DemoError> {
    let owner = accounts
        .system_user(DEMO_EMAIL, "ZeroState demo")
        .await
        .map_err(|e| DemoError::Publish(e.to_string()))?;
    // The server's own account: it publishes the bundled agents whatever the quotas say.
    let owner = crate::agents::Caller {
        id: owner.id,
        name: owner.full_name,
        admin: true,
    };
    // All published first, so their builds queue back to back; then each is awaited.
    let mut published = Vec::new();
    for (dir, raw, module) in bundled()? {
        match marketplace.publish_if_absent(&owner, raw, module).await {
            Ok(Some(agent)) => published.push((dir, agent)),
            Ok(None) => tracing::debug!(dir, "demo agent already published"),
            Err(e) => return Err(DemoError::Publish(format!("{dir}: {e}"))),
        }
    }
    for (dir, agent) in published {
        let built = marketplace
            .wait_built(agent.id, None, BUILD_WAIT)
            .await
            .map_err(|e| DemoError::Publish(format!("{dir}: {e}")))?;
        match built.status {
            AgentStatus::Ready => tracing::info!(agent = %agent.name, "published demo agent"),
            AgentStatus::Rejected => {
                return Err(DemoError::Publish(format!(
                    "{dir}: rejected: {:?}",
                    built.rejection
                )));
            }
            // Queued behind other builds (a restart compiling many agents): it becomes
            // ready in the background.
            _ => {
                tracing::warn!(agent = %agent.name, "demo agent still building; it bids once ready")
            }
        }
    }
    Ok(())
}
