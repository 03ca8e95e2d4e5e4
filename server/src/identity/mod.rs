//! Who is calling and what they may do: the mTLS acceptor and role bindings.

pub mod roles;
pub mod tls;
