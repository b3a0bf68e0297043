//! The channels a link is handed over on. Shared by the pages (send buttons, delivery
//! tables) and the server (sending, the `deliveries` table); the spelling here is the one
//! stored, submitted and sent in JSON, so it must never change.

use serde::{Deserialize, Serialize};

/// A way to hand a customer their link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Through the configured SMTP server.
    Email,
    /// Message Central SMS.
    Sms,
    /// Message Central WhatsApp.
    WhatsApp,
}

impl Channel {
    /// Every channel, in the order the send buttons show them.
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::WhatsApp];

    /// The stored and submitted spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::WhatsApp => "whatsapp",
        }
    }

    /// Parses the stored spelling; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// How it is written in sentences and on buttons.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "SMS",
            Channel::WhatsApp => "WhatsApp",
        }
    }
}

stored_spelling!(Channel, "channel");
