//! The admission rules as data and pure functions: no transport, no storage, no wire types.

pub mod action;
pub mod approval;
pub mod credential;
pub mod decision;
pub mod outcome;
pub mod policy;
pub mod rejection;
pub mod request;
pub mod rules;
