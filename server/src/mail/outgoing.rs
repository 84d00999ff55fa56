//! The email a transport sends: the parts the worker rendered from the
//! templates, with its addresses and identifiers, and no MIME yet. Every
//! transport takes this; those that speak SMTP (and the file transport,
//! which writes what SMTP would send) build the MIME message from it here,
//! DKIM-signed when a signer is configured. A transport for an HTTP
//! provider would send the same parts as its API's fields instead.

use lettre::Message;
use lettre::message::dkim::DkimConfig;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

use super::SendError;

/// One email, rendered and addressed, as every transport receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The outbox row's id: names the file of the file transport and the
    /// email in log lines.
    pub id: String,
    /// The From mailbox; its address is the envelope sender.
    pub from: Mailbox,
    /// The one recipient; its address is the envelope recipient.
    pub to: Mailbox,
    /// The stable Message-ID (`<...>`), the same on every attempt.
    pub message_id: String,
    /// A key a provider can deduplicate retries of this email on: the same
    /// on every attempt of the email, different for every email.
    pub idempotency_key: String,
    /// The subject line.
    pub subject: String,
    /// The plain text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// Headers added after the standard ones, as `(name, value)`, in order.
    pub headers: Vec<(String, String)>,
    /// The template's name (`applicant_approved`...), which HTTP providers
    /// get as a tag; no personal data.
    pub template: Option<String>,
}

impl OutgoingEmail {
    /// The MIME message (headers, then a multipart/alternative of the text
    /// and HTML parts), DKIM-signed with `dkim` when given. A message that
    /// cannot be built is a permanent failure: its parts will not change.
    pub fn to_message(&self, dkim: Option<&DkimConfig>) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(self.to.clone())
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone()));
        for (name, value) in &self.headers {
            let header_name = HeaderName::new_from_ascii(name.clone()).map_err(|error| {
                SendError::Permanent(format!("invalid header name {name:?}: {error}"))
            })?;
            builder = builder.raw_header(HeaderValue::new(header_name, value.clone()));
        }
        let mut message = builder
            .multipart(MultiPart::alternative_plain_html(
                self.text.clone(),
                self.html.clone(),
            ))
            .map_err(|error| {
                SendError::Permanent(format!("could not build the message: {error}"))
            })?;
        if let Some(dkim) = dkim {
            message.sign(dkim);
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            id: "0190".to_owned(),
            from: "Sesame <sesame@localhost>".parse().unwrap(),
            to: "ada@example.com".parse().unwrap(),
            message_id: "<0190@sesame>".to_owned(),
            idempotency_key: "0190".to_owned(),
            subject: "Your request".to_owned(),
            text: "Hello".to_owned(),
            html: "<p>Hello</p>".to_owned(),
            headers: Vec::new(),
            template: None,
        }
    }

    #[test]
    fn the_message_carries_every_part() {
        let formatted = String::from_utf8(email().to_message(None).unwrap().formatted()).unwrap();
        for expected in [
            "From: Sesame <sesame@localhost>\r\n",
            "To: ada@example.com\r\n",
            "Subject: Your request\r\n",
            "Message-ID: <0190@sesame>\r\n",
            "multipart/alternative",
            "Hello",
            "<p>Hello</p>",
        ] {
            assert!(formatted.contains(expected), "{expected} in {formatted}");
        }
    }

    #[test]
    fn extra_headers_follow_the_standard_ones_and_bad_names_are_permanent() {
        let mut with_header = email();
        with_header.headers = vec![("X-Sesame-Kind".to_owned(), "received".to_owned())];
        let formatted =
            String::from_utf8(with_header.to_message(None).unwrap().formatted()).unwrap();
        assert!(
            formatted.contains("X-Sesame-Kind: received\r\n"),
            "{formatted}"
        );
        with_header.headers = vec![("Bad Name".to_owned(), "x".to_owned())];
        assert!(matches!(
            with_header.to_message(None),
            Err(SendError::Permanent(_))
        ));
    }
}
