-- KYC Desk's own customer link (issue 15). The link staff hand out is `{public_url}/v/{code}`;
-- the provider's short-lived URL is made ("minted") only when the customer presses Start.
-- The new states issued → opened → consented → started, and withdrawn (by the customer);
-- `created` and `sent` become `started` (their provider URL exists; sending is a delivery
-- row and a timeline event, no longer a state).
ALTER TABLE kyc_sessions ADD COLUMN customer_code TEXT;
ALTER TABLE kyc_sessions ADD COLUMN link_expires_at BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN provider_url_expires_at BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN minted_at BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN mint_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN mint_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN opened_at BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN consent_notice_version BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN consent_language TEXT;
ALTER TABLE kyc_sessions ADD COLUMN consent_at BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN consent_client_hash TEXT;
ALTER TABLE kyc_sessions ADD COLUMN consent_agent_hash TEXT;
-- The optional one-time code before Start: its hash, expiry, wrong tries, lock and sends.
ALTER TABLE kyc_sessions ADD COLUMN otp_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN otp_hash TEXT;
ALTER TABLE kyc_sessions ADD COLUMN otp_expires_at BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN otp_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN otp_locked_until BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN otp_sends INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN otp_passed_at BIGINT;
-- Reminders: whether they are on, how many went, when the next is due, and the channel the
-- link went by (the reminder's channel); a lease so two instances never send the same one.
ALTER TABLE kyc_sessions ADD COLUMN reminders_on INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN reminders_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN next_reminder_at BIGINT;
ALTER TABLE kyc_sessions ADD COLUMN sent_channel TEXT;
ALTER TABLE kyc_sessions ADD COLUMN reminder_lease_owner TEXT;
ALTER TABLE kyc_sessions ADD COLUMN reminder_lease_until BIGINT;
CREATE UNIQUE INDEX kyc_sessions_customer_code ON kyc_sessions (customer_code);
CREATE INDEX kyc_sessions_reminder ON kyc_sessions (next_reminder_at) WHERE next_reminder_at IS NOT NULL;

-- Every provider URL minted for a session, so a return carrying an older mint's journey id
-- or token still finds its session.
CREATE TABLE link_mints (
    id BIGSERIAL PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES kyc_sessions (id),
    minted_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    token TEXT,
    journey_id TEXT,
    reference_id TEXT
);
CREATE INDEX link_mints_session ON link_mints (session_id, id);
CREATE INDEX link_mints_journey ON link_mints (journey_id);
CREATE INDEX link_mints_token ON link_mints (token);

-- The privacy notice shown on the customer's page (DPDP Act): admin-edited, versioned. A
-- version is never changed once written (a consent names it); a new one supersedes it.
-- `texts` is JSON: per language code, the purpose, data items, retention, withdrawal and
-- complaint texts.
CREATE TABLE privacy_notices (
    version BIGINT PRIMARY KEY,
    texts TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

ALTER TABLE kyc_sessions DROP CONSTRAINT kyc_sessions_status_check;
UPDATE kyc_sessions SET status = 'started' WHERE status IN ('created', 'sent');
ALTER TABLE kyc_sessions ADD CONSTRAINT kyc_sessions_status_check CHECK (status IN ('creating', 'issued', 'opened', 'consented', 'started', 'returned', 'completed', 'failed', 'expired', 'cancelled', 'superseded', 'withdrawn'));
DROP INDEX kyc_sessions_open_expiry;
CREATE INDEX kyc_sessions_open_expiry ON kyc_sessions (expires_at) WHERE status IN ('issued', 'opened', 'consented', 'started', 'returned');

-- The first notice, in English and Hindi; an admin supersedes it from the Credentials page.
INSERT INTO privacy_notices (version, texts, created_by, created_at) VALUES (1, '{"en": {"purpose": "{company} uses this verification to confirm your identity before opening or continuing your account, as the Reserve Bank of India’s KYC rules require.", "data_items": "Your name and mobile number; the details of the identity document you choose to share (for Aadhaar only the last four digits of the number are kept, the rest is masked); and your photograph where the verification takes one.", "retention": "Records of this verification are kept for five years after your relationship with {company} ends, as the RBI’s KYC direction requires, and are then deleted.", "withdrawal": "Until the verification finishes you can withdraw your consent with the “Withdraw my consent” link on this page; after that, write to {company}’s grievance officer. Withdrawing does not remove records the law requires {company} to keep.", "complaint": "If you have a concern, contact {company}’s grievance officer. If it is not resolved, you may complain to the Data Protection Board of India."}, "hi": {"purpose": "{company} आपका खाता खोलने या जारी रखने से पहले आपकी पहचान की पुष्टि के लिए इस सत्यापन का उपयोग करता है, जैसा कि भारतीय रिज़र्व बैंक के केवाईसी नियमों में आवश्यक है।", "data_items": "आपका नाम और मोबाइल नंबर; आपके द्वारा साझा किए गए पहचान दस्तावेज़ का विवरण (आधार के लिए केवल संख्या के अंतिम चार अंक रखे जाते हैं, बाकी छिपा दिए जाते हैं); और जहाँ सत्यापन में ली जाए, आपकी तस्वीर।", "retention": "इस सत्यापन के रिकॉर्ड {company} के साथ आपका संबंध समाप्त होने के बाद पाँच वर्ष तक रखे जाते हैं, जैसा कि आरबीआई के केवाईसी निर्देश में आवश्यक है, और फिर हटा दिए जाते हैं।", "withdrawal": "सत्यापन पूरा होने तक आप इस पृष्ठ पर “मेरी सहमति वापस लें” लिंक से अपनी सहमति वापस ले सकते हैं; उसके बाद {company} के शिकायत अधिकारी को लिखें। सहमति वापस लेने से वे रिकॉर्ड नहीं हटते जिन्हें कानून के अनुसार {company} को रखना आवश्यक है।", "complaint": "कोई चिंता हो तो {company} के शिकायत अधिकारी से संपर्क करें। समाधान न होने पर आप भारतीय डेटा संरक्षण बोर्ड में शिकायत कर सकते हैं।"}}', 'system', 0);
