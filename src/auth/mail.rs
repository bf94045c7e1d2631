//! Outgoing email (verification and password reset). With `PLINTH_SMTP_URL` set, mail
//! goes out through SMTP (lettre); without it, the message and its link are logged at
//! info level so local development needs no mail server.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub enum Mailer {
    Log,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The action link, repeated as a structured log field in log mode.
    pub link: String,
}

impl Mailer {
    /// `url` as lettre understands it: `smtp://host:port`, `smtps://user:pass@host`,
    /// `smtp://host?tls=required`.
    pub fn new(url: Option<&str>, from: &str) -> anyhow::Result<Mailer> {
        let Some(url) = url else {
            return Ok(Mailer::Log);
        };
        // The error names the setting, never the URL (it may hold a password).
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("invalid PLINTH_SMTP_URL: {e}"))?
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid PLINTH_SMTP_FROM: {e}"))?;
        Ok(Mailer::Smtp { transport, from })
    }

    pub async fn send(&self, email: Email) {
        match self {
            Mailer::Log => {
                tracing::info!(
                    to = %email.to,
                    subject = %email.subject,
                    link = %email.link,
                    "email (not sent: PLINTH_SMTP_URL is not set)"
                );
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = match email.to.parse() {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot address email");
                        return;
                    }
                };
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(email.subject)
                    .body(email.body);
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot build email");
                        return;
                    }
                };
                match transport.send(message).await {
                    Ok(_) => tracing::info!(to = %email.to, "email sent"),
                    Err(e) => tracing::warn!(error = %e, to = %email.to, "email not sent"),
                }
            }
        }
    }
}
