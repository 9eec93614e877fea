//! The marketplace: manifests, publishing, building, the catalog the auctions read, and
//! listing.
//!
//! Publishing checks the manifest and the module's declarations (on the blocking pool), stores
//! the module as a content-addressed blob, writes the record (`validating`), indexes it for
//! search and announces it, in that order: an agent is never visible before its binary is
//! durable. Its build (body validation, compilation) follows in the background; only a `ready`
//! agent enters the catalog the auctions read.

mod catalog;
mod changes;
mod directory;
mod events;
mod indexing;
pub mod manifest;
mod marketplace;

pub use catalog::Catalog;
pub use changes::{Download, Edit, SignedDownload, SignedLink};
pub use directory::{Directory, Filter, Listing, Sort};
pub use indexing::IndexHealth;
pub use manifest::{Manifest, ManifestError, parse_capabilities};
pub use marketplace::{AgentError, AgentList, AgentQuery, Caller, Marketplace, Rules, Warmup};
