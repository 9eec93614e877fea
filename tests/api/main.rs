//! Integration tests through the real HTTP API. One test binary (see Cargo.toml) keeps link
//! time down on small machines.

mod agents;
mod analytics;
mod api_keys;
mod architecture;
mod authorization;
mod browser;
mod child;
mod compat_redis;
mod compat_s3;
mod crash;
mod demo_agents;
mod errors;
mod executor;
mod helpers;
mod hostile;
mod marketplace;
mod modules;
mod operations;
mod quotas;
mod ratelimits;
mod redis_server;
mod restart;
mod s3_server;
mod tasks;
mod users;
mod ws;
