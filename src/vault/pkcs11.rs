//! The master key held by a PKCS#11 token (a hardware security module, a
//! cloud KMS's PKCS#11 library, SoftHSM2 in tests), so that destroying it is
//! something the device does rather than an overwrite the disk may not honour.
//!
//! Scheme: a data key wrapped by the token. Master version `v` is, as with
//! the passphrase slot, a random 256-bit key `M_v` that seals the key ring
//! (unchanged code, see [`super::Vault`]); `M_v` is stored in
//! `vault/master.pkcs11` encrypted with AES-256-GCM by a token key `T_v`
//! that is non-extractable and sensitive — it can be used, never read,
//! wrapped out or made extractable again. Every rotation generates a new
//! token key, commits `M_{v+1}` under it, then destroys `T_v`
//! (`C_DestroyObject`): an old copy of `master.pkcs11`, and with it every
//! ring sealed under `M_v`, no longer opens, PIN or not.
//!
//! Why a wrapped data key rather than sealing the ring inside the token: the
//! token then sees 32 bytes once per open and once per rotation, whatever the
//! ring's size (devices limit single-part operations, some to a few KiB);
//! the frequent ring updates (a period opened, a signing key added) cost no
//! token round trip; and ring sealing stays the one tested code path. The
//! cost: `M_v` sits in process memory while it is current, exactly as with
//! the passphrase slot (the ring's period keys, which it protects, sit
//! there too).
//!
//! Token keys carry `CKA_ID` = the vault's random id and the label
//! `blindpass-master-<id>-<v>`, so one token can serve several vaults and
//! each vault finds its own generations. The audit log's `master-rotated`
//! entry records the version `v`, which names the token key; no key
//! material leaves the token.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::master::MasterKeyProvider;
use super::shared::SharedHome;
use super::{VaultError, fsutil};
use crate::crypto::secret::{MasterKey, random_32};

/// The file (in the vault directory) holding the token-wrapped master key.
pub const MASTER_FILE: &str = "master.pkcs11";

const FORMAT: &str = "blindpass-master-pkcs11-v1";
const LABEL_PREFIX: &str = "blindpass-master-";
const GCM_TAG_BITS: u64 = 128;

/// Why the token could not be used. Nothing here carries a PIN or key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The `pkcs11:` URI is malformed or asks for something not supported.
    #[error("PKCS#11 URI: {0}")]
    BadUri(String),
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load the PKCS#11 module {}: {detail}", module.display())]
    Module {
        /// The module's path.
        module: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// No token with this label is present.
    #[error("no PKCS#11 token labelled {0:?} is present")]
    NoToken(String),
    /// Several tokens carry this label.
    #[error("several PKCS#11 tokens are labelled {0:?}")]
    AmbiguousToken(String),
    /// The token refused the PIN.
    #[error("the token refused the PIN")]
    WrongPin,
    /// The token's user PIN is locked (too many wrong attempts).
    #[error("the token's user PIN is locked")]
    PinLocked,
    /// The token holds no key for this master version: it was destroyed by
    /// a rotation (this is a copy of the vault from before it), or the
    /// vault belongs to another token.
    #[error(
        "the token holds no key for master version {version} (destroyed by a rotation, or another token)"
    )]
    KeyGone {
        /// The master version the vault file names.
        version: u64,
    },
    /// The token lacks AES-GCM or AES key generation.
    #[error("the token does not offer {0}")]
    Unsupported(&'static str),
    /// Any other PKCS#11 failure (function and return value).
    #[error("PKCS#11 {function} failed: {rv}")]
    Call {
        /// The PKCS#11 function.
        function: String,
        /// Its return value's name.
        rv: String,
    },
}

fn call(e: CkError) -> TokenError {
    match e {
        CkError::Pkcs11(rv, function) => TokenError::Call {
            function: format!("{function:?}"),
            rv: format!("{rv:?}"),
        },
        other => TokenError::Call {
            function: "(binding)".into(),
            rv: other.to_string(),
        },
    }
}

/// Where the token is: which PKCS#11 module, which token (by label — slot
/// ids change when tokens are added), and optionally a file with the PIN.
///
/// Parsed from an RFC 7512 URI:
/// `pkcs11:token=<label>?module-path=<path>[&pin-source=<file>]`. A PIN
/// written into the URI (`pin-value`) is refused: command lines are
/// visible to every local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUri {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// A file whose first line is the user PIN.
    pub pin_source: Option<PathBuf>,
}

fn percent_decode(s: &str) -> Result<String, TokenError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| TokenError::BadUri("a bad %-escape".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TokenError::BadUri("not UTF-8 after %-decoding".into()))
}

impl TokenUri {
    /// Parses `pkcs11:token=<label>?module-path=<path>[&pin-source=<file>]`.
    pub fn parse(uri: &str) -> Result<Self, TokenError> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| TokenError::BadUri("must start with pkcs11:".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut token = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            match attr.split_once('=') {
                Some(("token", v)) => token = Some(percent_decode(v)?),
                _ => {
                    return Err(TokenError::BadUri(format!(
                        "unsupported path attribute {:?} (only token=<label>)",
                        attr.split('=').next().unwrap_or(attr)
                    )));
                }
            }
        }
        let (mut module, mut pin_source) = (None, None);
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            match attr.split_once('=') {
                Some(("module-path", v)) => module = Some(PathBuf::from(percent_decode(v)?)),
                Some(("pin-source", v)) => {
                    let v = percent_decode(v)?;
                    let file = v.strip_prefix("file:").unwrap_or(&v);
                    pin_source = Some(PathBuf::from(file));
                }
                Some(("pin-value", _)) => {
                    return Err(TokenError::BadUri(
                        "pin-value is refused: a PIN on the command line is visible to every \
                         local user; use pin-source=<file> or BLINDPASS_PKCS11_PIN"
                            .into(),
                    ));
                }
                _ => {
                    return Err(TokenError::BadUri(format!(
                        "unsupported query attribute {:?} (module-path, pin-source)",
                        attr.split('=').next().unwrap_or(attr)
                    )));
                }
            }
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::BadUri("token=<label> is required".into()))?;
        let module =
            module.ok_or_else(|| TokenError::BadUri("module-path=<path> is required".into()))?;
        Ok(Self {
            module,
            token,
            pin_source,
        })
    }
}

/// The token's user PIN: wiped on drop, never printed.
pub struct TokenPin(AuthPin);

impl TokenPin {
    /// Takes the PIN (the caller read it from a file or the environment).
    pub fn new(pin: String) -> Self {
        Self(AuthPin::from(pin))
    }
}

impl std::fmt::Debug for TokenPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenPin(<redacted>)")
    }
}

/// One initialised context per module for the whole process: PKCS#11 allows
/// one `C_Initialize` per process, and finalising it would pull the token
/// from under every other user in the process.
fn context(module: &Path) -> Result<Pkcs11, TokenError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let failed = |detail: String| TokenError::Module {
        module: module.to_owned(),
        detail,
    };
    let ctx = Pkcs11::new(module).map_err(|e| failed(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(failed(e.to_string())),
    }
    contexts.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

/// The master file as stored: which token key wraps `M_v`, and the wrap.
#[derive(Serialize, Deserialize)]
struct MasterFile {
    format: String,
    /// Hex of the vault's random id (the token keys' `CKA_ID`).
    vault_id: String,
    version: u64,
    /// The token key's label (informative: it is derived from the id and
    /// the version, and that derivation is what lookups use).
    key_label: String,
    /// Hex of the 12-byte GCM nonce.
    iv: String,
    /// Hex of the ciphertext and its 16-byte tag.
    wrapped: String,
}

fn key_label(vault_id: &[u8], version: u64) -> String {
    format!("{LABEL_PREFIX}{}-{version}", hex::encode(vault_id))
}

fn wrap_aad(vault_id: &[u8], version: u64) -> Vec<u8> {
    // Never empty (SoftHSM2 mishandles an empty GCM AAD), and binding the
    // wrap to its vault and version: a file moved or renumbered fails.
    let mut aad = FORMAT.as_bytes().to_vec();
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// Where the token-wrapped master key is kept: a file of the data
/// directory, or the master slot row several nodes share.
enum SlotHome {
    File(PathBuf),
    Shared(Arc<dyn SharedHome>),
}

impl SlotHome {
    fn read(&self) -> Result<MasterFile, VaultError> {
        match self {
            Self::File(path) => read_file(path),
            Self::Shared(home) => parse(&home.master_slot()?.ok_or(VaultError::NotInitialised)?),
        }
    }

    fn write(&self, bytes: &[u8]) -> Result<(), VaultError> {
        match self {
            Self::File(path) => Ok(fsutil::atomic_write(path, bytes)?),
            Self::Shared(home) => home.put_master_slot(bytes),
        }
    }
}

struct Inner {
    home: SlotHome,
    token: String,
    vault_id: Vec<u8>,
    // A PKCS#11 session is not to be used from two threads at once.
    session: Mutex<Session>,
}

/// A master-key provider whose keys live in a PKCS#11 token. Cloning shares
/// one logged-in session.
#[derive(Clone)]
pub struct TokenMaster(Arc<Inner>);

impl std::fmt::Debug for TokenMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMaster")
            .field(
                "file",
                &match &self.0.home {
                    SlotHome::File(path) => Some(path),
                    SlotHome::Shared(_) => None,
                },
            )
            .field("token", &self.0.token)
            .finish_non_exhaustive()
    }
}

/// Opens a read-write session on the token labelled `uri.token` and logs in.
fn login(uri: &TokenUri, pin: &TokenPin) -> Result<Session, TokenError> {
    let ctx = context(&uri.module)?;
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_initialized_token().map_err(call)? {
        let info = ctx.get_token_info(slot).map_err(call)?;
        if info.label().trim_end() == uri.token {
            found.push(slot);
        }
    }
    let slot = match found.as_slice() {
        [] => return Err(TokenError::NoToken(uri.token.clone())),
        [slot] => *slot,
        _ => return Err(TokenError::AmbiguousToken(uri.token.clone())),
    };
    // Asked one by one: listing them all makes the binding log an error
    // for every vendor mechanism it does not know.
    for (needed, name) in [
        (MechanismType::AES_GCM, "AES-GCM"),
        (MechanismType::AES_KEY_GEN, "AES key generation"),
    ] {
        match ctx.get_mechanism_info(slot, needed) {
            Ok(_) => {}
            Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {
                return Err(TokenError::Unsupported(name));
            }
            Err(e) => return Err(call(e)),
        }
    }
    let session = ctx.open_rw_session(slot).map_err(call)?;
    match session.login(UserType::User, Some(&pin.0)) {
        // Another session of this process is logged in already: login state
        // is per token and process in PKCS#11.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(TokenError::WrongPin)
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::PinLocked),
        Err(e) => Err(call(e)),
    }
}

fn read_file(path: &Path) -> Result<MasterFile, VaultError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VaultError::NotInitialised);
        }
        Err(e) => return Err(e.into()),
    };
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Result<MasterFile, VaultError> {
    let file: MasterFile =
        serde_json::from_slice(bytes).map_err(|_| VaultError::Corrupt("master token file"))?;
    if file.format != FORMAT {
        return Err(VaultError::Corrupt("master token file format"));
    }
    Ok(file)
}

impl TokenMaster {
    /// Starts a new vault's master key in the token: a fresh vault id, a
    /// token key for version 1 and `M_1` wrapped under it in `file` (its
    /// directory is created, private, once the token has accepted the PIN).
    /// Refuses if `file` or a passphrase slot beside it exists.
    pub fn create(file: &Path, uri: &TokenUri, pin: &TokenPin) -> Result<Self, VaultError> {
        if file.exists() || file.with_file_name("master.slot").exists() {
            return Err(VaultError::AlreadyInitialised);
        }
        let session = login(uri, pin)?;
        // Only now, with the token found and the PIN accepted: a refused
        // first start leaves no directory behind.
        if let Some(dir) = file.parent() {
            fsutil::create_private_dir(dir)?;
        }
        Self::start(SlotHome::File(file.to_owned()), session, uri)
    }

    /// [`TokenMaster::create`] for several nodes: `M_1` wrapped in the
    /// shared master slot row. The caller holds the shared lock; refuses if
    /// the row exists.
    pub fn create_shared(
        home: Arc<dyn SharedHome>,
        uri: &TokenUri,
        pin: &TokenPin,
    ) -> Result<Self, VaultError> {
        if home.master_slot()?.is_some() {
            return Err(VaultError::AlreadyInitialised);
        }
        let session = login(uri, pin)?;
        Self::start(SlotHome::Shared(home), session, uri)
    }

    /// [`TokenMaster::open`] for several nodes: the master slot row.
    pub fn open_shared(
        home: Arc<dyn SharedHome>,
        uri: &TokenUri,
        pin: &TokenPin,
    ) -> Result<Self, VaultError> {
        Self::open_in(SlotHome::Shared(home), uri, pin)
    }

    /// A fresh vault id, a token key for version 1 and `M_1` under it.
    fn start(home: SlotHome, session: Session, uri: &TokenUri) -> Result<Self, VaultError> {
        let id = random_32();
        let master = Self(Arc::new(Inner {
            home,
            token: uri.token.clone(),
            vault_id: id[..8].to_vec(),
            session: Mutex::new(session),
        }));
        master.prepare(1)?;
        master.replace(1, &MasterKey::generate())?;
        Ok(master)
    }

    /// Opens the master key of an existing vault: logs in to the token and
    /// checks that the current master unwraps. A wrong PIN, a missing token
    /// or a destroyed token key is an error, and nothing is changed.
    pub fn open(file: &Path, uri: &TokenUri, pin: &TokenPin) -> Result<Self, VaultError> {
        Self::open_in(SlotHome::File(file.to_owned()), uri, pin)
    }

    fn open_in(home: SlotHome, uri: &TokenUri, pin: &TokenPin) -> Result<Self, VaultError> {
        let stored = home.read()?;
        let vault_id =
            hex::decode(&stored.vault_id).map_err(|_| VaultError::Corrupt("master token file"))?;
        let session = login(uri, pin)?;
        let master = Self(Arc::new(Inner {
            home,
            token: uri.token.clone(),
            vault_id,
            session: Mutex::new(session),
        }));
        master.load()?;
        Ok(master)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        // A panic during a token call leaves no half-done state on our side:
        // the token's own operation state is reset by the next *Init call.
        self.0.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This vault's token keys: `(version, handle)` for every one present.
    fn keys(&self, session: &Session) -> Result<Vec<(u64, ObjectHandle)>, TokenError> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Id(self.0.vault_id.clone()),
        ];
        let prefix = format!("{LABEL_PREFIX}{}-", hex::encode(&self.0.vault_id));
        let mut out = Vec::new();
        for handle in session.find_objects(&template).map_err(call)? {
            let attrs = session
                .get_attributes(handle, &[AttributeType::Label])
                .map_err(call)?;
            let version = attrs.iter().find_map(|a| match a {
                Attribute::Label(label) => std::str::from_utf8(label)
                    .ok()
                    .and_then(|l| l.strip_prefix(prefix.as_str()))
                    .and_then(|v| v.parse::<u64>().ok()),
                _ => None,
            });
            if let Some(version) = version {
                out.push((version, handle));
            }
        }
        Ok(out)
    }

    fn key(&self, session: &Session, version: u64) -> Result<Option<ObjectHandle>, TokenError> {
        Ok(self
            .keys(session)?
            .into_iter()
            .find(|(v, _)| *v == version)
            .map(|(_, handle)| handle))
    }

    /// Master versions whose token key is present, in ascending order: after
    /// a finished rotation, exactly the current one.
    pub fn key_versions(&self) -> Result<Vec<u64>, VaultError> {
        let session = self.session();
        let mut versions: Vec<u64> = self.keys(&session)?.into_iter().map(|(v, _)| v).collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// The label of the token key for master `version`.
    pub fn key_label(&self, version: u64) -> String {
        key_label(&self.0.vault_id, version)
    }

    /// The version the master file names.
    pub fn stored_version(&self) -> Result<u64, VaultError> {
        Ok(self.0.home.read()?.version)
    }
}

impl MasterKeyProvider for TokenMaster {
    fn load(&self) -> Result<(u64, MasterKey), VaultError> {
        let stored = self.0.home.read()?;
        if hex::decode(&stored.vault_id).ok().as_deref() != Some(self.0.vault_id.as_slice()) {
            return Err(VaultError::Corrupt("master token file names another vault"));
        }
        let mut iv =
            hex::decode(&stored.iv).map_err(|_| VaultError::Corrupt("master token file"))?;
        let wrapped =
            hex::decode(&stored.wrapped).map_err(|_| VaultError::Corrupt("master token file"))?;
        if iv.len() != 12 {
            return Err(VaultError::Corrupt("master token file nonce"));
        }
        let session = self.session();
        let key = self
            .key(&session, stored.version)?
            .ok_or(TokenError::KeyGone {
                version: stored.version,
            })?;
        let aad = wrap_aad(&self.0.vault_id, stored.version);
        let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into()).map_err(call)?;
        // The plaintext buffer is allocated once at its final size, so
        // wiping it here wipes the only copy outside the key cell.
        let plain = Zeroizing::new(
            session
                .decrypt(&Mechanism::AesGcm(params), key, &wrapped)
                .map_err(|e| match e {
                    // A failed tag check: SoftHSM2 answers CKR_GENERAL_ERROR,
                    // other tokens CKR_ENCRYPTED_DATA_INVALID.
                    CkError::Pkcs11(
                        RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange
                        | RvError::GeneralError,
                        _,
                    ) => VaultError::Corrupt("master key does not open under the token key"),
                    other => call(other).into(),
                })?,
        );
        let master =
            MasterKey::from_slice(&plain).ok_or(VaultError::Corrupt("master key length"))?;
        Ok((stored.version, master))
    }

    fn prepare(&self, version: u64) -> Result<(), VaultError> {
        let session = self.session();
        // A key for this version left by a rotation that stopped before its
        // commit wraps nothing: start again from a fresh one.
        if let Some(stale) = self.key(&session, version)? {
            session.destroy_object(stale).map_err(call)?;
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32u64.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Id(self.0.vault_id.clone()),
            Attribute::Label(key_label(&self.0.vault_id, version).into_bytes()),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(call)?;
        Ok(())
    }

    fn replace(&self, version: u64, key: &MasterKey) -> Result<(), VaultError> {
        let session = self.session();
        let token_key = self
            .key(&session, version)?
            .ok_or(TokenError::KeyGone { version })?;
        let mut iv = random_32()[..12].to_vec();
        let aad = wrap_aad(&self.0.vault_id, version);
        let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into()).map_err(call)?;
        let wrapped = session
            .encrypt(&Mechanism::AesGcm(params), token_key, key.expose_secret())
            .map_err(call)?;
        // Read the nonce back after the call: a token that picks GCM nonces
        // itself writes its choice into the parameter buffer.
        let iv_hex = hex::encode(&iv);
        let file = MasterFile {
            format: FORMAT.into(),
            vault_id: hex::encode(&self.0.vault_id),
            version,
            key_label: key_label(&self.0.vault_id, version),
            iv: iv_hex,
            wrapped: hex::encode(wrapped),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|_| VaultError::Corrupt("master token file"))?;
        self.0.home.write(&bytes)?;
        Ok(())
    }

    fn destroy_others(&self, current: u64) -> Result<(), VaultError> {
        let session = self.session();
        for (version, handle) in self.keys(&session)? {
            if version != current {
                session.destroy_object(handle).map_err(call)?;
                tracing::info!(
                    label = %key_label(&self.0.vault_id, version),
                    "destroyed the token key of an earlier master version"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parses_and_refuses_a_pin_value() {
        let uri = TokenUri::parse(
            "pkcs11:token=blind%20pass?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
        )
        .unwrap();
        assert_eq!(uri.token, "blind pass");
        assert_eq!(uri.module, Path::new("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(uri.pin_source.as_deref(), Some(Path::new("/run/pin")));
        for bad in [
            "token=x?module-path=/m.so",
            "pkcs11:token=x",
            "pkcs11:?module-path=/m.so",
            "pkcs11:token=x?module-path=/m.so&pin-value=1234",
            "pkcs11:token=x;serial=1?module-path=/m.so",
            "pkcs11:token=%zz?module-path=/m.so",
        ] {
            let err = TokenUri::parse(bad).unwrap_err();
            assert!(matches!(err, TokenError::BadUri(_)), "{bad}");
            assert!(!err.to_string().contains("1234"), "{err}");
        }
    }

    #[test]
    fn labels_name_vault_and_version() {
        assert_eq!(key_label(&[0xab, 0x01], 7), "blindpass-master-ab01-7");
        assert_ne!(wrap_aad(&[1], 2), wrap_aad(&[1], 3));
        assert!(!wrap_aad(&[], 0).is_empty());
    }
}
