-- From `ordered_from` on, recorded_at never decreases along the chain: the writer records a
-- batch at its head entry's time when the clock reads earlier (a clock stepped back). Entries
-- before it, written by an earlier version across such a step, may be out of order; a `since`
-- filter seeks the (recorded_at, seq) index for its first entry only when there are none.
ALTER TABLE audit_head ADD COLUMN ordered_from BIGINT NOT NULL DEFAULT 1;

-- The entry after the last one recorded later than its successor.
UPDATE audit_head SET ordered_from = COALESCE((
    SELECT MAX(seq) + 1 FROM (
        SELECT seq, recorded_at, LEAD(recorded_at) OVER (ORDER BY seq) AS next_recorded_at
        FROM audit_entries
    ) AS steps
    WHERE recorded_at > next_recorded_at
), 1)
WHERE id = 1;
