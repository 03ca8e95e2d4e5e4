//! Identities of decisions in the audit trail.

/// A fresh decision id: time-ordered and unique across replicas.
pub fn new_decision_id() -> String {
    format!("dec_{}", uuid::Uuid::now_v7().simple())
}
