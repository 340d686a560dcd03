//! Leadflow's shared core: configuration, domain types, PostgreSQL access and the typed
//! job layer over BullMQ. The `api`, `worker` and `scheduler` crates are thin layers over
//! this one, so every role agrees on what a tenant, a burst or a job is.
#![forbid(unsafe_code)]

pub mod channel;
pub mod config;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod google;
pub mod http_body;
pub mod inbound;
pub mod media_handle;
pub mod metrics;
pub mod queue;
pub mod readiness;
pub mod redis_target;
pub mod reply_wake;
pub mod request_id;
pub mod retry_after;
pub mod signing;
pub mod ssrf;
pub mod text;

pub use config::Config;
