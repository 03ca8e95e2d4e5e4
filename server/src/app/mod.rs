//! The use cases: deciding admissions, reviewing approvals, reading the audit trail.

pub mod admission;
pub mod approvals;
pub mod audit;
pub mod failure;
pub(crate) mod recording;
pub mod settings;
pub mod transparency;
pub(crate) mod wire;
