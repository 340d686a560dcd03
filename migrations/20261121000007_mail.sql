-- E-mail channels: where each mailbox's polling got to (IMAP UIDs are only meaningful
-- with their UIDVALIDITY), and attachments kept with their e-mail, which the media
-- pipeline reads instead of downloading a URL.

CREATE TABLE mailboxes (
    channel_id     uuid PRIMARY KEY REFERENCES channels (id),
    -- both NULL until a poll succeeds (a failing first poll still records its error)
    uid_validity   bigint,
    last_uid       bigint,
    last_polled_at timestamptz NOT NULL DEFAULT now(),
    last_error     text
);

CREATE TABLE mail_attachments (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    channel_id uuid NOT NULL REFERENCES channels (id),
    file_name  text,
    mime       text,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
