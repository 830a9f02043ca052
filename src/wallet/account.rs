//! The resident's account on the issuer: enrol, log in, log out, erase.
//! Passwords travel in bodies that are wiped on drop.

use super::{Enrolled, Session, SessionToken, Wallet, WalletError};
use crate::client::{Client, ClientError};
use crate::crypto::secret::Passphrase;
use crate::protocol::api::{Enrolment, Login, NewSession, PersonalData, paths};

impl Wallet {
    fn remember_server(&mut self, api: &Client) {
        if self.state.server != api.base_url() {
            self.state.server = api.base_url().to_owned();
        }
    }

    /// `POST /v1/residents`: enrols into the current isolation period.
    /// Records the resident and period ids; does not log in.
    pub fn enrol(
        &mut self,
        api: &Client,
        data: &PersonalData,
        password: &Passphrase,
    ) -> Result<Enrolled, WalletError> {
        let body = Enrolment::new(data, password_text(password)?);
        let enrolled: Enrolled = api.post_json(paths::RESIDENTS, &body, None, 201)?;
        self.remember_server(api);
        self.state.resident_id = Some(enrolled.resident_id.clone());
        self.state.period_id = Some(enrolled.period_id.clone());
        self.save()?;
        Ok(enrolled)
    }

    /// `POST /v1/sessions`: logs in and keeps the session token.
    pub fn login(
        &mut self,
        api: &Client,
        document_number: &str,
        password: &Passphrase,
    ) -> Result<&Session, WalletError> {
        let body = Login {
            document_number: document_number.to_owned(),
            password: password_text(password)?.to_owned(),
        };
        let mut answer: NewSession = api.post_json(paths::SESSIONS, &body, None, 201)?;
        let token = SessionToken::new(std::mem::take(&mut answer.session_token));
        self.remember_server(api);
        self.state.session = Some(Session {
            token,
            expires_at: answer.expires_at,
        });
        self.save()?;
        self.state.session.as_ref().ok_or(WalletError::NotLoggedIn)
    }

    /// `DELETE /v1/sessions`: ends the session on the server, then forgets
    /// it. A session the server no longer knows is forgotten too.
    pub fn logout(&mut self, api: &Client) -> Result<(), WalletError> {
        let session = self
            .state
            .session
            .as_ref()
            .ok_or(WalletError::NotLoggedIn)?;
        match api.delete(paths::SESSIONS, session.token.expose_secret()) {
            Ok(()) => {}
            Err(ClientError::Problem(p)) if p.status == 401 => {}
            Err(e) => return Err(e.into()),
        }
        self.state.session = None;
        self.save()
    }

    /// `DELETE /v1/residents/me`: erases the enrolment on the server now.
    /// The session and ids are forgotten; passes already obtained stay
    /// (they do not name the resident and remain valid in their windows).
    pub fn erase(&mut self, api: &Client) -> Result<(), WalletError> {
        let token = self.session()?.token.clone();
        let result = api
            .delete(paths::RESIDENT_ME, token.expose_secret())
            .map_err(WalletError::from);
        self.forget_dead_session(&result)?;
        result?;
        self.state.session = None;
        self.state.resident_id = None;
        self.state.period_id = None;
        self.save()
    }

    /// The session, if logged in. Its expiry is not checked against the
    /// local clock, which may be off: the server decides, and a `401` makes
    /// the wallet forget the session.
    pub fn session(&self) -> Result<&Session, WalletError> {
        self.state.session.as_ref().ok_or(WalletError::NotLoggedIn)
    }

    /// A `401` means the server no longer honours the session: drop it so
    /// the next command says "log in" instead of failing the same way.
    pub(super) fn forget_dead_session<T>(
        &mut self,
        result: &Result<T, WalletError>,
    ) -> Result<(), WalletError> {
        if let Err(WalletError::Problem(p)) = result {
            if p.status == 401 {
                self.state.session = None;
                self.save()?;
            }
        }
        Ok(())
    }
}

fn password_text(password: &Passphrase) -> Result<&str, WalletError> {
    std::str::from_utf8(password.expose_secret())
        .map_err(|_| WalletError::Input("the password is not valid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn enrolment_body_has_the_documented_shape() {
        let data = PersonalData {
            full_name: "Ivan Petrov".into(),
            date_of_birth: date!(1990 - 05 - 17),
            document_number: "4512 345678".into(),
            address: "Tverskaya 1".into(),
            phone: "+74951234567".into(),
            employer_tax_number: None,
        };
        let body = serde_json::to_vec(&Enrolment::new(&data, "long enough pw")).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["date_of_birth"], "1990-05-17");
        assert_eq!(json["password"], "long enough pw");
        assert!(json.get("employer_tax_number").is_none());
        assert_eq!(json.as_object().unwrap().len(), 6);
    }
}
