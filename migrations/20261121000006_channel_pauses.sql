-- Human takeover per lead channel (Leavo's model): a human answering on WhatsApp pauses
-- the AI on that WhatsApp channel, not on the lead's Telegram. A pause on the lead itself
-- (a `human` message through /ai/process, which has no channel) still pauses everything.

CREATE TABLE channel_pauses (
    lead_id      uuid NOT NULL REFERENCES leads (id),
    channel_id   uuid NOT NULL REFERENCES channels (id),
    paused_until timestamptz NOT NULL,
    PRIMARY KEY (lead_id, channel_id)
);

-- (The function this migration defined is no longer written out here: its one live
-- definition is migrations/functions/leadflow_accept.sql, applied after the migrations
-- at every start. See shared/src/db/functions.rs.)

-- Who attended a lead on a channel: operators writing through Leadflow, and humans
-- answering on the business's phone (WhatsApp `fromMe` that is not our own send). The
-- phone does not say who held it: the lead channel's assigned user when there is one,
-- else the attendance has no user.
CREATE TABLE attendances (
    lead_id         uuid NOT NULL REFERENCES leads (id),
    channel_id      uuid NOT NULL REFERENCES channels (id),
    user_id         uuid REFERENCES operators (id),
    -- 'leadflow' (POST /backend/leads/{id}/messages) or 'phone' (typed on the device)
    source          text NOT NULL CHECK (source IN ('leadflow', 'phone')),
    message_count   integer NOT NULL DEFAULT 0,
    last_message_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX attendances_key
    ON attendances (lead_id, channel_id, COALESCE(user_id, '00000000-0000-0000-0000-000000000000'::uuid), source);

INSERT INTO attendances (lead_id, channel_id, user_id, source, message_count, last_message_at)
SELECT lead_id, channel_id, operator_id, 'leadflow', count(*), max(created_at)
FROM outbox WHERE operator_id IS NOT NULL GROUP BY lead_id, channel_id, operator_id;
