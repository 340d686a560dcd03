-- Long replies may go out one paragraph per message (per assistant), each part its own
-- outbox row, sent in order with a typing pause: the next part waits for the one before.

ALTER TABLE assistants ADD COLUMN split_replies boolean NOT NULL DEFAULT false;

ALTER TABLE outbox ADD COLUMN part integer NOT NULL DEFAULT 0;
ALTER TABLE outbox DROP CONSTRAINT outbox_burst_id_key;
ALTER TABLE outbox ADD CONSTRAINT outbox_burst_part_key UNIQUE (burst_id, part);
