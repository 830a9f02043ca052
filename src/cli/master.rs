//! `--master pkcs11:…`: the master key in a PKCS#11 token for `serve` and
//! `audit inspect` (the vault side is `vault::pkcs11`). The PIN comes from
//! the file the URI's `pin-source` names or from `BLINDPASS_PKCS11_PIN`,
//! never from the command line, and is never printed.

use std::path::Path;
use std::sync::Arc;

use super::CliError;
use crate::clock::Clock;
use crate::issuer::{
    Authority, AuthorityConfig, DataDir, IssuerError, VaultSummary, key_commitment,
};
use crate::vault::pkcs11::{MASTER_FILE, TokenError, TokenMaster, TokenPin, TokenUri};
use crate::vault::{Vault, VaultError, fsutil};

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

/// A token failure as a message and what to do next. `Ok` passes through
/// what is not a token failure.
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

/// Opens the data directory at `root` with its master key in the token
/// `spec` names, creating the vault (and the token key) on first start. The
/// outer error is the token's (usage, PIN, missing token or key); the inner
/// one is the data directory's, as from [`Authority::open`].
pub fn open_or_init(
    spec: &str,
    root: &Path,
    config: AuthorityConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Result<Authority, IssuerError>> {
    let uri = uri(spec)?;
    let pin = pin(&uri)?;
    let layout = DataDir::new(root);
    let file = layout.vault().join(MASTER_FILE);
    if layout.master_slot().exists() {
        return Err(explain(VaultError::AlreadyInitialised, &uri));
    }
    let master = if file.exists() {
        TokenMaster::open(&file, &uri, &pin).map_err(|e| explain(e, &uri))?
    } else {
        let master = TokenMaster::create(&file, &uri, &pin).map_err(|e| explain(e, &uri))?;
        // The token made the vault directory (and the root with it).
        fsutil::create_private_dir(root)?;
        eprintln!(
            "initialised a new data directory in {} (master key in token {:?})",
            root.display(),
            uri.token
        );
        match Vault::create(&layout.vault(), Box::new(master.clone())) {
            Ok(vault) => drop(vault),
            Err(e) => return Ok(Err(e.into())),
        }
        master
    };
    Ok(Authority::open_with_provider(
        root,
        Box::new(master),
        config,
        clock,
    ))
}

/// The token side of `audit inspect --master`: the vault's master key
/// opened in the token (PIN checked), nothing changed.
pub struct TokenInspection {
    master: TokenMaster,
    root: std::path::PathBuf,
    token: String,
}

/// Opens the token named by `spec` for inspecting the data directory `root`.
pub fn open_for_inspection(spec: &str, root: &Path) -> anyhow::Result<TokenInspection> {
    let uri = uri(spec)?;
    let pin = pin(&uri)?;
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
    })
}

impl TokenInspection {
    /// The key ring opened read-only through the token and summarised, for
    /// the comparison with the audit log (as `issuer::inspect_vault` does
    /// with the passphrase).
    pub fn summary(&self) -> Result<VaultSummary, IssuerError> {
        let layout = DataDir::new(&self.root);
        let vault = Vault::open_read_only(&layout.vault(), Box::new(self.master.clone()))?;
        let ring = vault.ring();
        Ok(VaultSummary {
            master_version: vault.master_version(),
            ring_files: vault.ring_files()?,
            live: ring
                .periods
                .iter()
                .map(|p| (p.id, key_commitment(&p.key)))
                .collect(),
            destroyed: ring.destroyed.iter().map(|d| d.id).collect(),
            signing_keys: ring
                .signing_keys
                .iter()
                .map(|k| k.key.public().key_id().to_hex())
                .collect(),
        })
    }

    /// Prints which master versions still have a key object in the token;
    /// returns whether only the current one does (every destroyed
    /// generation's key is gone). With `json`, the lines go to stderr so
    /// that stdout stays one JSON object.
    pub fn report(&self, json: bool) -> anyhow::Result<bool> {
        let current = self.master.stored_version()?;
        let present = self.master.key_versions()?;
        let mut lines = vec![format!(
            "token {:?}: master version {current} (key {}); key objects present for versions {present:?}",
            self.token,
            self.master.key_label(current)
        )];
        let stale: Vec<u64> = present.into_iter().filter(|v| *v != current).collect();
        for version in &stale {
            lines.push(format!(
                "FAILED: the token still holds the key of master version {version} ({}), which a \
                 rotation should have destroyed",
                self.master.key_label(*version)
            ));
        }
        for line in lines {
            if json {
                eprintln!("{line}");
            } else {
                outln!("{line}");
            }
        }
        Ok(stale.is_empty())
    }
}
