-- The x-request-id of the request that brought a message in (an operator follows it
-- from the access log through the jobs' logs to the postback).
ALTER TABLE messages ADD COLUMN request_id text;

-- leadflow_accept takes it as a new last parameter (with a default, so a binary of the
-- previous version still resolves its call during a rolling upgrade);
-- migrations/functions/leadflow_accept.sql, applied after the migrations, defines it.
DROP FUNCTION IF EXISTS leadflow_accept(uuid, text, text, text, text, text, boolean, text, text,
                                        uuid, float8, float8, integer, uuid, uuid, uuid, uuid);
