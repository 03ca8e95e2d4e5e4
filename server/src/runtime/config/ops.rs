//! `[ops]`: the operations listener's address.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[ops]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOps {
    listen: String,
}

/// `[ops]`: where the operations listener (plain HTTP: probes, metrics, gRPC health) listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpsConfig {
    /// Address to listen on (ip:port).
    pub listen: SocketAddr,
}

/// The operations listener's settings, `None` when `[ops]` is absent.
pub(super) fn ops_config(raw: Option<&RawOps>) -> Result<Option<OpsConfig>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let listen = raw.listen.parse::<SocketAddr>().map_err(|_| {
        format!(
            "[ops] listen: {:?} is not an ip:port socket address",
            raw.listen
        )
    })?;
    Ok(Some(OpsConfig { listen }))
}
