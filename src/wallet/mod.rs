//! The resident's wallet: enrolment, login, blinding, token storage.
