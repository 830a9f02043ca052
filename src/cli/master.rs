//! `--master pkcs11:…`: the master key in a PKCS#11 token for `serve` and
//! `audit inspect` (the vault side is `vault::pkcs11`; the start-up with
//! it is `service::open_store`'s). The PIN comes from the file the URI's
//! `pin-source` names or from `BLINDPASS_PKCS11_PIN`, never from the
//! command line, and is never printed.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::CliError;
use crate::clock::Clock;
use crate::issuer::{Authority, AuthorityConfig, DataDir, IssuerError, VaultSummary};
use crate::service::{MasterSource, open_store};
use crate::vault::VaultError;
use crate::vault::pkcs11::{MASTER_FILE, TokenError, TokenMaster, TokenPin, TokenUri};

/// The environment variable holding the token's user PIN when the URI
/// names no `pin-source` file.
pub const PIN_ENV: &str = "BLINDPASS_PKCS11_PIN";

const URI_FORM: &str = "pkcs11:token=<label>?module-path=<module.so>[&pin-source=<file>]";

fn pin(uri: &TokenUri) -> anyhow::Result<TokenPin> {
    if let Some(path) = &uri.pin_source {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CliError::new(
                format!("cannot read the PIN file {}: {e}", path.display()),
                "pin-source must name a readable file whose first line is the token's user PIN",
            )
        })?);
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(CliError::new(
                format!("the PIN file {} is empty", path.display()),
                "put the token's user PIN on its first line",
            )
            .into());
        }
        return Ok(TokenPin::new(line.to_owned()));
    }
    match std::env::var(PIN_ENV) {
        Ok(value) if !value.is_empty() => Ok(TokenPin::new(value)),
        _ => Err(CliError::new(
            "no PIN for the PKCS#11 token",
            format!("set {PIN_ENV}, or name a file with pin-source=<file> in the URI"),
        )
        .into()),
    }
}

/// A token failure as a message and what to do next; any other error
/// keeps its own text, with the context that the token was being opened.
fn explain(e: VaultError, uri: &TokenUri) -> anyhow::Error {
    let module = uri.module.display();
    let (message, hint) = match &e {
        VaultError::Token(TokenError::BadUri(_)) => (e.to_string(), format!("use {URI_FORM}")),
        VaultError::Token(TokenError::Module { .. }) => (
            e.to_string(),
            "module-path must name the token's PKCS#11 library (SoftHSM2: \
             /usr/lib/softhsm/libsofthsm2.so)"
                .to_owned(),
        ),
        VaultError::Token(TokenError::NoToken(_) | TokenError::AmbiguousToken(_)) => (
            e.to_string(),
            format!(
                "list the tokens with `pkcs11-tool --module {module} -L`; token= must match one \
                 label exactly; nothing was changed"
            ),
        ),
        VaultError::Token(TokenError::WrongPin) => (
            e.to_string(),
            format!(
                "check {PIN_ENV} or the pin-source file; nothing was changed (the token counts \
                 failed attempts and may lock the PIN)"
            ),
        ),
        VaultError::Token(TokenError::KeyGone { .. }) => (
            format!("this data directory does not open: {e}"),
            "a copy of a data directory taken before a rotation cannot be opened, by design; \
             use the live directory, or check that token= names the token it was created on"
                .to_owned(),
        ),
        VaultError::AlreadyInitialised => (
            "this data directory's master key is in a passphrase slot (vault/master.slot), \
             not in a token"
                .to_owned(),
            "start without --master, with the operator passphrase; moving a vault into a \
             token is not supported"
                .to_owned(),
        ),
        _ => return anyhow::Error::new(e).context("opening the master key in the token"),
    };
    CliError::new(message, hint).into()
}

fn uri(spec: &str) -> anyhow::Result<TokenUri> {
    TokenUri::parse(spec).map_err(|e| {
        CliError::new(
            format!("--master: {e}"),
            format!("use {URI_FORM} (the PIN from pin-source or {PIN_ENV})"),
        )
        .into()
    })
}

/// The token `--master` names and its PIN. A malformed URI or a missing
/// PIN is refused here, before anything is opened.
pub fn token(spec: &str) -> anyhow::Result<(TokenUri, TokenPin)> {
    let uri = uri(spec)?;
    let pin = pin(&uri)?;
    Ok((uri, pin))
}

/// A refusal to open the data directory with the token `uri` names: the
/// token's own (PIN, missing token or key, a vault with a passphrase
/// slot) as a message and a hint; `Ok` gives back the data directory's.
pub fn explain_refusal(e: IssuerError, uri: &TokenUri) -> Result<IssuerError, anyhow::Error> {
    match e {
        IssuerError::Vault(e @ (VaultError::Token(_) | VaultError::AlreadyInitialised)) => {
            Err(explain(e, uri))
        }
        other => Ok(other),
    }
}

/// Opens the data directory at `root` with its master key in the token
/// `spec` names, creating the vault (and the token key) when it has none:
/// the first start-up step of `serve --master` ([`open_store`]), without
/// serving. The outer error is the token's (usage, PIN, missing token or
/// key), explained as `serve` explains it; the inner one is the data
/// directory's, as from [`Authority::open`].
pub fn open_or_init(
    spec: &str,
    root: &Path,
    config: AuthorityConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Result<Authority, IssuerError>> {
    let (uri, pin) = token(spec)?;
    let master = MasterSource::Token {
        uri: uri.clone(),
        pin,
    };
    match open_store(root, master, config, clock) {
        Ok((authority, _created)) => Ok(Ok(authority)),
        Err(e) => explain_refusal(e, &uri).map(Err),
    }
}

/// The token side of `audit inspect --master`: the vault's master key
/// opened in the token (PIN checked), nothing changed.
pub struct TokenInspection {
    master: TokenMaster,
    root: std::path::PathBuf,
    token: String,
    /// The database several nodes share, when the ring is there.
    shared: Option<crate::store::Store>,
}

/// Opens the token named by `spec` for inspecting the data directory `root`.
/// With `shared` (a PostgreSQL connection string), the key ring, master slot
/// and audit log are the rows several nodes share there, read without
/// writing (the database is marked as shared if it is nobody's yet).
pub fn open_for_inspection(
    spec: &str,
    root: &Path,
    shared: Option<&str>,
) -> anyhow::Result<TokenInspection> {
    let uri = uri(spec)?;
    let pin = pin(&uri)?;
    if let Some(url) = shared {
        let store = crate::store::Store::open_postgres_shared(url, 2).map_err(|e| {
            CliError::new(
                format!("could not open the shared database: {e}"),
                "give --store the database the nodes share (postgres://user@host/dbname)",
            )
        })?;
        let home = crate::issuer::shared_vault_home(&store)?;
        let master = TokenMaster::open_shared(home, &uri, &pin).map_err(|e| explain(e, &uri))?;
        return Ok(TokenInspection {
            master,
            root: root.to_owned(),
            token: uri.token,
            shared: Some(store),
        });
    }
    let file = DataDir::new(root).vault().join(MASTER_FILE);
    if !file.exists() {
        return Err(CliError::new(
            format!(
                "{} has no master key in a token (no vault/{MASTER_FILE})",
                root.display()
            ),
            "drop --master for a data directory with a passphrase slot",
        )
        .into());
    }
    let master = TokenMaster::open(&file, &uri, &pin).map_err(|e| explain(e, &uri))?;
    Ok(TokenInspection {
        master,
        root: root.to_owned(),
        token: uri.token,
        shared: None,
    })
}

impl TokenInspection {
    /// The key ring opened read-only through the token and summarised, for
    /// the comparison with the audit log (as `issuer::inspect_vault` does
    /// with the passphrase).
    pub fn summary(&self) -> Result<VaultSummary, IssuerError> {
        match &self.shared {
            Some(store) => {
                crate::issuer::summarise_shared_vault(store, Box::new(self.master.clone()))
            }
            None => crate::issuer::summarise_vault(&self.root, Box::new(self.master.clone())),
        }
    }

    /// The shared audit log's entries, when the ring is shared.
    pub fn shared_log(&self) -> Result<Option<Vec<Vec<u8>>>, IssuerError> {
        self.shared
            .as_ref()
            .map(crate::issuer::shared_log_entries)
            .transpose()
    }

    /// Which master versions still have a key object in the token.
    pub fn findings(&self) -> anyhow::Result<TokenFindings> {
        let master_version = self.master.stored_version()?;
        let key_versions = self.master.key_versions()?;
        let stale = key_versions
            .iter()
            .filter(|v| **v != master_version)
            .map(|v| StaleKey {
                version: *v,
                label: self.master.key_label(*v),
            })
            .collect();
        Ok(TokenFindings {
            token: self.token.clone(),
            master_version,
            key_label: self.master.key_label(master_version),
            key_versions,
            stale,
        })
    }
}

/// What `audit inspect --master` found in the token (the `master_token`
/// field of the JSON report). Labels and versions only: no key material.
#[derive(Debug, Clone, Serialize)]
pub struct TokenFindings {
    /// The token's label.
    pub token: String,
    /// The master version the vault's master file names.
    pub master_version: u64,
    /// The label of that version's token key.
    pub key_label: String,
    /// Master versions with a key object in the token, ascending.
    pub key_versions: Vec<u64>,
    /// Keys of earlier versions, which a rotation should have destroyed.
    pub stale: Vec<StaleKey>,
}

/// A token key a rotation should have destroyed.
#[derive(Debug, Clone, Serialize)]
pub struct StaleKey {
    /// Its master version.
    pub version: u64,
    /// Its label in the token.
    pub label: String,
}

impl TokenFindings {
    /// Only the current version's key is in the token.
    pub fn passed(&self) -> bool {
        self.stale.is_empty()
    }

    /// The findings as text lines.
    pub fn print(&self) {
        outln!(
            "token {:?}: master version {} (key {}); key objects present for versions {:?}",
            self.token,
            self.master_version,
            self.key_label,
            self.key_versions
        );
        for stale in &self.stale {
            outln!(
                "FAILED: the token still holds the key of master version {} ({}), which a \
                 rotation should have destroyed",
                stale.version,
                stale.label
            );
        }
    }
}
