//! Entry points for the fuzz targets under `fuzz/` and their corpus replay
//! in `tests/fuzz_corpus.rs`: decoders of outside bytes that are not public
//! API (the HTTP request bodies, the key ring encoder) reachable here
//! without widening the API itself, and the vault's decoders beside them.
//! Nothing in the crate calls these; they only forward to the real code.

use crate::vault::VaultError;
use crate::vault::keyring::KeyRing;

/// The key ring decoder ([`KeyRing::from_bytes`]), as the vault runs it on
/// the opened ring file.
pub fn key_ring(bytes: &[u8]) -> Result<KeyRing, VaultError> {
    KeyRing::from_bytes(bytes)
}

/// The key ring encoder, for round trips and for writing seed inputs. The
/// bytes hold secrets and are wiped on drop.
pub fn key_ring_bytes(ring: &KeyRing) -> Result<crate::crypto::secret::SecretBytes, VaultError> {
    ring.to_bytes()
}

/// The master slot file decoder, as `PassphraseSlot::open` and `load` run
/// it on the slot file's bytes before any key derivation.
pub fn master_slot(bytes: &[u8]) -> Result<(), VaultError> {
    crate::vault::master::SlotFile::decode(bytes).map(|_| ())
}

/// The JSON request bodies the server deserialises, each in turn; the
/// outcome of each (`true` = accepted), in the order enrol, login, open
/// period, extend period.
pub fn http_request_bodies(bytes: &[u8]) -> [bool; 4] {
    use crate::protocol::api::{Enrolment, ExtendPeriod, Login, OpenPeriod};
    [
        serde_json::from_slice::<Enrolment>(bytes).is_ok(),
        serde_json::from_slice::<Login>(bytes).is_ok(),
        serde_json::from_slice::<OpenPeriod>(bytes).is_ok(),
        serde_json::from_slice::<ExtendPeriod>(bytes).is_ok(),
    ]
}
