-- A failed burst's error gets its own columns: it was JSON inside the text column
-- `reason`, which the API parsed back. `reason` keeps only why a burst was dropped
-- (human_takeover, tenant_disabled, erased).
ALTER TABLE bursts ADD COLUMN error_code text, ADD COLUMN error_message text;
UPDATE bursts
SET error_code = reason::jsonb ->> 'code', error_message = reason::jsonb ->> 'message', reason = NULL
WHERE status = 'failed' AND reason LIKE '{%}';
