//! Delivery channels: email through the configured SMTP server ([`email`]) and SMS/WhatsApp
//! through Message Central's send API ([`sms`]). Each channel owns its transport, its token,
//! its send and the one wording of each of its failures; the credentials page's connection
//! checks use them too.

pub mod email;
pub mod sms;

pub use email::check_smtp;
pub use sms::check_sms;

/// The first line of a server's answer, at most 160 characters, to quote in a reason.
fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(160)
        .collect()
}
