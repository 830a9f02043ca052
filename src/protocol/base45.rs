//! Base45 (RFC 9285), table-driven. Two bytes become three characters of
//! the QR alphanumeric alphabet, least significant first; a last odd byte
//! becomes two. Decoding is strict: a character outside the alphabet, a
//! trailing group of one character, a group of three worth more than 65535
//! or a last group of two worth more than 255 is refused, as the RFC says.

use super::ProtocolError;

/// The 45 characters, by value.
const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Marks a byte that is not in the alphabet in [`VALUES`].
const INVALID: u8 = 0xff;

/// Set in [`INVALID`] and in no value below 45: OR-ing a group's values and
/// testing this bit checks every character of the group at once.
const INVALID_BIT: u8 = 0x80;

/// The value of each byte, or [`INVALID`].
const VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Encodes bytes as base45 text.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() / 2 * 3 + 2);
    let char_of = |v: u32| char::from(ALPHABET[(v % 45) as usize]);
    let mut pairs = bytes.chunks_exact(2);
    for pair in &mut pairs {
        let n = u32::from(pair[0]) << 8 | u32::from(pair[1]);
        out.extend([char_of(n), char_of(n / 45), char_of(n / (45 * 45))]);
    }
    if let [last] = pairs.remainder() {
        let n = u32::from(*last);
        out.extend([char_of(n), char_of(n / 45)]);
    }
    out
}

/// Decodes base45 text strictly; any defect is [`ProtocolError::BadEncoding`].
pub fn decode(text: &str) -> Result<Vec<u8>, ProtocolError> {
    let text = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() / 3 * 2 + 1);
    let mut groups = text.chunks_exact(3);
    for group in &mut groups {
        let [c, d, e] = [0, 1, 2].map(|i| VALUES[usize::from(group[i])]);
        if (c | d | e) & INVALID_BIT != 0 {
            return Err(ProtocolError::BadEncoding);
        }
        let n = u32::from(c) + u32::from(d) * 45 + u32::from(e) * (45 * 45);
        let n = u16::try_from(n).map_err(|_| ProtocolError::BadEncoding)?;
        out.extend(n.to_be_bytes());
    }
    match *groups.remainder() {
        [] => {}
        [c, d] => {
            let (c, d) = (VALUES[usize::from(c)], VALUES[usize::from(d)]);
            if (c | d) & INVALID_BIT != 0 {
                return Err(ProtocolError::BadEncoding);
            }
            let n = u32::from(c) + u32::from(d) * 45;
            out.push(u8::try_from(n).map_err(|_| ProtocolError::BadEncoding)?);
        }
        _ => return Err(ProtocolError::BadEncoding),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_9285_examples() {
        assert_eq!(encode(b"AB"), "BB8");
        assert_eq!(encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(decode("QED8WEX0").unwrap(), b"ietf!");
        assert_eq!(encode(b""), "");
        assert_eq!(decode("").unwrap(), b"");
    }

    #[test]
    fn the_edges_of_each_range() {
        // 65535 = 30 + 36·45 + 32·2025 is "FGW"; 65536 is "GGW".
        assert_eq!(decode("FGW").unwrap(), [0xff, 0xff]);
        assert_eq!(decode("GGW"), Err(ProtocolError::BadEncoding));
        assert_eq!(decode(":::"), Err(ProtocolError::BadEncoding));
        // 255 = 30 + 5·45 is "U5"; 256 is "V5".
        assert_eq!(decode("U5").unwrap(), [0xff]);
        assert_eq!(decode("V5"), Err(ProtocolError::BadEncoding));
        assert_eq!(decode("00::"), Err(ProtocolError::BadEncoding));
    }

    #[test]
    fn defects_are_refused() {
        // "=0" would be worth 255 if the marker of a bad character were
        // taken for a value.
        for bad in [
            "A", "BB8A", "bb8", "BB8\n", "BB=", "BB8é", "\u{0}00", "0", "=0", "BB8=0",
        ] {
            assert_eq!(decode(bad), Err(ProtocolError::BadEncoding), "{bad:?}");
        }
    }

    /// Whether the last group is two characters of the alphabet worth more
    /// than 255: the one case where the `base45` crate (which keeps the low
    /// byte) and RFC 9285 part ways.
    fn last_pair_out_of_range(text: &str) -> bool {
        let bytes = text.as_bytes();
        match (bytes.len() % 3, bytes) {
            (2, [.., c, d]) => {
                let (c, d) = (VALUES[usize::from(*c)], VALUES[usize::from(*d)]);
                (c | d) & INVALID_BIT == 0 && u32::from(c) + u32::from(d) * 45 > 255
            }
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn round_trips_and_matches_the_crate(bytes: Vec<u8>) {
            let text = encode(&bytes);
            prop_assert_eq!(&text, &::base45::encode(&bytes));
            prop_assert_eq!(decode(&text).unwrap(), bytes);
        }

        #[test]
        fn agrees_with_the_crate_on_arbitrary_text(
            text in prop_oneof![
                any::<String>(),
                "[0-9A-Z $%*+./:-]{0,40}",
                "[0-9A-Z $%*+./:a-z=-]{0,40}",
            ]
        ) {
            let ours = decode(&text).ok();
            let theirs = ::base45::decode(&text).ok();
            if last_pair_out_of_range(&text) {
                // Refused here; the crate refuses it only for a defect before
                // the last pair, which both read alike.
                prop_assert!(ours.is_none());
                let head = &text[..text.len() - 2];
                let head_ours = decode(head).ok();
                prop_assert_eq!(&head_ours, &::base45::decode(head).ok());
                prop_assert_eq!(theirs.is_some(), head_ours.is_some());
            } else {
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
