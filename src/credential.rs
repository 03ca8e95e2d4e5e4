//! ByteOr approval-credentials-v1 (SPEC §5). Placeholder.
