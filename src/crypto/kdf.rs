//! Key derivation: HMAC-SHA-256 (RFC 2104) to derive purpose keys from a
//! parent key, and Argon2id (RFC 9106) to turn a passphrase into a key.

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::CryptoError;
use super::secret::{DerivedKey, Passphrase};

/// Argon2id cost parameters. Stored beside what they protect so they can be
/// raised later without breaking old files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism.
    pub p_cost: u32,
}

impl Argon2Params {
    /// The crate's defaults (RFC 9106 second recommendation scaled down, as
    /// OWASP suggests): 19 MiB, 2 passes, 1 lane — about 50 ms here.
    pub const DEFAULT: Self = Self {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// The most a stored file may ask for: 4 GiB of memory, 64 passes, 16
    /// lanes. Far above any sane setting, but finite: the parameters are read
    /// from the master slot, and a damaged slot must be a clear refusal, not
    /// an attempt to allocate terabytes or to hash for hours.
    pub const MAX: Self = Self {
        m_cost_kib: 4 * 1024 * 1024,
        t_cost: 64,
        p_cost: 16,
    };

    /// Whether every cost is at most [`Self::MAX`].
    pub fn within_max(&self) -> bool {
        self.m_cost_kib <= Self::MAX.m_cost_kib
            && self.t_cost <= Self::MAX.t_cost
            && self.p_cost <= Self::MAX.p_cost
    }

    /// Cheap parameters for tests only; never use for real passphrases.
    pub const INSECURE_FAST_FOR_TESTS: Self = Self {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

/// Argon2id(passphrase, salt) → a 32-byte key.
pub fn argon2id(
    passphrase: &Passphrase,
    salt: &[u8],
    params: Argon2Params,
) -> Result<DerivedKey, CryptoError> {
    let params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|_| CryptoError::Failed)?;
    let blocks = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; 32];
    let hashed = with_work_area(blocks, |area| {
        argon.hash_password_into_with_memory(passphrase.expose_secret(), salt, &mut out, area)
    });
    let key = hashed.map(|()| DerivedKey::from_bytes(out));
    out.zeroize();
    key.map_err(|_| CryptoError::Failed)
}

/// Argon2 work areas (19 MiB each at the defaults) kept for the next hash.
///
/// Allocating one afresh per hash costs page faults and a `memset`, and
/// glibc serves such blocks from per-thread arenas once the first one has
/// been freed, so a server whose logins run on many pool threads ends up
/// holding a 19 MiB area in every arena: measured as 1.2 GiB of RSS after
/// 100 logins. Keeping at most one area per core bounds that at
/// `cores × m_cost` and removes the faults.
static WORK_AREAS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

fn pool_limit() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// Runs `hash` on a pooled work area of `blocks` blocks, wiped afterwards.
fn with_work_area<R>(blocks: usize, hash: impl FnOnce(&mut [Block]) -> R) -> R {
    let pooled = {
        let mut pool = WORK_AREAS.lock().unwrap_or_else(|e| e.into_inner());
        let found = pool.iter().position(|area| area.len() == blocks);
        found.map(|i| pool.swap_remove(i))
    };
    let mut area = pooled.unwrap_or_else(|| vec![Block::new(); blocks]);
    let result = hash(&mut area);
    // The area holds state derived from the passphrase until overwritten.
    area.iter_mut().for_each(Zeroize::zeroize);
    let mut pool = WORK_AREAS.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < pool_limit() {
        pool.push(area);
    }
    result
}

/// HMAC-SHA-256(parent, label || 0x00 || context): a key for one purpose.
/// The label names the purpose; the zero byte keeps label and context apart.
pub fn derive(parent: &[u8; 32], label: &str, context: &[u8]) -> DerivedKey {
    let mut out = Zeroizing::new([0u8; 32]);
    hmac_sha256_into(parent, &[label.as_bytes(), &[0], context], &mut out);
    // `out` is exactly 32 bytes, so the copy into the key's cell cannot fail.
    #[allow(clippy::expect_used)]
    DerivedKey::from_slice(&out[..]).expect("32 bytes")
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hmac_sha256_into(key, parts, &mut out);
    out
}

/// HMAC-SHA-256 (RFC 2104) written out over SHA-256, so that nothing from
/// which the key can be had outlives the call:
/// - the padded key blocks (`K ⊕ ipad`, `K ⊕ opad`: one XOR away from the
///   key) live in a heap buffer wiped after use; the `hmac` crate keeps
///   them in a stack array it never wipes;
/// - the hash states after those blocks (as good as the key for computing
///   any HMAC under it) are finalized in place and wiped on drop (`sha2`'s
///   `zeroize` feature), never moved: a move leaves the old bytes behind in
///   a stack frame, which can outlive its use for as long as the thread.
fn hmac_sha256_into(key: &[u8; 32], parts: &[&[u8]], out: &mut [u8; 32]) {
    const BLOCK: usize = 64;
    let mut pad = Zeroizing::new(vec![0u8; BLOCK]);
    pad[..32].copy_from_slice(key);
    pad.iter_mut().for_each(|b| *b ^= 0x36);
    let mut hash = Sha256::new();
    Digest::update(&mut hash, &pad[..]);
    for part in parts {
        Digest::update(&mut hash, part);
    }
    let mut inner_hash = Zeroizing::new([0u8; 32]);
    Digest::finalize_into_reset(&mut hash, (&mut *inner_hash).into());
    pad.iter_mut().for_each(|b| *b ^= 0x36 ^ 0x5c);
    Digest::update(&mut hash, &pad[..]);
    Digest::update(&mut hash, &inner_hash[..]);
    Digest::finalize_into_reset(&mut hash, out.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_separates_labels_and_contexts() {
        let parent = [9u8; 32];
        let a = derive(&parent, "record", b"id-1");
        assert_eq!(a, derive(&parent, "record", b"id-1"));
        assert_ne!(a, derive(&parent, "record", b"id-2"));
        assert_ne!(a, derive(&parent, "index", b"id-1"));
        assert_ne!(a, derive(&[8u8; 32], "record", b"id-1"));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key; HMAC pads keys with zeros
        // to the block size, so the zero-padded 32-byte key is equivalent.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    proptest::proptest! {
        // The `hmac` crate is the oracle for the hand-written HMAC.
        #[test]
        fn hmac_matches_the_hmac_crate(
            key: [u8; 32],
            a in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            b in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            use hmac::{Hmac, KeyInit, Mac};
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
            mac.update(&a);
            mac.update(&b);
            let expected: [u8; 32] = mac.finalize().into_bytes().into();
            proptest::prop_assert_eq!(hmac_sha256(&key, &[&a, &b]), expected);
            let derived = derive(&key, "label", &a);
            proptest::prop_assert_eq!(
                derived.expose_secret(),
                &hmac_sha256(&key, &[b"label", &[0], &a])
            );
        }
    }

    #[test]
    fn argon2id_depends_on_passphrase_and_salt() {
        let p = Argon2Params::INSECURE_FAST_FOR_TESTS;
        let a = argon2id(&Passphrase::new("one".into()), b"saltsaltsaltsalt", p).unwrap();
        let b = argon2id(&Passphrase::new("two".into()), b"saltsaltsaltsalt", p).unwrap();
        let c = argon2id(&Passphrase::new("one".into()), b"othersaltothersa", p).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            argon2id(&Passphrase::new("one".into()), b"saltsaltsaltsalt", p).unwrap()
        );
    }

    #[test]
    fn pooled_work_areas_give_the_crates_own_answer() {
        // The crate's allocating path is the oracle; repeated calls reuse
        // (and wipe) pooled areas, of two sizes, interleaved.
        let oracle = |pass: &str, salt: &[u8], m_cost_kib: u32| {
            let params = Params::new(m_cost_kib, 1, 1, Some(32)).unwrap();
            let mut out = [0u8; 32];
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(pass.as_bytes(), salt, &mut out)
                .unwrap();
            out
        };
        for round in 0..3 {
            for m_cost_kib in [64, 256] {
                let pass = format!("passphrase {round}");
                let params = Argon2Params {
                    m_cost_kib,
                    t_cost: 1,
                    p_cost: 1,
                };
                let ours =
                    argon2id(&Passphrase::new(pass.clone()), b"saltsaltsaltsalt", params).unwrap();
                assert_eq!(
                    ours.expose_secret(),
                    &oracle(&pass, b"saltsaltsaltsalt", m_cost_kib)
                );
            }
        }
        let pool = WORK_AREAS.lock().unwrap();
        assert!(pool.len() <= pool_limit());
    }
}
