//! Configuration, telemetry, dev mode, and the composition root that serves it all.

pub mod checkpoints;
pub mod config;
pub mod dev;
pub mod healthcheck;
pub mod ops;
pub mod reload;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod watch;
