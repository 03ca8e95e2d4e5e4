-- The audit chain. seq is assigned by the single writer (head + 1), never by the database,
-- so positions are exactly the ones hashed. Lists are canonical JSON text, as hashed.
CREATE TABLE audit_entries (
    seq               INTEGER PRIMARY KEY,
    entry_id          TEXT NOT NULL UNIQUE,
    recorded_at       INTEGER NOT NULL,
    actor             TEXT NOT NULL,
    actor_cert_sha256 TEXT NOT NULL,
    initiated_by      TEXT NOT NULL,
    action            TEXT NOT NULL,
    org_id            TEXT NOT NULL,
    project_id        TEXT NOT NULL,
    environment_id    TEXT NOT NULL,
    spec_hash         TEXT NOT NULL,
    capabilities      TEXT NOT NULL,
    approval_ids      TEXT NOT NULL,
    approvers         TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    reason            TEXT NOT NULL,
    grpc_code         TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    detail            TEXT NOT NULL,
    prev_hash         TEXT NOT NULL,
    entry_hash        TEXT NOT NULL
);
CREATE INDEX audit_entries_scope ON audit_entries (org_id, project_id, environment_id, seq);
CREATE INDEX audit_entries_outcome ON audit_entries (outcome, seq);
CREATE INDEX audit_entries_recorded_at ON audit_entries (recorded_at, seq);

-- The chain head: one row, updated in the same transaction as every append. Writers lock it
-- first, so several server instances sharing one database extend ONE chain; verify compares it
-- with the last entry, so deleting the newest entry is detected too.
CREATE TABLE audit_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    seq        INTEGER NOT NULL,
    entry_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, entry_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE approvals (
    approval_id        TEXT PRIMARY KEY,
    state              TEXT NOT NULL,
    org_id             TEXT NOT NULL,
    project_id         TEXT NOT NULL,
    environment_id     TEXT NOT NULL,
    action             TEXT NOT NULL,
    spec_hash          TEXT NOT NULL,
    capabilities       TEXT NOT NULL,
    requested_by       TEXT NOT NULL,
    initiated_by       TEXT NOT NULL,
    justification      TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    approvals_required INTEGER NOT NULL,
    approvers          TEXT NOT NULL,
    credentials        TEXT NOT NULL,
    uses               INTEGER NOT NULL,
    max_uses           INTEGER NOT NULL,
    decision_reason    TEXT NOT NULL,
    version            INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX approvals_eligible
    ON approvals (org_id, project_id, environment_id, action, spec_hash, created_at);

CREATE TABLE idempotency (
    caller      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    admission   BLOB,
    decision_id TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (caller, request_id)
);
