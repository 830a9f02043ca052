//! blindpass: movement permits that verifiers can check offline without
//! learning who holds them, and personal data that expires by destroying
//! its keys.
//!
//! A map of the crate:
//!
//! - [`cli`] — argument parsing and output; the only place reading argv/env.
//! - [`service`] — the issuer service's start-up order and shutdown, one function for every caller.
//! - [`http`] — axum routes and error mapping; the only place knowing axum.
//! - [`scheduler`] — the cron job that runs the deadline-driven destruction.
//! - [`issuer`] — the core: periods, enrolment, signing keys, destruction.
//! - [`store`] — everything that touches sled (ciphertext only).
//! - [`vault`] — master slot and key ring files (keys never touch sled).
//! - [`wallet`], [`verifier`], [`auditor`] — the resident's, the verifier's and the auditor's client sides.
//! - [`client`] — the one HTTP client of the API, shared by every client side.
//! - [`audit`] — the public transparency log (C2SP tlog-tiles, signed checkpoints).
//! - [`crypto`] — secret types, sealing, KDFs, blind RSA; no I/O.
//! - [`protocol`] — RFC 9578 wire formats, QR payload, directory, and the
//!   HTTP API's bodies, paths and problem types ([`protocol::api`]); no I/O.
//! - [`clock`], [`ids`], [`fsutil`] — injected time, random identifiers,
//!   durable file writes.
//!
//! The load generator (`src/bench/`, `blindpass bench`) is part of the
//! binary, not of this library.
//!
//! Imports point downwards only. Each module may import the modules listed
//! beside it, all in lower layers (`tests/architecture.rs` checks every
//! `crate::` and `blindpass::` path in `src/` against this table and fails
//! on any other import or a circle):
//!
//! | layer | module | may import |
//! |---|---|---|
//! | 9 | `cli` | everything below |
//! | 8 | `bench` (in the binary), `fuzzing` | everything below |
//! | 7 | `service` | `http` and the server below it |
//! | 6 | `http` | `scheduler`, `issuer`, `store`, `vault`, `audit`, base |
//! | 6 | `wallet` | `auditor`, `verifier`, `client`, `audit`, base |
//! | 5 | `scheduler` | `issuer`, `store`, `vault`, `audit`, base |
//! | 5 | `auditor`, `verifier` | `client`, base; `auditor` also `audit` |
//! | 4 | `issuer` | `store`, `vault`, `audit`, base |
//! | 4 | `client` | `protocol`, `ids` |
//! | 3 | `store`, `vault`, `audit` | base |
//! | 2 | `crypto` | `protocol`, `ids` |
//! | 1 | `protocol` | `ids` |
//! | 0 | `clock`, `ids`, `fsutil` | nothing |
//!
//! "Base" is `crypto`, `protocol`, `clock`, `ids`, `fsutil`. The client side
//! (`wallet`, `verifier`, `auditor`, `client`) never imports the server
//! (`issuer`, `http`, `store`, `vault`), with one exception: on-site
//! inspection (`auditor/inspect.rs`) opens the issuer's data directory, and
//! `auditor/memory.rs`'s tests compute key commitments as the issuer does.
//!
//! `docs/architecture.md` explains the design and its invariants.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod auditor;
pub mod cli;
pub mod client;
pub mod clock;
pub mod crypto;
pub mod fsutil;
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
