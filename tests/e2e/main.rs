//! End-to-end tests over real PostgreSQL and Redis, a fake OpenAI-compatible server and
//! a postback receiver. One test binary, so the harness is linked once.

mod support;

mod admin;
mod ai_errors;
mod channels;
mod cluster;
mod config;
mod console;
mod debounce;
mod delivery_status;
mod email;
mod fairness;
mod google;
mod health;
mod hostile_input;
mod housekeeping;
mod inbound;
mod lifecycle;
mod logs;
mod media;
mod metrics;
mod multichannel;
mod official;
mod pgbouncer;
mod postbacks;
mod probes;
mod provider_media;
mod resilience;
mod scheduler;
mod schema;
mod security;
mod sending;
mod sms;
mod sync;
mod validation;
