//! DAC, the Docker API Collector: read-only forensic acquisition of a Docker or Podman engine
//! into a sealed BagIt evidence bundle, and the verifier for such bundles.
//!
//! Data flows one way: `discovery` finds the engine, `transport` is the only place that sends
//! requests (GET and HEAD only), `session` streams each answer through its checks into
//! `bundle`, the only place that writes evidence; `collect` is the plan that orders it all by
//! volatility; `verify` checks a sealed bundle on its own.

// An engine's answers are untrusted: the shipped code has no unwrap, expect or panic, so no
// answer can crash a collection. Test modules use them as assertions.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bundle;
pub mod case;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod discovery;
pub mod endpoints;
pub mod error;
pub mod fixture;
pub mod image_check;
pub mod inflate;
pub mod logs;
pub mod provenance;
pub mod session;
pub mod sign;
pub mod ssh;
pub mod tar;
pub mod transport;
pub mod verify;
