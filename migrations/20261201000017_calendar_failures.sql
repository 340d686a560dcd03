-- A Google Calendar push channel that failed for good (its watch refused, or it expired
-- before any renewal succeeded) is one of the operator console's failures: it can be
-- discarded like the others, and a retry watches the calendar again from a new row.
ALTER TABLE calendar_channels ADD COLUMN discarded_at timestamptz;
