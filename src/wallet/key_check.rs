//! Key consistency: a key made for one resident alone would tag every pass
//! signed with it. Before blinding, the wallet fetches the issuer's audit
//! log, verifies it against a checkpoint signed by the pinned log key,
//! checks that it only grew since the last checkpoint this wallet saw, and
//! refuses a key that has no `signing-key-published` entry for its class
//! and window, or that shares its class and window with another logged key.
//! The log key is the one the user gave, or else the one `/audit/key`
//! served at first use, kept in the wallet file (trust on first use).

use time::OffsetDateTime;

use super::{Wallet, WalletError};
use crate::auditor::{KeyProblem, LogError};
use crate::client::Client;
use crate::protocol::api::paths;
use crate::protocol::directory::PublishedKey;
use crate::protocol::permit::{ClassName, Window};

impl Wallet {
    /// The pinned audit log key, if any.
    pub fn log_key(&self) -> Option<&str> {
        self.state.log_key.as_deref()
    }

    /// Pins `key` as the issuer's audit log key (kept on the next save).
    /// Returns whether it replaced a different key; the checkpoint kept for
    /// the old key is then forgotten.
    pub fn pin_log_key(&mut self, key: &str) -> Result<bool, WalletError> {
        let key = key.trim();
        crate::auditor::check_log_key(key).map_err(|_| WalletError::BadLogKey(key.to_owned()))?;
        if self.state.log_key.as_deref() == Some(key) {
            return Ok(false);
        }
        let replaced = self.state.log_key.is_some();
        self.state.log_key = Some(key.to_owned());
        self.state.log_checkpoint = None;
        Ok(replaced)
    }

    /// The pinned log key, or the one the server serves now, pinned and
    /// saved (trust on first use).
    fn log_key_or_first_use(&mut self, api: &Client) -> Result<String, WalletError> {
        if let Some(key) = &self.state.log_key {
            return Ok(key.clone());
        }
        let body = api.get_bytes(paths::AUDIT_KEY)?;
        let key = String::from_utf8_lossy(&body).trim().to_owned();
        if crate::auditor::check_log_key(&key).is_err() {
            return Err(WalletError::UnexpectedResponse {
                status: 200,
                detail: "/audit/key did not serve a log key".into(),
            });
        }
        self.state.log_key = Some(key.clone());
        self.save()?;
        Ok(key)
    }

    /// Checks in the issuer's audit log that `published` is the one key
    /// logged for `class` and `window` (see the module documentation), and
    /// remembers the verified checkpoint.
    pub(super) fn check_key_logged(
        &mut self,
        api: &Client,
        published: &PublishedKey,
        class: &ClassName,
        window: &Window,
        now: OffsetDateTime,
    ) -> Result<(), WalletError> {
        let log_key = self.log_key_or_first_use(api)?;
        let log = crate::auditor::fetch_log(api, &log_key).map_err(|e| match e {
            LogError::Transport(e) => e.into(),
            LogError::BadLogKey(key) => WalletError::BadLogKey(key),
            LogError::Failed(failure) => WalletError::AuditLog(failure.to_string()),
        })?;
        if let Some(previous) = &self.state.log_checkpoint {
            if previous.log_key == log_key {
                if let Some(failure) = crate::auditor::consistency(previous, &log) {
                    return Err(WalletError::AuditLog(failure.to_string()));
                }
            }
        }
        crate::auditor::key_logged(&log, &published.key_id, class.as_str(), &window.to_string())
            .map_err(|problem| match problem {
                KeyProblem::NotLogged => WalletError::UnloggedKey {
                    key_id: published.key_id.clone(),
                    class: class.clone(),
                    window: *window,
                },
                KeyProblem::Split { key_ids } => WalletError::SplitKey {
                    class: class.clone(),
                    window: *window,
                    keys: key_ids.len(),
                },
            })?;
        self.state.log_checkpoint = Some(log.saved(api.base_url(), &log_key, now));
        Ok(())
    }
}
