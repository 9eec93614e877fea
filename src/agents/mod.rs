//! The marketplace: agent records, their manifests, publishing, building and listing.
//!
//! Publishing checks the manifest and the module's declarations (on the blocking pool), stores
//! the module as a content-addressed blob, writes the record (`validating`), indexes it for
//! search and announces it on the hub, in that order: an agent is never visible before its
//! binary is durable. Its build (body validation, compilation) follows in the background; only
//! a `ready` agent enters the catalog the auctions read.

mod agent;
mod catalog;
mod changes;
mod directory;
pub mod manifest;
mod marketplace;
mod version;

pub use agent::{Agent, AgentStats, AgentStatus, Build, PRIOR_REVIEWS, Rating, Rejection};
pub use catalog::{Bidder, Bidders, Catalog, wilson_lower_bound};
pub use changes::{Download, Edit, SignedLink};
pub use directory::{Directory, Filter, Listing, Sort};
pub use manifest::{Limits, Manifest, ManifestError, parse_capabilities};
pub use marketplace::{AgentError, AgentList, AgentQuery, Caller, Marketplace, Rules, Warmup};
pub use version::{AgentVersion, Review, semver_cmp};
