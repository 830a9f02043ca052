//! The auditor: checks the public audit log and inspects data directories.
