//! Email through the configured SMTP server: the transport the stored settings describe, the
//! connection check, sending a message, and what each SMTP failure reads as.

use super::first_line;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest an email hand-over may take.
pub const SMTP_SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an SMTP check may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// An SMTP transport built from stored settings, and where it connects.
pub struct SmtpTarget {
    /// The transport (authenticates when a username is set).
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Builds the transport the stored SMTP settings describe; `Err` is a plain-words clause
/// naming the setting at fault.
pub fn smtp_transport(
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
    timeout: Duration,
) -> Result<SmtpTarget, String> {
    let host = settings.get("host").cloned().unwrap_or_default();
    let port: u16 = settings
        .get("port")
        .and_then(|p| p.parse().ok())
        .ok_or("the SMTP port is not a number")?;
    let builder = match settings
        .get("tls")
        .map(String::as_str)
        .unwrap_or("starttls")
    {
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
            .map_err(|_| "the SMTP host cannot be used for TLS".to_string())?,
        _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
            .map_err(|_| "the SMTP host cannot be used for STARTTLS".to_string())?,
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    let username = settings.get("username").cloned().unwrap_or_default();
    if !username.is_empty() {
        let password = password
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(username, password));
    }
    Ok(SmtpTarget {
        transport: builder.build(),
        host,
        port,
    })
}

/// Connects to the SMTP server with the stored settings, authenticates when a username is
/// set, and quits. `Err` carries a plain-words reason for the operator.
pub async fn check_smtp(
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
) -> Result<String, String> {
    let SmtpTarget {
        transport,
        host,
        port,
    } = smtp_transport(settings, password, SMTP_TIMEOUT).map_err(|problem| {
        format!(
            "{}; correct it on the Credentials page.",
            sentence(&problem)
        )
    })?;
    match transport.test_connection().await {
        Ok(true) => Ok(format!(
            "Connected to {host}:{port}{}, and the server answered.",
            if settings.get("username").is_some_and(|u| !u.is_empty()) {
                " and signed in"
            } else {
                ""
            }
        )),
        Ok(false) => Err(format!(
            "{host}:{port} accepted the connection but did not answer as a mail server."
        )),
        Err(error) => Err(SmtpFailure::of(&error).check_reason(&host, port)),
    }
}

fn sentence(clause: &str) -> String {
    let mut chars = clause.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// What went wrong with an SMTP exchange, told apart once for the check and the send.
enum SmtpFailure {
    /// The server refused the username or password.
    SignInRefused,
    /// No answer in time.
    Timeout,
    /// The TLS handshake failed.
    Tls,
    /// A permanent refusal (5xx) other than the sign-in, by its reply code. The server's
    /// text is never kept: it often quotes the recipient's address.
    Permanent(Option<String>),
    /// A transient refusal (4xx), by its reply code.
    Transient(Option<String>),
    /// No connection, or it broke off.
    Unreachable,
}

impl SmtpFailure {
    fn of(error: &lettre::transport::smtp::Error) -> Self {
        let text = error.to_string();
        if text.contains("535") || (error.is_permanent() && text.to_lowercase().contains("auth")) {
            SmtpFailure::SignInRefused
        } else if error.is_timeout() {
            SmtpFailure::Timeout
        } else if error.is_tls() {
            SmtpFailure::Tls
        } else if error.is_permanent() {
            SmtpFailure::Permanent(error.status().map(|code| code.to_string()))
        } else if error.is_transient() {
            SmtpFailure::Transient(error.status().map(|code| code.to_string()))
        } else {
            SmtpFailure::Unreachable
        }
    }

    /// A refusal's reply code and class, e.g. `SMTP reply 550, permanent failure`: all that
    /// is kept of it (the server's own words may quote the recipient's address).
    fn reply(&self) -> String {
        let (code, class) = match self {
            SmtpFailure::Permanent(code) => (code, "permanent failure"),
            SmtpFailure::Transient(code) => (code, "temporary failure"),
            _ => return String::new(),
        };
        match code {
            Some(code) => format!("SMTP reply {code}, {class}"),
            None => format!("SMTP {class}"),
        }
    }

    /// The connection check's sentence, naming the server.
    fn check_reason(&self, host: &str, port: u16) -> String {
        match self {
            SmtpFailure::SignInRefused => format!(
                "{host}:{port} refused the username or password; an admin must correct them on the Credentials page."
            ),
            SmtpFailure::Timeout => format!(
                "{host}:{port} did not answer within {} seconds.",
                SMTP_TIMEOUT.as_secs()
            ),
            SmtpFailure::Tls => format!(
                "The TLS handshake with {host}:{port} failed; check the TLS mode and port (STARTTLS is usually 587, TLS 465)."
            ),
            SmtpFailure::Permanent(_) | SmtpFailure::Transient(_) => {
                format!("{host}:{port} refused the session ({}).", self.reply())
            }
            SmtpFailure::Unreachable => format!(
                "KYC Desk could not connect to {host}:{port} (it may be down, or the host or port may be wrong)."
            ),
        }
    }

    /// A send's clause (it completes "Sending by email to … failed: …").
    fn send_reason(&self) -> String {
        match self {
            SmtpFailure::SignInRefused => "the mail server refused KYC Desk's username or password (an admin must correct them on the Credentials page)".into(),
            SmtpFailure::Timeout => "the mail server did not answer in time".into(),
            SmtpFailure::Tls => {
                "the secure connection to the mail server failed (check the TLS mode and port)".into()
            }
            SmtpFailure::Permanent(_) => {
                format!("the mail server refused the message ({})", self.reply())
            }
            SmtpFailure::Transient(_) => {
                format!("the mail server is busy; try again ({})", self.reply())
            }
            SmtpFailure::Unreachable => "KYC Desk could not connect to the mail server, or the connection broke off (it may be down)".into(),
        }
    }
}

/// One email to hand over: who it goes to and what it says.
pub struct Email<'a> {
    /// The recipient's address.
    pub to: &'a str,
    /// The recipient's name (shown in the To header).
    pub name: &'a str,
    /// One-line subject.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// Sends `email` through the SMTP server the stored settings describe, from their
/// `from_address` (with their `reply_to`). `Ok` carries the server's answer line (a message
/// id, usually); `Err` a plain-words clause.
pub async fn send(
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
    email: Email<'_>,
) -> Result<Option<String>, String> {
    let from: Mailbox = settings
        .get("from_address")
        .or_else(|| settings.get("from"))
        .and_then(|f| f.parse().ok())
        .ok_or("the email credential's from address is not valid")?;
    let to: Mailbox = format!(
        "{} <{}>",
        email.name.replace(['<', '>', '"', ','], ""),
        email.to
    )
    .parse()
    .or_else(|_| email.to.parse())
    .map_err(|_| "the customer's email address cannot be used".to_string())?;
    let mut builder = Message::builder().from(from).to(to).subject(email.subject);
    if let Some(reply) = settings
        .get("reply_to")
        .filter(|r| !r.trim().is_empty())
        .and_then(|r| r.parse::<Mailbox>().ok())
    {
        builder = builder.reply_to(reply);
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(email.text, email.html))
        .map_err(|e| format!("the email could not be built ({e})"))?;

    let transport = smtp_transport(settings, password, SMTP_SEND_TIMEOUT)?.transport;
    match tokio::time::timeout(
        SMTP_SEND_TIMEOUT + Duration::from_secs(5),
        transport.send(message),
    )
    .await
    {
        Ok(Ok(response)) => Ok(response.message().next().map(first_line)),
        Ok(Err(error)) => Err(SmtpFailure::of(&error).send_reason()),
        Err(_) => Err(SmtpFailure::Timeout.send_reason()),
    }
}
