-- The language the customer last chose on their link's page (English or Hindi), so that
-- reminders reach them in it even before they consent. NULL until the page is opened.
ALTER TABLE kyc_sessions ADD COLUMN customer_language TEXT;
