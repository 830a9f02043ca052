//! Identifiers. All are random, so none carries personal data; all print as
//! lowercase hex.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name([u8; $len]);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                let mut bytes = [0u8; $len];
                rand::fill(&mut bytes);
                Self(bytes)
            }

            /// The id's bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses the hex form.
            pub fn parse(text: &str) -> Option<Self> {
                let bytes = hex::decode(text).ok()?;
                Some(Self(bytes.try_into().ok()?))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value).ok_or_else(|| format!("not a {}", stringify!($name)))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.to_string()
            }
        }
    };
}

random_id!(
    /// An isolation period.
    PeriodId,
    16
);
random_id!(
    /// An enrolled resident (and their sealed record) within a period.
    ResidentId,
    16
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = PeriodId::generate();
        assert_eq!(PeriodId::parse(&id.to_string()), Some(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<PeriodId>(&json).unwrap(), id);
        assert!(PeriodId::parse("zz").is_none());
        assert_ne!(ResidentId::generate(), ResidentId::generate());
    }
}
