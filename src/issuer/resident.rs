//! A resident's personal data and its validation. Personal data is a secret:
//! `Debug` is redacted, values are wiped on drop, and validation errors name
//! the field and the rule, never the value.

use time::Date;

/// Minimum age, in whole years on the enrolment date.
pub const MIN_AGE_YEARS: u8 = 14;

/// The type lives with the wire bodies, since the wallet sends it; the
/// rules for its fields are the issuer's and stay here.
pub use crate::protocol::api::PersonalData;

/// A rule a field broke. Carries the field name and the rule only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// The field, as named in the API.
    pub field: &'static str,
    /// The rule it broke, in words.
    pub rule: &'static str,
}

fn err(field: &'static str, rule: &'static str) -> FieldError {
    FieldError { field, rule }
}

fn plain_text(field: &'static str, value: &str, max_chars: usize) -> Result<(), FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(err(field, "is too long"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(err(field, "must not contain control characters"));
    }
    Ok(())
}

impl PersonalData {
    /// The document number reduced to its canonical form (uppercase letters
    /// and digits), so `ab 12-34` and `AB1234` are the same document.
    pub fn normalized_document(&self) -> String {
        self.document_number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_uppercase)
            .collect()
    }

    /// Checks every field; `today` is the enrolment date.
    pub fn validate(&self, today: Date, needs_employer: bool) -> Result<(), FieldError> {
        plain_text("full_name", &self.full_name, 200)?;
        plain_text("address", &self.address, 300)?;
        if self.date_of_birth > today {
            return Err(err("date_of_birth", "must not be in the future"));
        }
        if age_on(self.date_of_birth, today) < i32::from(MIN_AGE_YEARS) {
            return Err(err("date_of_birth", "resident must be 14 or older"));
        }
        let doc = self.normalized_document();
        if !(4..=20).contains(&doc.len()) || !doc.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err("document_number", "must be 4-20 letters and digits"));
        }
        let phone = self.phone.trim();
        let digits = phone.strip_prefix('+').unwrap_or("");
        if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(err("phone", "must be + followed by 8-15 digits"));
        }
        match (&self.employer_tax_number, needs_employer) {
            (Some(tax), _) => {
                let tax = tax.trim();
                if !(8..=15).contains(&tax.len()) || !tax.chars().all(|c| c.is_ascii_digit()) {
                    return Err(err("employer_tax_number", "must be 8-15 digits"));
                }
            }
            (None, true) => return Err(err("employer_tax_number", "is required for this class")),
            (None, false) => {}
        }
        Ok(())
    }
}

/// Whole years between `born` and `on`.
pub fn age_on(born: Date, on: Date) -> i32 {
    let mut age = on.year() - born.year();
    if (u8::from(on.month()), on.day()) < (u8::from(born.month()), born.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    pub(crate) fn sample() -> PersonalData {
        PersonalData {
            full_name: "Ivan Petrov".into(),
            date_of_birth: date!(1990 - 05 - 17),
            document_number: "45 12-345678".into(),
            address: "Tverskaya 1, Moscow".into(),
            phone: "+74951234567".into(),
            employer_tax_number: None,
        }
    }

    #[test]
    fn a_valid_resident_passes() {
        sample().validate(date!(2026 - 12 - 01), false).unwrap();
        assert_eq!(sample().normalized_document(), "4512345678");
    }

    #[test]
    fn fourteen_is_the_limit() {
        let mut p = sample();
        p.date_of_birth = date!(2012 - 12 - 01);
        p.validate(date!(2026 - 12 - 01), false).unwrap();
        p.date_of_birth = date!(2012 - 12 - 02);
        assert_eq!(
            p.validate(date!(2026 - 12 - 01), false).unwrap_err().field,
            "date_of_birth"
        );
    }

    #[test]
    fn errors_name_the_field_not_the_value() {
        let mut p = sample();
        p.phone = "call me maybe".into();
        let e = p.validate(date!(2026 - 12 - 01), false).unwrap_err();
        assert_eq!(e.field, "phone");
        assert!(!e.to_string().contains("maybe"));
        let e = sample().validate(date!(2026 - 12 - 01), true).unwrap_err();
        assert_eq!(e.field, "employer_tax_number");
        assert!(!format!("{:?}", sample()).contains("Ivan"));
    }
}
