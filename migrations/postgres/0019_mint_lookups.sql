-- A Message Central return finds its session through `link_mints` alone, which has held
-- every minted provider URL's ids since 0016 (with indexes on journey id and token); the
-- session row keeps only its newest ids, for display. So the session table's own indexes on
-- those ids go: each was one more entry written by every update that moves a session (a
-- customer's Start writes the session row twice), and the Eko reference id's was never read.
-- Sessions whose URL was made before 0016 have no mint row yet; they get one here, so a late
-- return of theirs is still found.
INSERT INTO link_mints (session_id, minted_at, expires_at, token, journey_id, reference_id)
SELECT s.id, COALESCE(s.minted_at, s.created_at), COALESCE(s.provider_url_expires_at, s.expires_at, 0),
       s.provider_token, s.journey_id, s.reference_id
FROM kyc_sessions s
WHERE (s.journey_id IS NOT NULL OR s.provider_token IS NOT NULL OR s.reference_id IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM link_mints m WHERE m.session_id = s.id);

DROP INDEX kyc_sessions_journey;
DROP INDEX kyc_sessions_reference;
DROP INDEX kyc_sessions_provider_token;
