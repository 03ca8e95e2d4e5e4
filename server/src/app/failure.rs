//! Why a use case gives no answer of its own: a rejection to send, or an internal failure.
//!
//! Store errors are classified here, once: a store that cannot make an entry durable is
//! AUDIT_UNAVAILABLE (the caller may retry), while a bug (an append the store refuses as
//! malformed) or stored data this version cannot read is INTERNAL, logged where it is found.

use admission_contract::Reason;

use crate::{domain::rejection::Rejection, store::StoreError};

/// What a use case answers instead of its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A rejection with its SPEC §7 reason (recorded, unless rows 26–27 or unrecordable).
    Rejected(Rejection),
    /// A bug or corrupt stored data: nothing was admitted or changed, the log says why, and the
    /// caller gets INTERNAL without ErrorInfo.
    Internal,
}

// === impl Failure ===

impl Failure {
    /// The failure for a store error; `unavailable` is the AUDIT_UNAVAILABLE rejection of the
    /// use case (its message says what was not done).
    pub fn from_store(error: StoreError, unavailable: fn() -> Rejection) -> Self {
        match error {
            StoreError::Unavailable | StoreError::Open(_) => {
                tracing::warn!(%error, "audit store failed");
                Failure::Rejected(unavailable())
            }
            // Busy, not failing: nothing was recorded, and a retry after a pause may succeed.
            StoreError::Overloaded => Failure::Rejected(Rejection::new(
                Reason::Overloaded,
                "the audit trail is at capacity; nothing was recorded, retry with backoff",
            )),
            StoreError::Corrupt => Failure::Internal,
            // Out of the tree's range: the request's mistake, named by its field.
            StoreError::InvalidInput { field, description } => {
                Failure::Rejected(Rejection::invalid_field(field, description))
            }
            StoreError::InvalidPageToken
            | StoreError::MissingRefusalEntry
            | StoreError::DuplicateEntryId => {
                tracing::error!(%error, "audit store refused a malformed request");
                Failure::Internal
            }
        }
    }

    /// An outcome the store cannot produce for what was asked: a bug, logged.
    pub fn impossible(what: &'static str) -> Self {
        tracing::error!(what, "the audit store answered what it cannot answer here");
        Failure::Internal
    }

    /// The ErrorInfo reason sent, if any (INTERNAL carries none).
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Failure::Rejected(rejection) => Some(rejection.reason),
            Failure::Internal => None,
        }
    }
}

impl From<Rejection> for Failure {
    fn from(rejection: Rejection) -> Self {
        Failure::Rejected(rejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Rejection {
        Rejection::new(Reason::AuditUnavailable, "not recorded")
    }

    #[test]
    fn storage_failures_are_audit_unavailable_and_bugs_internal() {
        for error in [StoreError::Unavailable, StoreError::Open("x".to_owned())] {
            assert_eq!(
                Failure::from_store(error, unavailable),
                Failure::Rejected(unavailable())
            );
        }
        for error in [
            StoreError::Corrupt,
            StoreError::InvalidPageToken,
            StoreError::MissingRefusalEntry,
            StoreError::DuplicateEntryId,
        ] {
            assert_eq!(Failure::from_store(error, unavailable), Failure::Internal);
        }
    }

    #[test]
    fn an_argument_outside_the_tree_is_request_invalid_naming_it() {
        let error = StoreError::InvalidInput {
            field: "tree_size",
            description: "is 12, beyond the tree size 10".to_owned(),
        };
        let Failure::Rejected(rejection) = Failure::from_store(error, unavailable) else {
            panic!("an argument outside the tree must be a rejection");
        };
        assert_eq!(rejection.reason, Reason::RequestInvalid);
        assert_eq!(
            rejection.message,
            "tree_size is 12, beyond the tree size 10"
        );
        assert_eq!(
            rejection.field_violations,
            [(
                "tree_size".to_owned(),
                "is 12, beyond the tree size 10".to_owned()
            )]
        );
    }
}
