//! Email over SMTP with `lettre`: STARTTLS (required), implicit TLS or, for a
//! relay on the same host and for tests, a plain connection; with or without
//! authentication. One async transport, a connection per message (the volume is
//! codes and notices, and no pool task outlives a runtime); each message is a
//! plain-text UTF-8 email.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::DeliveryError;
use crate::config::{SmtpSecurity, SmtpSettings};

/// Sends emails through the configured relay.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Builds the transport (no connection is made until the first message).
    pub fn new(s: &SmtpSettings) -> anyhow::Result<Mailer> {
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("[integrations.smtp] from {:?}: {e}", s.from))?;
        let mut builder = match s.security {
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?,
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        };
        let port = s.port.unwrap_or(match s.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        builder = builder.port(port).timeout(Some(Duration::from_secs(20)));
        if let Some(user) = &s.username {
            let password = s.password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one email. Permanent errors (a refused address) are not retried.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), DeliveryError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("bad address: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| DeliveryError::Permanent(format!("building the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(e.to_string())),
            Err(e) => Err(DeliveryError::Retry(e.to_string())),
        }
    }
}
