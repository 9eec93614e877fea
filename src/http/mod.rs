//! The HTTP surface: an axum router over [`AppState`].
//!
//! Handlers parse, authorise, call one component function and map the result; no business
//! logic lives here. Every error leaves through [`crate::error::ApiError`].

pub mod access;
mod extractors;
mod limits;
pub mod router;
mod routes;
pub mod server;
pub mod spool;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::Marketplace;
use crate::auth::Accounts;
use crate::breaker::Breakers;
use crate::config::{QuotaSettings, Secret};
use crate::orchestrator::Orchestrator;
use crate::realtime::{Fanout, Hub};

pub use extractors::{ApiJson, AuthUser, Operator, route_needs};
pub use limits::{ClientIp, RateLimits};
pub use router::router;

/// Everything a handler can reach. One pointer: axum clones it for every request.
#[derive(Clone)]
pub struct AppState(Arc<Components>);

impl AppState {
    pub fn new(components: Components) -> Self {
        Self(Arc::new(components))
    }
}

impl std::ops::Deref for AppState {
    type Target = Components;

    fn deref(&self) -> &Components {
        &self.0
    }
}

/// The components behind [`AppState`].
pub struct Components {
    pub accounts: Accounts,
    pub marketplace: Marketplace,
    pub orchestrator: Orchestrator,
    /// This process's sockets: the WebSocket route registers them here.
    pub hub: Hub,
    /// Where admin broadcasts go: every connection the server has.
    pub fanout: Arc<dyn Fanout>,
    pub metrics: PrometheusHandle,
    pub started_at: Instant,
    /// Cancelled when the server begins shutting down; WebSocket tasks watch it.
    pub shutdown: CancellationToken,
    /// The generated OpenAPI document, rendered once.
    pub openapi: Arc<String>,
    /// `realtime.service_token`: lets a service use the WebSocket admin routes.
    pub service_token: Secret,
    /// `realtime.ping_interval_secs`: how often every socket is pinged.
    pub ping_every: std::time::Duration,
    /// Where upload bodies wait on disk.
    pub spool: spool::Spool,
    /// `public_url` without a trailing `/`: the base of absolute links; empty for relative
    /// ones.
    pub public_url: String,
    /// `[rate_limits]`: the limiters and the trusted proxies.
    pub limits: RateLimits,
    /// `[quotas]`: the WebSocket route applies `websocket_connections`.
    pub quotas: QuotaSettings,
    /// The circuit breakers of the outside dependencies in use: `/health` and `/ready` show
    /// them (none when everything is embedded).
    pub breakers: Breakers,
    /// `cluster.service_token`: worker nodes present it to the internal routes.
    pub cluster_token: Secret,
    /// The worker nodes' registry (compatibility mode only).
    pub nodes: Option<crate::cluster::Nodes>,
}
