-- Media understanding (issue 3): what each image, voice note and PDF a lead sent turned
-- into. One row per message, so a medium is processed once however often its job runs;
-- the AI job reads these rows when it builds the burst's turn, and history reads them later.

ALTER TABLE assistants
    ADD COLUMN transcription_model    text NOT NULL DEFAULT 'whisper-1',
    ADD COLUMN transcription_language text NOT NULL DEFAULT '',
    ADD COLUMN transcription_prompt   text NOT NULL DEFAULT '',
    ADD COLUMN image_detail           text NOT NULL DEFAULT 'auto' CHECK (image_detail IN ('auto', 'low', 'high')),
    ADD COLUMN image_inline           boolean NOT NULL DEFAULT true,
    ADD COLUMN pdf_as_file            boolean NOT NULL DEFAULT false;

CREATE TABLE media (
    message_id     uuid PRIMARY KEY REFERENCES messages (id),
    tenant_id      uuid NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('image', 'audio', 'pdf')),
    status         text NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    -- a job holds the row while it works; a crashed job's lease simply runs out
    locked_until   timestamptz,
    -- the scheduled retry's attempt number: that job may take the row although it is held
    next_attempt   integer,
    mime           text,
    file_name      text,
    size_bytes     bigint,
    -- transcript or extracted text
    text           text,
    pages          integer,
    pages_read     integer,
    truncated      boolean NOT NULL DEFAULT false,
    -- a PDF with pages but no text layer (a scan)
    no_text        boolean NOT NULL DEFAULT false,
    -- the downloaded bytes, kept only where the AI needs them again (inline images, PDFs sent as files)
    data           bytea,
    error_code     text,
    error          text,
    duration_ms    integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_pending_idx ON media (created_at) WHERE status = 'pending';
