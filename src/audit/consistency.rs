//! What the issuer sends its witnesses: the current signed checkpoint and
//! RFC 6962 consistency proofs from the sizes each witness holds.

use tlog_tiles::Hash;

use super::tlog::TlogError;
use super::{AuditError, Journal};

impl Journal {
    /// The size of the current tree and a freshly signed checkpoint of it,
    /// taken together.
    pub fn sized_checkpoint(&self) -> Result<(u64, Vec<u8>), AuditError> {
        let state = self.state();
        let size = state.tree.size();
        let note = self.signer.sign_checkpoint(size, state.tree.root(size)?)?;
        Ok((size, note))
    }

    /// An RFC 6962 consistency proof that the tree of `new` entries extends
    /// the tree of `old` entries. Empty when `old` is 0 or equals `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        let state = self.state();
        if old > new || new > state.tree.size() {
            return Err(TlogError::Tree("sizes outside the tree".into()).into());
        }
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        tlog_tiles::prove_tree(new, old, &state.tree)
            .map_err(|e| TlogError::Tree(e.to_string()).into())
    }
}

#[cfg(test)]
mod tests {
    use crate::audit::tlog::LogSigner;
    use crate::audit::{Event, Journal};
    use time::OffsetDateTime;

    #[test]
    fn proofs_verify_between_every_pair_of_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(
            &dir.path().join("e.log"),
            LogSigner::new("test/audit", &[1; 32]),
        )
        .unwrap();
        let mut roots = vec![];
        for version in 0..9 {
            journal
                .append(OffsetDateTime::UNIX_EPOCH, Event::MasterRotated { version })
                .unwrap();
            let (size, note) = journal.sized_checkpoint().unwrap();
            let cp = crate::audit::tlog::verify_checkpoint(&note, &journal.verifier_key()).unwrap();
            assert_eq!(cp.size(), size);
            roots.push(*cp.hash());
        }
        for old in 1..=9u64 {
            for new in old..=9u64 {
                let proof = journal.consistency_proof(old, new).unwrap();
                let (o, n) = (roots[old as usize - 1], roots[new as usize - 1]);
                assert!(tlog_tiles::check_tree(&proof, new, n, old, o).is_ok());
                if old < new {
                    // The proof binds both roots.
                    assert!(tlog_tiles::check_tree(&proof, new, o, old, o).is_err());
                }
            }
        }
        assert!(journal.consistency_proof(0, 9).unwrap().is_empty());
        assert!(journal.consistency_proof(5, 4).is_err());
        assert!(journal.consistency_proof(5, 10).is_err());
    }
}
