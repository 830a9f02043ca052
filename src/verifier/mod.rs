//! The offline verifier: directory cache and the full token check.
