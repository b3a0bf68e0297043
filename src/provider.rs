//! The identity-verification providers KYC Desk issues links with. Shared by the pages and
//! the server; the spelling here is the one stored in `kyc_sessions.provider`, sent in JSON
//! and used in the new-link form's option ids, so it must never change.

use serde::{Deserialize, Serialize};

/// A KYC provider: who makes the customer's link and gives the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Message Central e-KYC Now (Basic and Premium flows).
    MessageCentral,
    /// Eko DigiLocker.
    Eko,
}

impl Provider {
    /// Every provider, in the order forms list them.
    pub const ALL: [Provider; 2] = [Provider::MessageCentral, Provider::Eko];

    /// The stored and serialised spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::MessageCentral => "message_central",
            Provider::Eko => "eko",
        }
    }

    /// Parses the stored spelling; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Provider::MessageCentral => "Message Central",
            Provider::Eko => "Eko DigiLocker",
        }
    }
}

stored_spelling!(Provider, "provider");

#[cfg(test)]
mod tests {
    use super::Provider;

    #[test]
    fn the_spelling_is_the_stored_and_serialised_one() {
        for provider in Provider::ALL {
            assert_eq!(Provider::parse(provider.as_str()), Some(provider));
            assert_eq!(
                serde_json::to_string(&provider).unwrap(),
                format!("\"{provider}\"")
            );
        }
        assert_eq!(Provider::parse("Eko"), None);
        assert!(Provider::try_from("mc".to_string()).is_err());
    }
}
