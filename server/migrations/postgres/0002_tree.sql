-- The audit trail as an RFC 6962 Merkle tree (SPEC §9): leaf i is the raw entry_hash of
-- seq = i + 1. Every complete subtree's hash is stored once, at its index in the Go sumdb
-- "stored hashes" layout, in the same transaction as the entries it covers; rows are only
-- ever appended, densely from 0.
CREATE TABLE audit_tree (
    idx  BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

-- Signed checkpoints (C2SP signed-note of a tlog-checkpoint), one per tree size.
CREATE TABLE audit_checkpoints (
    tree_size  BIGINT PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
