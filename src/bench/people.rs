//! Synthetic residents: plausible, valid and unique personal data that is
//! obviously not anyone's (`Bench Resident 17`, document `B<run><n>`), and
//! the HTTP bodies to enrol and log them in.

use time::macros::date;

use blindpass::protocol::api::{Enrolment, Login, PersonalData};

/// The password every synthetic resident uses (not a secret: it protects
/// generated data in a throwaway data directory).
const PASSWORD: &str = "bench-password-not-secret";

/// The synthetic password, for residents enrolled in-process.
pub(crate) fn password() -> blindpass::crypto::secret::Passphrase {
    blindpass::crypto::secret::Passphrase::new(PASSWORD.to_owned())
}

/// The `n`th resident of run `tag`: a document number unique per run
/// (`B` + 6 hex digits + 7 digits, within the 4-20 character rule).
pub(crate) fn personal(tag: &str, n: usize) -> PersonalData {
    PersonalData {
        full_name: format!("Bench Resident {n}"),
        date_of_birth: date!(1980 - 01 - 01),
        document_number: document(tag, n),
        address: format!("{n} Benchmark Street"),
        phone: format!("+7495{:07}", n % 10_000_000),
        employer_tax_number: None,
    }
}

fn document(tag: &str, n: usize) -> String {
    format!("B{tag}{:07}", n % 10_000_000)
}

/// `POST /v1/residents` body.
pub(crate) fn enrol_body(tag: &str, n: usize) -> Vec<u8> {
    json(&Enrolment::new(&personal(tag, n), PASSWORD))
}

/// `POST /v1/sessions` body.
pub(crate) fn login_body(tag: &str, n: usize) -> Vec<u8> {
    json(&Login {
        document_number: document(tag, n),
        password: PASSWORD.to_owned(),
    })
}

/// A body as JSON. Structs of strings always serialise; should one ever
/// not, the empty body is refused by the server and counted as a failure.
fn json(body: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_residents_are_valid_and_distinct() {
        let today = date!(2026 - 12 - 01);
        for n in [0, 1, 9_999_999, 12_345] {
            personal("A1B2C3", n).validate(today, false).unwrap();
        }
        assert_ne!(
            personal("A1B2C3", 1).normalized_document(),
            personal("A1B2C3", 2).normalized_document()
        );
        let body: serde_json::Value = serde_json::from_slice(&enrol_body("A1B2C3", 5)).unwrap();
        assert_eq!(body["document_number"], "BA1B2C30000005");
        assert_eq!(body["date_of_birth"], "1980-01-01");
        assert_eq!(body["password"], PASSWORD);
        let body: serde_json::Value = serde_json::from_slice(&login_body("A1B2C3", 5)).unwrap();
        assert_eq!(body["document_number"], "BA1B2C30000005");
    }
}
