//! Every text of the customer's page, one table per language, so another language is one more
//! table. Placeholders in braces (`{company}`, `{digits}`, …) are filled by the page; the
//! privacy notice's own texts are the admin's and live in the database.

/// A language the customer's page speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// English.
    En,
    /// Hindi.
    Hi,
}

impl Language {
    /// Every language, in the order the switch lists them.
    pub const ALL: [Language; 2] = [Language::En, Language::Hi];

    /// The code used in addresses, the cookie, the `lang` attribute and the consent record.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Hi => "hi",
        }
    }

    /// The language by its code.
    pub fn parse(code: &str) -> Option<Language> {
        Self::ALL
            .into_iter()
            .find(|l| l.code() == code.trim().to_ascii_lowercase())
    }

    /// Its texts.
    pub fn texts(self) -> &'static Texts {
        match self {
            Language::En => &EN,
            Language::Hi => &HI,
        }
    }
}

/// The texts of the customer's page in one language.
pub struct Texts {
    /// The language's own name, for the switch.
    pub name: &'static str,
    /// Page title.
    pub title: &'static str,
    /// Who asks, for which number.
    pub intro: &'static str,
    /// Heading of what will happen.
    pub what_heading: &'static str,
    /// Message Central's journey.
    pub what_message_central: &'static str,
    /// DigiLocker's journey (`{documents}`).
    pub what_digilocker: &'static str,
    /// How long (`{minutes}`).
    pub duration: &'static str,
    /// Until when the link works (`{expires}`).
    pub valid_until: &'static str,
    /// Notice heading (`{version}`).
    pub notice_heading: &'static str,
    /// Notice section: purpose.
    pub notice_purpose: &'static str,
    /// Notice section: data items.
    pub notice_data_items: &'static str,
    /// Notice section: retention.
    pub notice_retention: &'static str,
    /// Notice section: withdrawal.
    pub notice_withdrawal: &'static str,
    /// Notice section: complaints.
    pub notice_complaint: &'static str,
    /// The consent checkbox's label.
    pub consent_label: &'static str,
    /// Start button.
    pub start: &'static str,
    /// Consent not given.
    pub consent_missing: &'static str,
    /// The customer consented earlier; Start goes on.
    pub consented_already: &'static str,
    /// One-time code: what happens.
    pub code_intro: &'static str,
    /// One-time code: button.
    pub code_send: &'static str,
    /// One-time code: sent (`{minutes}`).
    pub code_sent: &'static str,
    /// One-time code: field label.
    pub code_label: &'static str,
    /// One-time code: missing or malformed.
    pub code_malformed: &'static str,
    /// One-time code: wrong (`{left}` tries left).
    pub code_wrong: &'static str,
    /// One-time code: expired or none sent.
    pub code_expired: &'static str,
    /// One-time code: locked (`{wait}`).
    pub code_locked: &'static str,
    /// One-time code: too many sends.
    pub code_send_limit: &'static str,
    /// One-time code: could not be sent.
    pub code_send_failed: &'static str,
    /// One-time code: accepted.
    pub code_passed: &'static str,
    /// Withdraw link.
    pub withdraw_link: &'static str,
    /// Withdraw confirmation heading.
    pub withdraw_heading: &'static str,
    /// Withdraw confirmation text.
    pub withdraw_text: &'static str,
    /// Withdraw button.
    pub withdraw_button: &'static str,
    /// Back link from the withdraw confirmation.
    pub withdraw_back: &'static str,
    /// Withdrawn: heading.
    pub withdrawn_heading: &'static str,
    /// Withdrawn: text.
    pub withdrawn_text: &'static str,
    /// Expired: heading.
    pub expired_heading: &'static str,
    /// Expired: text.
    pub expired_text: &'static str,
    /// Finished: heading.
    pub finished_heading: &'static str,
    /// Finished: text.
    pub finished_text: &'static str,
    /// Cancelled or replaced: heading.
    pub cancelled_heading: &'static str,
    /// Cancelled or replaced: text.
    pub cancelled_text: &'static str,
    /// Mints used up: heading.
    pub used_up_heading: &'static str,
    /// Mints used up: text (`{count}`).
    pub used_up_text: &'static str,
    /// Provider down: heading.
    pub provider_down_heading: &'static str,
    /// Provider down: text.
    pub provider_down_text: &'static str,
    /// Retry button.
    pub retry: &'static str,
    /// Unknown link: heading.
    pub unknown_heading: &'static str,
    /// Unknown link: text.
    pub unknown_text: &'static str,
    /// Too many requests (`{wait}`).
    pub too_many: &'static str,
    /// Something on our side failed.
    pub internal: &'static str,
    /// The page's language switch's name, for screen readers.
    pub language_switch: &'static str,
}

/// English.
pub static EN: Texts = Texts {
    name: "English",
    title: "Verify your identity for {company}",
    intro: "{company} asks you to verify your identity online, for the mobile number ending {digits}.",
    what_heading: "What will happen",
    what_message_central: "When you press Start you go to Message Central’s secure page. There you show an identity document and take a selfie with your phone’s camera.",
    what_digilocker: "When you press Start you go to DigiLocker, the Government of India’s document wallet. There you sign in and agree to share: {documents}.",
    duration: "It takes about {minutes} minutes.",
    valid_until: "This link works until {expires}.",
    notice_heading: "Privacy notice (version {version})",
    notice_purpose: "Why we ask",
    notice_data_items: "What is collected",
    notice_retention: "How long it is kept",
    notice_withdrawal: "Withdrawing your consent",
    notice_complaint: "Concerns and complaints",
    consent_label: "I have read the privacy notice and I consent to {company} verifying my identity as described.",
    start: "Start verification",
    consent_missing: "Tick the box to give your consent before you start.",
    consented_already: "You gave your consent on {at}.",
    code_intro: "First we send a 6-digit code to your mobile number ending {digits}.",
    code_send: "Send me a code",
    code_sent: "We sent a code to your mobile. It works for {minutes} minutes.",
    code_label: "6-digit code from the SMS",
    code_malformed: "Enter the 6 digits from the SMS.",
    code_wrong: "That code is not right. You can try {left} more times.",
    code_expired: "That code has expired. Ask for a new one.",
    code_locked: "Too many wrong codes. Try again in {wait}.",
    code_send_limit: "Too many codes were sent for this link. Ask {company} for help.",
    code_send_failed: "The code could not be sent just now. Try again in a minute.",
    code_passed: "Your code was accepted.",
    withdraw_link: "Withdraw my consent",
    withdraw_heading: "Withdraw your consent?",
    withdraw_text: "The verification stops and {company} is told. You can ask {company} for a new link later.",
    withdraw_button: "Yes, withdraw my consent",
    withdraw_back: "No, go back",
    withdrawn_heading: "Your consent was withdrawn",
    withdrawn_text: "This verification has stopped and {company} has been told. You may close this page.",
    expired_heading: "This link has expired",
    expired_text: "Ask {company} for a new one.",
    finished_heading: "This verification is finished",
    finished_text: "There is nothing more to do here. You may close this page.",
    cancelled_heading: "This link is no longer valid",
    cancelled_text: "If you still need to verify your identity, ask {company} for a new link.",
    used_up_heading: "This link cannot start the verification again",
    used_up_text: "The verification was started {count} times with this link. Ask {company} for a new link.",
    provider_down_heading: "The verification service is not available right now",
    provider_down_text: "Nothing is lost: your consent is kept. Please try again in a few minutes.",
    retry: "Try again",
    unknown_heading: "This link is not valid",
    unknown_text: "Check that you opened the whole link from the message, or ask the company that sent it for a new one.",
    too_many: "Too many requests from your network. Try again in {wait}.",
    internal: "Something went wrong on our side. Please try again in a minute.",
    language_switch: "Language",
};

/// Hindi.
pub static HI: Texts = Texts {
    name: "हिन्दी",
    title: "{company} के लिए अपनी पहचान सत्यापित करें",
    intro: "{company} आपसे अंतिम अंक {digits} वाले मोबाइल नंबर के लिए ऑनलाइन पहचान सत्यापन करने का अनुरोध करता है।",
    what_heading: "आगे क्या होगा",
    what_message_central: "“शुरू करें” दबाने पर आप Message Central के सुरक्षित पृष्ठ पर जाएँगे। वहाँ आप एक पहचान दस्तावेज़ दिखाएँगे और अपने फ़ोन के कैमरे से सेल्फ़ी लेंगे।",
    what_digilocker: "“शुरू करें” दबाने पर आप DigiLocker पर जाएँगे, जो भारत सरकार का दस्तावेज़ वॉलेट है। वहाँ आप साइन इन करके ये साझा करने की सहमति देंगे: {documents}।",
    duration: "इसमें लगभग {minutes} मिनट लगते हैं।",
    valid_until: "यह लिंक {expires} तक काम करेगा।",
    notice_heading: "गोपनीयता सूचना (संस्करण {version})",
    notice_purpose: "हम क्यों पूछते हैं",
    notice_data_items: "क्या एकत्र किया जाता है",
    notice_retention: "कितने समय तक रखा जाता है",
    notice_withdrawal: "अपनी सहमति वापस लेना",
    notice_complaint: "चिंताएँ और शिकायतें",
    consent_label: "मैंने गोपनीयता सूचना पढ़ ली है और मैं ऊपर बताए अनुसार {company} को अपनी पहचान सत्यापित करने की सहमति देता/देती हूँ।",
    start: "सत्यापन शुरू करें",
    consent_missing: "शुरू करने से पहले सहमति देने के लिए बॉक्स पर टिक करें।",
    consented_already: "आपने {at} को अपनी सहमति दी थी।",
    code_intro: "पहले हम अंतिम अंक {digits} वाले आपके मोबाइल नंबर पर 6 अंकों का कोड भेजेंगे।",
    code_send: "मुझे कोड भेजें",
    code_sent: "हमने आपके मोबाइल पर कोड भेजा है। यह {minutes} मिनट तक काम करेगा।",
    code_label: "SMS में आया 6 अंकों का कोड",
    code_malformed: "SMS में आए 6 अंक दर्ज करें।",
    code_wrong: "यह कोड सही नहीं है। आप {left} बार और कोशिश कर सकते हैं।",
    code_expired: "इस कोड की समय-सीमा समाप्त हो गई है। नया कोड मँगाएँ।",
    code_locked: "बहुत अधिक गलत कोड। {wait} बाद फिर कोशिश करें।",
    code_send_limit: "इस लिंक के लिए बहुत अधिक कोड भेजे जा चुके हैं। सहायता के लिए {company} से संपर्क करें।",
    code_send_failed: "अभी कोड नहीं भेजा जा सका। एक मिनट बाद फिर कोशिश करें।",
    code_passed: "आपका कोड स्वीकार कर लिया गया।",
    withdraw_link: "मेरी सहमति वापस लें",
    withdraw_heading: "अपनी सहमति वापस लें?",
    withdraw_text: "सत्यापन रुक जाएगा और {company} को सूचित किया जाएगा। आप बाद में {company} से नया लिंक माँग सकते हैं।",
    withdraw_button: "हाँ, मेरी सहमति वापस लें",
    withdraw_back: "नहीं, वापस जाएँ",
    withdrawn_heading: "आपकी सहमति वापस ले ली गई",
    withdrawn_text: "यह सत्यापन रुक गया है और {company} को सूचित कर दिया गया है। आप यह पृष्ठ बंद कर सकते हैं।",
    expired_heading: "इस लिंक की समय-सीमा समाप्त हो गई है",
    expired_text: "{company} से नया लिंक माँगें।",
    finished_heading: "यह सत्यापन पूरा हो गया है",
    finished_text: "यहाँ अब कुछ और करने की ज़रूरत नहीं है। आप यह पृष्ठ बंद कर सकते हैं।",
    cancelled_heading: "यह लिंक अब मान्य नहीं है",
    cancelled_text: "अगर आपको अब भी अपनी पहचान सत्यापित करनी है, तो {company} से नया लिंक माँगें।",
    used_up_heading: "इस लिंक से सत्यापन फिर से शुरू नहीं किया जा सकता",
    used_up_text: "इस लिंक से सत्यापन {count} बार शुरू किया जा चुका है। {company} से नया लिंक माँगें।",
    provider_down_heading: "सत्यापन सेवा अभी उपलब्ध नहीं है",
    provider_down_text: "कुछ भी खोया नहीं है: आपकी सहमति सुरक्षित है। कृपया कुछ मिनट बाद फिर कोशिश करें।",
    retry: "फिर कोशिश करें",
    unknown_heading: "यह लिंक मान्य नहीं है",
    unknown_text: "जाँच लें कि आपने संदेश का पूरा लिंक खोला है, या भेजने वाली कंपनी से नया लिंक माँगें।",
    too_many: "आपके नेटवर्क से बहुत अधिक अनुरोध। {wait} बाद फिर कोशिश करें।",
    internal: "हमारी ओर से कुछ गड़बड़ हो गई। कृपया एक मिनट बाद फिर कोशिश करें।",
    language_switch: "भाषा",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_fills_the_same_placeholders() {
        let placeholders = |text: &str| {
            let mut found: Vec<String> = text
                .split('{')
                .skip(1)
                .filter_map(|part| part.split_once('}').map(|(name, _)| name.to_string()))
                .collect();
            found.sort();
            found
        };
        let en = Language::En.texts();
        let hi = Language::Hi.texts();
        for (english, hindi) in [
            (en.title, hi.title),
            (en.intro, hi.intro),
            (en.what_digilocker, hi.what_digilocker),
            (en.duration, hi.duration),
            (en.valid_until, hi.valid_until),
            (en.notice_heading, hi.notice_heading),
            (en.consent_label, hi.consent_label),
            (en.code_wrong, hi.code_wrong),
            (en.code_locked, hi.code_locked),
            (en.used_up_text, hi.used_up_text),
            (en.expired_text, hi.expired_text),
            (en.too_many, hi.too_many),
        ] {
            assert_eq!(
                placeholders(english),
                placeholders(hindi),
                "{english} / {hindi}"
            );
        }
        assert_eq!(Language::parse("HI"), Some(Language::Hi));
        assert_eq!(Language::parse("fr"), None);
    }
}
