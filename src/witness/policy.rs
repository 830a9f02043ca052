//! A witness policy: which witnesses a client trusts and how many of them
//! must have cosigned a checkpoint before the client accepts it. One file
//! serves a whole city: the issuer reads the URLs to collect cosignatures,
//! clients read the keys and the quorum.
//!
//! ```text
//! # blindpass witness policy
//! witness <cosignature/v1 verifier key> [<submission URL>]
//! witness …
//! quorum 2
//! ```
//!
//! Blank lines and lines starting with `#` are ignored. The quorum must be
//! at least 1 and at most the number of witnesses; a key may appear once.

use std::collections::BTreeSet;

use signed_note::{Note, Verifier as _};

use super::cosignature::CosignatureVerifier;

/// One witness of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its verifier key, as written.
    pub vkey: String,
    /// The key, parsed.
    pub verifier: CosignatureVerifier,
    /// Where the issuer submits checkpoints (`<url>/add-checkpoint`).
    pub url: Option<String>,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    witnesses: Vec<PolicyWitness>,
    quorum: usize,
}

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("witness policy line {line}: {reason}")]
pub struct PolicyError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A checkpoint that lacks a quorum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// The checkpoint is not a signed note.
    #[error("the checkpoint is not a signed note")]
    Malformed,
    /// Too few policy witnesses cosigned it validly.
    #[error(
        "the checkpoint carries valid cosignatures from {valid} of the policy's {witnesses} witnesses; {quorum} are required"
    )]
    NotEnough {
        /// Distinct policy witnesses with a valid cosignature.
        valid: usize,
        /// The policy's quorum.
        quorum: usize,
        /// Witnesses in the policy.
        witnesses: usize,
    },
}

/// A checkpoint's verified quorum: which policy witnesses cosigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// Names of the witnesses whose cosignature verified.
    pub cosigned_by: Vec<String>,
}

impl WitnessPolicy {
    /// Parses a policy file's text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut quorum = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |reason: String| PolicyError { line, reason };
            let words: Vec<&str> = raw.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["witness", vkey, rest @ ..] if rest.len() <= 1 => {
                    let verifier =
                        CosignatureVerifier::new(vkey).map_err(|e| err(e.to_string()))?;
                    if witnesses
                        .iter()
                        .any(|w| w.verifier.name() == verifier.name() || w.vkey == *vkey)
                    {
                        return Err(err(format!("witness {} is listed twice", verifier.name())));
                    }
                    let url = rest.first().map(|u| u.trim_end_matches('/').to_owned());
                    if let Some(url) = &url {
                        if !(url.starts_with("http://") || url.starts_with("https://")) {
                            return Err(err(format!("{url} is not an http(s) URL")));
                        }
                    }
                    witnesses.push(PolicyWitness {
                        vkey: (*vkey).to_owned(),
                        verifier,
                        url,
                    });
                }
                ["quorum", n] => {
                    if quorum.is_some() {
                        return Err(err("quorum is given twice".into()));
                    }
                    quorum = Some(
                        n.parse::<usize>()
                            .map_err(|_| err(format!("quorum {n} is not a number")))?,
                    );
                }
                _ => {
                    return Err(err(
                        "expected `witness <vkey> [<url>]`, `quorum <n>` or a # comment".into(),
                    ));
                }
            }
        }
        let whole = |reason: &str| PolicyError {
            line: 0,
            reason: reason.to_owned(),
        };
        let quorum = quorum.ok_or_else(|| whole("no `quorum <n>` line"))?;
        if quorum == 0 || quorum > witnesses.len() {
            return Err(whole(&format!(
                "quorum {quorum} must be between 1 and the {} witnesses listed",
                witnesses.len()
            )));
        }
        Ok(Self { witnesses, quorum })
    }

    /// The witnesses.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// How many must cosign.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Counts the distinct policy witnesses whose cosignature on `note`
    /// verifies, and refuses the note if they are fewer than the quorum.
    /// Signatures by other keys, and bad cosignatures, are ignored (a bad
    /// one is no worse than a missing one: anybody can append a line).
    pub fn check(&self, note: &[u8]) -> Result<Quorum, QuorumError> {
        let note = Note::from_bytes(note).map_err(|_| QuorumError::Malformed)?;
        let mut cosigned_by = BTreeSet::new();
        for signature in note_signatures(&note) {
            for w in &self.witnesses {
                if w.verifier.name() == signature.name()
                    && w.verifier.key_id() == signature.id()
                    && w.verifier.verify(note.text(), signature.signature())
                {
                    cosigned_by.insert(w.verifier.name().to_owned());
                }
            }
        }
        if cosigned_by.len() < self.quorum {
            return Err(QuorumError::NotEnough {
                valid: cosigned_by.len(),
                quorum: self.quorum,
                witnesses: self.witnesses.len(),
            });
        }
        Ok(Quorum {
            cosigned_by: cosigned_by.into_iter().collect(),
        })
    }
}

/// The signature lines of a parsed note. `signed_note` 0.2 keeps them
/// private, so they are read back from its canonical encoding.
fn note_signatures(note: &Note) -> Vec<signed_note::Signature> {
    let bytes = note.to_bytes();
    let sigs = &bytes[note.text().len() + 1..];
    sigs.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| signed_note::Signature::from_bytes(line).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::witness::CosignatureSigner;

    fn signers() -> Vec<CosignatureSigner> {
        (1..=3)
            .map(|i| CosignatureSigner::new(&format!("w{i}.test"), &[i; 32]).unwrap())
            .collect()
    }

    fn policy_text(signers: &[CosignatureSigner], quorum: usize) -> String {
        let mut text = String::from("# three witnesses\n\n");
        for (i, s) in signers.iter().enumerate() {
            text.push_str(&format!(
                "witness {} http://127.0.0.1:{}/\n",
                s.verifier_key(),
                9000 + i
            ));
        }
        text.push_str(&format!("quorum {quorum}\n"));
        text
    }

    #[test]
    fn policies_parse_and_bad_ones_name_their_line() {
        let s = signers();
        let policy = WitnessPolicy::parse(&policy_text(&s, 2)).unwrap();
        assert_eq!((policy.witnesses().len(), policy.quorum()), (3, 2));
        assert_eq!(
            policy.witnesses()[0].url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        for (text, line) in [
            (policy_text(&s, 0), 0),
            (policy_text(&s, 4), 0),
            (policy_text(&s, 2).replace("quorum 2", ""), 0),
            (format!("{}quorum 1\n", policy_text(&s, 2)), 7),
            (
                format!("witness {}\n{}", s[0].verifier_key(), policy_text(&s, 2)),
                4,
            ),
            ("witness nope\nquorum 1\n".to_owned(), 1),
            ("witnesses\n".to_owned(), 1),
        ] {
            let err = WitnessPolicy::parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{err}");
        }
    }

    #[test]
    fn a_quorum_counts_distinct_valid_cosignatures_only() {
        let s = signers();
        let policy = WitnessPolicy::parse(&policy_text(&s, 2)).unwrap();
        let log = crate::audit::tlog::LogSigner::new("log.test/audit", &[5; 32]);
        let note = log
            .sign_checkpoint(1, tlog_tiles::record_hash(b"x"))
            .unwrap();
        let text = Note::from_bytes(&note).unwrap().text().to_vec();
        let with = |lines: &[Vec<u8>]| {
            let mut n = note.clone();
            for l in lines {
                n.extend_from_slice(l);
            }
            n
        };
        assert!(matches!(
            policy.check(&note),
            Err(QuorumError::NotEnough {
                valid: 0,
                quorum: 2,
                witnesses: 3
            })
        ));
        let one = s[0].signature_line(&text, 100);
        // The same witness twice is still one.
        let again = s[0].signature_line(&text, 101);
        assert!(matches!(
            policy.check(&with(&[one.clone(), again])),
            Err(QuorumError::NotEnough { valid: 1, .. })
        ));
        // A cosignature of another checkpoint does not count.
        let other = s[1].signature_line(b"log.test/audit\n2\nAAAA\n", 100);
        assert!(matches!(
            policy.check(&with(&[one.clone(), other])),
            Err(QuorumError::NotEnough { valid: 1, .. })
        ));
        // A witness outside the policy does not count.
        let outsider = CosignatureSigner::new("w2.test", &[42; 32]).unwrap();
        assert!(
            policy
                .check(&with(&[one.clone(), outsider.signature_line(&text, 100)]))
                .is_err()
        );
        let two = s[2].signature_line(&text, 100);
        let quorum = policy.check(&with(&[one, two])).unwrap();
        assert_eq!(quorum.cosigned_by, vec!["w1.test", "w3.test"]);
    }
}
