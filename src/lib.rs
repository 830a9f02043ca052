//! blindpass: movement permits that verifiers can check offline without
//! learning who holds them, and personal data that expires by destroying
//! its keys.
//!
//! A map of the crate (dependencies point downwards only):
//!
//! - [`cli`] — argument parsing and output; the only place reading argv/env.
//! - [`service`] — the issuer service's start-up order and shutdown, one function for every caller.
//! - [`http`] — axum routes and error mapping; the only place knowing axum.
//! - [`wallet`], [`verifier`], [`auditor`] — the resident's, the verifier's and the auditor's client sides.
//! - [`issuer`] — the core: periods, enrolment, signing keys, destruction.
//! - [`audit`] — the public transparency log (C2SP tlog-tiles, signed checkpoints).
//! - [`vault`] — master slot and key ring files (keys never touch sled).
//! - [`store`] — everything that touches sled (ciphertext only).
//! - [`crypto`] — secret types, sealing, KDFs, blind RSA; no I/O.
//! - [`protocol`] — RFC 9578 wire formats, QR payload, directory; no I/O.
//! - [`scheduler`] — the cron job that runs the deadline-driven destruction.
//! - [`clock`], [`ids`] — injected time and random identifiers.
//!
//! `docs/architecture.md` explains the design and its invariants.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod auditor;
pub mod cli;
pub mod clock;
pub mod crypto;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ids;
pub mod issuer;
pub mod protocol;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod vault;
pub mod verifier;
pub mod wallet;
