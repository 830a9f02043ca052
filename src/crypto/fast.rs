//! The OpenSSL backend for the RSA operations of token type 2: the raw
//! private-key operation of blind signing (OpenSSL uses CRT and RSA
//! blinding) and RSASSA-PSS-SHA384 verification. Same inputs, same outputs
//! as the pure-Rust backend — property tests check they agree byte for
//! byte — at about three times the speed on this project's machines.
//!
//! Verification asks OpenSSL only for the raw public-key operation on a
//! key built once, and decodes EMSA-PSS here: OpenSSL 3's EVP interface
//! looks algorithms up by name, under a lock, on every call, which cost a
//! quarter of a verification.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use openssl::bn::BigNum;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::{Padding, Rsa};
use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;

use super::CryptoError;

/// `hLen`: the SHA-384 output length.
const HASH_LEN: usize = 48;
/// `sLen`: the PSS salt length of RSABSSA-SHA384-PSS (the hash length).
const SALT_LEN: usize = 48;
/// The largest modulus, in bytes, that [`FastPublicKey`] takes (4096 bits),
/// so that verification works in a fixed stack buffer. Token type 2 uses
/// 2048 bits.
const MAX_MODULUS_BYTES: usize = 512;

/// An RSA private key held by OpenSSL, as one copy per core.
///
/// OpenSSL blinds every private-key operation with a blinding value kept
/// in the key object and owned by the first thread that used it; any other
/// thread takes a second, shared blinding under a lock and computes the
/// unblinding factor on every call. Two signing threads on one key object
/// therefore contend on that lock and sleep on it. With a copy per core,
/// each signing thread keeps to its own copy and its own blinding.
pub struct FastPrivateKey {
    copies: Vec<Mutex<Rsa<Private>>>,
}

impl std::fmt::Debug for FastPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastPrivateKey(<redacted>)")
    }
}

/// How many copies a key keeps: one per core, since no more signatures run
/// at once than there are cores to run them.
fn copies_wanted() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

thread_local! {
    /// The copy this thread starts from: threads are handed out in turn, so
    /// a fixed pool of signing threads keeps each to its own copy.
    static PREFERRED: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl FastPrivateKey {
    /// From PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let copies = (0..copies_wanted())
            .map(|_| {
                let pkey = PKey::private_key_from_pkcs8(der).map_err(|_| CryptoError::Failed)?;
                let rsa = pkey.rsa().map_err(|_| CryptoError::Failed)?;
                Ok(Mutex::new(rsa))
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        Ok(Self { copies })
    }

    /// This thread's copy if it is free, else the next free one, else
    /// (more signers than cores) wait for this thread's own.
    fn copy(&self) -> MutexGuard<'_, Rsa<Private>> {
        let n = self.copies.len();
        let first = PREFERRED.with(|p| *p) % n;
        for i in 0..n {
            if let Ok(guard) = self.copies[(first + i) % n].try_lock() {
                return guard;
            }
        }
        self.copies[first]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `s = m^d mod n`, checked: `s^e mod n` must give back `m` before `s`
    /// is released (a faulty CRT result would reveal a factor of `n`).
    pub fn raw_sign(&self, blinded: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rsa = self.copy();
        let size = rsa.size() as usize;
        if blinded.len() != size {
            return Err(CryptoError::Failed);
        }
        let m = BigNum::from_slice(blinded).map_err(|_| CryptoError::Failed)?;
        if m >= *rsa.n() {
            return Err(CryptoError::Failed);
        }
        let mut sig = vec![0u8; size];
        let len = rsa
            .private_decrypt(blinded, &mut sig, Padding::NONE)
            .map_err(|_| CryptoError::Failed)?;
        if len != size {
            return Err(CryptoError::Failed);
        }
        let mut back = vec![0u8; size];
        let len = rsa
            .public_decrypt(&sig, &mut back, Padding::NONE)
            .map_err(|_| CryptoError::Failed)?;
        if len != size || back != blinded {
            return Err(CryptoError::Failed);
        }
        Ok(sig)
    }
}

/// An RSA public key held by OpenSSL, ready to verify RSASSA-PSS-SHA384.
pub struct FastPublicKey {
    rsa: Rsa<Public>,
    /// The modulus, big-endian, exactly `k` bytes (the modulus size).
    n: Vec<u8>,
    /// `modBits`: the length of the modulus in bits.
    mod_bits: usize,
}

impl std::fmt::Debug for FastPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastPublicKey")
    }
}

impl FastPublicKey {
    /// From the big-endian modulus and exponent. Moduli above 4096 bits,
    /// and those too small for a SHA-384 PSS encoding, are refused.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, CryptoError> {
        let n = BigNum::from_slice(n).map_err(|_| CryptoError::Failed)?;
        let e = BigNum::from_slice(e).map_err(|_| CryptoError::Failed)?;
        let rsa = Rsa::from_public_components(n, e).map_err(|_| CryptoError::Failed)?;
        let size = rsa.size();
        let mod_bits = usize::try_from(rsa.n().num_bits()).map_err(|_| CryptoError::Failed)?;
        let em_len = mod_bits.saturating_sub(1).div_ceil(8);
        if size as usize > MAX_MODULUS_BYTES || em_len < HASH_LEN + SALT_LEN + 2 {
            return Err(CryptoError::Failed);
        }
        let n = rsa
            .n()
            .to_vec_padded(size as i32)
            .map_err(|_| CryptoError::Failed)?;
        Ok(Self { rsa, n, mod_bits })
    }

    /// RSASSA-PSS-VERIFY (RFC 8017 §8.1.2) with SHA-384, MGF1-SHA-384 and a
    /// 48-byte salt. OpenSSL computes only RSAVP1, `s^e mod n`; the checks
    /// around it and EMSA-PSS-VERIFY ([`emsa_pss_verify`]) are done here.
    /// Every failure is the same [`CryptoError::Failed`].
    pub fn verify_pss_sha384(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let k = self.n.len();
        // Step 1: exactly k octets. Step 2b's range check, s < n, is a
        // comparison of two k-octet big-endian strings (OpenSSL checks it
        // again; this one does not depend on that).
        if sig.len() != k || sig >= self.n.as_slice() {
            return Err(CryptoError::Failed);
        }
        let mut buf = [0u8; MAX_MODULUS_BYTES];
        let m = buf.get_mut(..k).ok_or(CryptoError::Failed)?;
        let len = self
            .rsa
            .public_decrypt(sig, m, Padding::NONE)
            .map_err(|_| CryptoError::Failed)?;
        if len != k {
            return Err(CryptoError::Failed);
        }
        // Step 2c: EM = I2OSP(m, emLen) with emLen = ceil((modBits - 1) / 8),
        // which is k - 1 when modBits is 1 mod 8: that extra octet must be 0.
        let em_bits = self.mod_bits - 1;
        let (high, em) = m.split_at_mut(k - em_bits.div_ceil(8));
        if high.iter().any(|&b| b != 0) {
            return Err(CryptoError::Failed);
        }
        let m_hash: [u8; HASH_LEN] = Sha384::digest(msg).into();
        if emsa_pss_verify(&m_hash, em, em_bits) {
            Ok(())
        } else {
            Err(CryptoError::Failed)
        }
    }

    /// The same verification through OpenSSL's EVP interface, as it was
    /// done before: the oracle the tests hold [`Self::verify_pss_sha384`] to.
    #[cfg(test)]
    fn verify_pss_sha384_evp(&self, msg: &[u8], sig: &[u8]) -> bool {
        use openssl::hash::MessageDigest;
        use openssl::sign::{RsaPssSaltlen, Verifier};
        let Ok(pkey) = PKey::from_rsa(self.rsa.clone()) else {
            return false;
        };
        let Ok(mut verifier) = Verifier::new(MessageDigest::sha384(), &pkey) else {
            return false;
        };
        verifier
            .set_rsa_padding(Padding::PKCS1_PSS)
            .and_then(|()| verifier.set_rsa_pss_saltlen(RsaPssSaltlen::custom(SALT_LEN as i32)))
            .and_then(|()| verifier.set_rsa_mgf1_md(MessageDigest::sha384()))
            .and_then(|()| verifier.update(msg))
            .and_then(|()| verifier.verify(sig))
            .unwrap_or(false)
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2, steps 3–14) with SHA-384, MGF1-SHA-384
/// and a 48-byte salt, given `mHash`. `em` is unmasked in place.
fn emsa_pss_verify(m_hash: &[u8; HASH_LEN], em: &mut [u8], em_bits: usize) -> bool {
    let em_len = em.len();
    // Step 3 (with emLen tied to emBits, which also bounds the shift below).
    // From here on every slice bound is within `em`.
    if em_len < HASH_LEN + SALT_LEN + 2 || em_len != em_bits.div_ceil(8) {
        return false;
    }
    // Step 4: the trailer field.
    let Some((&mut trailer, rest)) = em.split_last_mut() else {
        return false;
    };
    if trailer != 0xbc {
        return false;
    }
    // Step 5: maskedDB || H.
    let (db, h) = rest.split_at_mut(em_len - HASH_LEN - 1);
    // Step 6: the 8·emLen − emBits leftmost bits of maskedDB must be zero
    // (for a 2048-bit modulus, the top bit).
    let kept_bits = 0xffu8 >> (8 * em_len - em_bits);
    if db[0] & !kept_bits != 0 {
        return false;
    }
    // Steps 7–9: DB = maskedDB ⊕ MGF1(H), leftmost bits cleared again.
    mgf1_sha384_xor(h, db);
    db[0] &= kept_bits;
    // Step 10: DB = PS (zeros) || 0x01 || salt, with a salt of exactly sLen.
    let (ps, rest) = db.split_at(em_len - HASH_LEN - SALT_LEN - 2);
    let Some((&separator, salt)) = rest.split_first() else {
        return false;
    };
    if ps.iter().any(|&b| b != 0) || separator != 0x01 {
        return false;
    }
    // Steps 11–14: H' = Hash(0x00 × 8 || mHash || salt) must equal H.
    let h_prime = Sha384::new()
        .chain_update([0u8; 8])
        .chain_update(m_hash)
        .chain_update(salt)
        .finalize();
    h.ct_eq(h_prime.as_slice()).into()
}

/// XORs MGF1-SHA-384(seed, out.len()) (RFC 8017 §B.2.1) into `out`.
fn mgf1_sha384_xor(seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(HASH_LEN)) {
        let mask = Sha384::new()
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize();
        for (byte, m) in chunk.iter_mut().zip(mask.iter()) {
            *byte ^= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::BigNumContext;
    use openssl::hash::MessageDigest;
    use openssl::sign::{RsaPssSaltlen, Signer};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// A token input's length: what verifiers see signed.
    const MSG_LEN: usize = 98;

    struct TestKey {
        private: Rsa<Private>,
        public: FastPublicKey,
    }

    impl TestKey {
        fn new(bits: u32) -> Self {
            Self::from_private(Rsa::generate(bits).unwrap())
        }

        /// A key whose modulus has 2049 bits, which `Rsa::generate` does
        /// not make (it rounds odd sizes down): built from two primes.
        fn of_2049_bits() -> Self {
            let mut ctx = BigNumContext::new().unwrap();
            let big = || BigNum::new().unwrap();
            let one = BigNum::from_u32(1).unwrap();
            loop {
                let (mut p, mut q, mut n) = (big(), big(), big());
                p.generate_prime(1025, false, None, None).unwrap();
                q.generate_prime(1024, false, None, None).unwrap();
                n.checked_mul(&p, &q, &mut ctx).unwrap();
                let (mut p1, mut q1, mut phi) = (big(), big(), big());
                p1.checked_sub(&p, &one).unwrap();
                q1.checked_sub(&q, &one).unwrap();
                phi.checked_mul(&p1, &q1, &mut ctx).unwrap();
                let e = BigNum::from_u32(65537).unwrap();
                let mut d = big();
                // Another pair if n came out short or e divides phi.
                if n.num_bits() != 2049 || d.mod_inverse(&e, &phi, &mut ctx).is_err() {
                    continue;
                }
                let (mut dmp1, mut dmq1, mut iqmp) = (big(), big(), big());
                dmp1.nnmod(&d, &p1, &mut ctx).unwrap();
                dmq1.nnmod(&d, &q1, &mut ctx).unwrap();
                iqmp.mod_inverse(&q, &p, &mut ctx).unwrap();
                let private =
                    Rsa::from_private_components(n, e, d, p, q, dmp1, dmq1, iqmp).unwrap();
                assert!(private.check_key().unwrap());
                return Self::from_private(private);
            }
        }

        fn from_private(private: Rsa<Private>) -> Self {
            let public =
                FastPublicKey::from_components(&private.n().to_vec(), &private.e().to_vec())
                    .unwrap();
            Self { private, public }
        }

        /// A genuine signature, made by OpenSSL (random salt).
        fn sign(&self, msg: &[u8]) -> Vec<u8> {
            let pkey = PKey::from_rsa(self.private.clone()).unwrap();
            let mut signer = Signer::new(MessageDigest::sha384(), &pkey).unwrap();
            signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
            signer
                .set_rsa_pss_saltlen(RsaPssSaltlen::custom(SALT_LEN as i32))
                .unwrap();
            signer.set_rsa_mgf1_md(MessageDigest::sha384()).unwrap();
            signer.update(msg).unwrap();
            signer.sign_to_vec().unwrap()
        }

        /// The raw private-key operation on an encoded message: a
        /// "signature" of whatever `em` holds. `None` if `em >= n`.
        fn sign_raw(&self, em: &[u8]) -> Option<Vec<u8>> {
            let k = self.private.size() as usize;
            let mut m = vec![0u8; k - em.len()];
            m.extend_from_slice(em);
            if m.as_slice() >= self.public.n.as_slice() {
                return None;
            }
            let mut sig = vec![0u8; k];
            self.private
                .private_decrypt(&m, &mut sig, Padding::NONE)
                .unwrap();
            Some(sig)
        }

        /// The verdicts of the new verification and of the EVP oracle.
        fn verdicts(&self, msg: &[u8], sig: &[u8]) -> (bool, bool) {
            (
                self.public.verify_pss_sha384(msg, sig).is_ok(),
                self.public.verify_pss_sha384_evp(msg, sig),
            )
        }

        fn em_bits(&self) -> usize {
            self.public.mod_bits - 1
        }
    }

    fn key() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(|| TestKey::new(2048))
    }

    /// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with a salt of any length;
    /// `tweak_db` may spoil DB before it is masked.
    fn encode(
        msg: &[u8],
        salt: &[u8],
        em_bits: usize,
        tweak_db: impl FnOnce(&mut [u8]),
    ) -> Vec<u8> {
        let em_len = em_bits.div_ceil(8);
        let m_hash = Sha384::digest(msg);
        let h = Sha384::new()
            .chain_update([0u8; 8])
            .chain_update(m_hash)
            .chain_update(salt)
            .finalize();
        let mut db = vec![0u8; em_len - HASH_LEN - 1];
        let sep = db.len() - salt.len() - 1;
        db[sep] = 0x01;
        db[sep + 1..].copy_from_slice(salt);
        tweak_db(&mut db);
        mgf1_sha384_xor(&h, &mut db);
        db[0] &= 0xff >> (8 * em_len - em_bits);
        let mut em = db;
        em.extend_from_slice(&h);
        em.push(0xbc);
        em
    }

    fn hash(msg: &[u8]) -> [u8; HASH_LEN] {
        Sha384::digest(msg).into()
    }

    /// `emsa_pss_verify` on a copy of `em`.
    fn pss_ok(msg: &[u8], em: &[u8]) -> bool {
        emsa_pss_verify(&hash(msg), &mut em.to_vec(), key().em_bits())
    }

    const MSG: &[u8] = b"token input";
    const SALT: [u8; SALT_LEN] = [0x5a; SALT_LEN];

    #[test]
    fn a_well_formed_encoding_verifies() {
        let em = encode(MSG, &SALT, key().em_bits(), |_| {});
        assert!(pss_ok(MSG, &em));
        assert!(!pss_ok(b"another message", &em));
        let sig = key().sign_raw(&em).unwrap();
        assert_eq!(key().verdicts(MSG, &sig), (true, true));
    }

    #[test]
    fn a_bad_trailer_is_refused() {
        let mut em = encode(MSG, &SALT, key().em_bits(), |_| {});
        *em.last_mut().unwrap() = 0xbb;
        assert!(!pss_ok(MSG, &em));
        let sig = key().sign_raw(&em).unwrap();
        assert_eq!(key().verdicts(MSG, &sig), (false, false));
    }

    #[test]
    fn a_set_top_bit_is_refused() {
        // Unmasking clears the bit anyway (step 9): only step 6 catches it.
        let mut em = encode(MSG, &SALT, key().em_bits(), |_| {});
        em[0] |= 0x80;
        assert!(!pss_ok(MSG, &em));
        if let Some(sig) = key().sign_raw(&em) {
            assert_eq!(key().verdicts(MSG, &sig), (false, false));
        }
    }

    #[test]
    fn a_salt_of_another_length_is_refused() {
        for len in [0, 32, 47, 49, 64] {
            let em = encode(MSG, &vec![0x5a; len], key().em_bits(), |_| {});
            assert!(!pss_ok(MSG, &em), "salt of {len} bytes");
            let sig = key().sign_raw(&em).unwrap();
            assert_eq!(
                key().verdicts(MSG, &sig),
                (false, false),
                "salt of {len} bytes"
            );
        }
    }

    #[test]
    fn a_nonzero_padding_or_separator_byte_is_refused() {
        let sep = 256 - HASH_LEN - 1 - SALT_LEN - 1;
        let spoilers: [(usize, u8); 4] = [(0, 0x01), (sep - 1, 0x80), (sep, 0x03), (sep, 0x01)];
        for (at, bits) in spoilers {
            let em = encode(MSG, &SALT, key().em_bits(), |db| db[at] ^= bits);
            assert!(!pss_ok(MSG, &em), "DB[{at}] ^= {bits:#04x}");
            let sig = key().sign_raw(&em).unwrap();
            assert_eq!(key().verdicts(MSG, &sig), (false, false));
        }
    }

    #[test]
    fn a_signature_of_the_wrong_length_is_refused() {
        let sig = key().sign(MSG);
        assert!(key().public.verify_pss_sha384(MSG, &sig).is_ok());
        for bad in [&[][..], &sig[1..], &sig[..255]] {
            assert!(key().public.verify_pss_sha384(MSG, bad).is_err());
        }
        let mut long = sig.clone();
        long.push(0);
        assert!(key().public.verify_pss_sha384(MSG, &long).is_err());
        let mut long = vec![0];
        long.extend_from_slice(&sig);
        assert!(key().public.verify_pss_sha384(MSG, &long).is_err());
    }

    #[test]
    fn a_signature_at_or_above_the_modulus_is_refused() {
        let n = key().public.n.clone();
        assert!(key().public.verify_pss_sha384(MSG, &n).is_err());
        assert!(key().public.verify_pss_sha384(MSG, &[0xff; 256]).is_err());
        // s + n is the same residue as a genuine s: only a range check
        // tells them apart (ours; OpenSSL's RSAVP1 has its own as well).
        // Find a signature small enough to add n to.
        let bn_n = BigNum::from_slice(&n).unwrap();
        let limit = {
            let mut two_to_k = BigNum::new().unwrap();
            two_to_k.set_bit(2048).unwrap();
            let mut limit = BigNum::new().unwrap();
            limit.checked_sub(&two_to_k, &bn_n).unwrap();
            limit
        };
        let (msg, sig) = (0u32..1000)
            .map(|i| i.to_be_bytes())
            .map(|msg| (msg, key().sign(&msg)))
            .find(|(_, sig)| BigNum::from_slice(sig).unwrap() < limit)
            .unwrap();
        let mut shifted = BigNum::new().unwrap();
        shifted
            .checked_add(&BigNum::from_slice(&sig).unwrap(), &bn_n)
            .unwrap();
        let shifted = shifted.to_vec_padded(256).unwrap();
        assert!(key().public.verify_pss_sha384(&msg, &sig).is_ok());
        assert!(key().public.verify_pss_sha384(&msg, &shifted).is_err());
    }

    #[test]
    fn a_modulus_of_2049_bits_verifies_with_em_one_octet_shorter() {
        // modBits = 1 mod 8: EM is k - 1 octets and RSAVP1's top octet must be 0.
        let key = TestKey::of_2049_bits();
        assert_eq!((key.public.mod_bits, key.public.n.len()), (2049, 257));
        let sig = key.sign(MSG);
        assert_eq!(key.verdicts(MSG, &sig), (true, true));
        let mut bad = sig.clone();
        bad[200] ^= 1;
        assert_eq!(key.verdicts(MSG, &bad), (false, false));
        let em = encode(MSG, &SALT, key.em_bits(), |_| {});
        assert_eq!(em.len(), 256);
        let sig = key.sign_raw(&em).unwrap();
        assert_eq!(key.verdicts(MSG, &sig), (true, true));
        // A good EM with a nonzero octet in front is not I2OSP(m, emLen).
        // Such an m is below n for some salts only: try until one is.
        let sig = (0..=255u8)
            .find_map(|salt| {
                let mut m = vec![0x01];
                m.extend_from_slice(&encode(MSG, &[salt; SALT_LEN], key.em_bits(), |_| {}));
                key.sign_raw(&m)
            })
            .unwrap();
        assert_eq!(key.verdicts(MSG, &sig), (false, false));
    }

    #[test]
    fn unusable_keys_are_refused() {
        let small = Rsa::generate(768).unwrap();
        assert!(FastPublicKey::from_components(&small.n().to_vec(), &small.e().to_vec()).is_err());
        assert!(FastPublicKey::from_components(&[0xff; 513], &[1, 0, 1]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Genuine signatures verify on both paths; one flipped bit in the
        /// message or the signature fails on both.
        #[test]
        fn agrees_with_evp_on_genuine_and_flipped_tokens(
            msg in proptest::collection::vec(any::<u8>(), MSG_LEN),
            flip in 0usize..((MSG_LEN + 256) * 8),
        ) {
            let mut msg = msg;
            let mut sig = key().sign(&msg);
            prop_assert_eq!(key().verdicts(&msg, &sig), (true, true));
            let (byte, bit) = (flip / 8, flip % 8);
            if byte < MSG_LEN {
                msg[byte] ^= 1 << bit;
            } else {
                sig[byte - MSG_LEN] ^= 1 << bit;
            }
            prop_assert_eq!(key().verdicts(&msg, &sig), (false, false));
        }

        /// A flipped bit inside the encoded message, signed again, reaches
        /// every check of EMSA-PSS-VERIFY; both paths agree on each.
        #[test]
        fn agrees_with_evp_on_spoiled_encodings(
            msg in proptest::collection::vec(any::<u8>(), MSG_LEN),
            salt in proptest::array::uniform32(any::<u8>()),
            flip in 0usize..(256 * 8),
        ) {
            let salt: Vec<u8> = salt.iter().chain(&salt[..16]).copied().collect();
            let mut em = encode(&msg, &salt, key().em_bits(), |_| {});
            em[flip / 8] ^= 1 << (flip % 8);
            if let Some(sig) = key().sign_raw(&em) {
                let (new, evp) = key().verdicts(&msg, &sig);
                prop_assert_eq!(new, evp);
                prop_assert!(!new);
            }
        }

        #[test]
        fn arbitrary_signatures_never_panic(sig in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (new, evp) = key().verdicts(MSG, &sig);
            prop_assert!(!new && !evp);
        }
    }
}
