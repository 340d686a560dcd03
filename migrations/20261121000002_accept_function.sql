-- The accept path of /ai/process in one round trip. The steps and their order are the
-- ones documented in shared/src/db/leads.rs: lock the lead row (by upserting it), claim
-- the idempotency key, then record the message and place it in its burst. Doing this in
-- one function call instead of ~7 statements is what keeps ingest fast.

-- (The function this migration defined is no longer written out here: its one live
-- definition is migrations/functions/leadflow_accept.sql, applied after the migrations
-- at every start. See shared/src/db/functions.rs.)
