//! Who is calling and what they may do: the mTLS acceptor, role bindings and call limits.

pub mod call_limits;
pub mod roles;
pub mod tls;
