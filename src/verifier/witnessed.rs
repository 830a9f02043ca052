//! The verifier's witnessed directory sync: before a fetched key directory
//! is stored, the issuer's audit log — with a checkpoint cosigned by a
//! quorum of the policy's witnesses — must publish every key in it, one
//! per class and window. A verifier then trusts no key that the witnesses'
//! view of the log does not show to everybody.

use super::VerifierError;
use crate::auditor::{KeyProblem, LogError, fetch_witnessed_log, key_logged};
use crate::client::Client;
use crate::protocol::api::paths;
use crate::protocol::directory::Directory;
use crate::witness::WitnessPolicy;

/// Checks `directory` against the log of `server`, verified under
/// `log_key` with a quorum of `policy`.
pub fn check_directory(
    server: &str,
    log_key: &str,
    policy: &WitnessPolicy,
    directory: &Directory,
) -> Result<(), VerifierError> {
    let client = Client::new(server);
    let log = fetch_witnessed_log(&client, log_key, Some(policy)).map_err(|e| match e {
        LogError::Transport(e) => VerifierError::Network {
            url: client.url(paths::AUDIT_CHECKPOINT),
            detail: e.to_string(),
        },
        other => VerifierError::Unwitnessed(other.to_string()),
    })?;
    for key in &directory.keys {
        let window = key.window.to_string();
        key_logged(&log, &key.key_id, key.class.as_str(), &window).map_err(|problem| {
            VerifierError::Unwitnessed(match problem {
                KeyProblem::NotLogged => format!(
                    "directory key {} ({} {window}) is not in the witnessed log",
                    key.key_id,
                    key.class.as_str()
                ),
                KeyProblem::Split { key_ids } => format!(
                    "{} keys are logged for {} {window}",
                    key_ids.len(),
                    key.class.as_str()
                ),
            })
        })?;
    }
    Ok(())
}
