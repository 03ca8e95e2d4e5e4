//! `admission-server healthcheck`: asks the operations listener's `/readyz`, for container
//! HEALTHCHECKs and scripts. Plain HTTP/1.1 over TCP, no TLS, one request, bounded in time.

use std::{net::SocketAddr, path::Path, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Where the operations listener is when neither `--ops` nor the config says.
pub const DEFAULT_OPS_URL: &str = "http://127.0.0.1:9090";

/// How long connecting, sending and reading the answer may take altogether.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Largest answer read; `/readyz` answers a line.
const MAX_ANSWER_BYTES: u64 = 16 * 1024;

/// What `/readyz` said, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Ready(String),
    /// Any other status, or no answer.
    NotReady(String),
}

/// The operations listener's URL from the config file's `[ops] listen`, if it has one; an
/// unspecified address (`0.0.0.0`, `[::]`) is asked on loopback.
pub fn url_from_config(path: &Path) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let Some(listen) = table
        .get("ops")
        .and_then(|ops| ops.get("listen"))
        .and_then(|listen| listen.as_str())
    else {
        return Ok(None);
    };
    let mut addr: SocketAddr = listen.parse().map_err(|_| {
        format!(
            "{}: [ops] listen: {listen:?} is not an ip:port socket address",
            path.display()
        )
    })?;
    if addr.ip().is_unspecified() {
        let loopback = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        addr.set_ip(loopback);
    }
    Ok(Some(format!("http://{addr}")))
}

/// Asks `GET {base}/readyz` once.
pub async fn check(base: &str) -> Outcome {
    let authority = match authority(base) {
        Ok(authority) => authority,
        Err(problem) => return Outcome::NotReady(problem),
    };
    let url = format!("http://{authority}/readyz");
    match tokio::time::timeout(TIMEOUT, ask(authority)).await {
        Ok(Ok((200, body))) => Outcome::Ready(format!("ready: {url} answered 200 {body}")),
        Ok(Ok((status, body))) => {
            Outcome::NotReady(format!("not ready: {url} answered {status} {body}"))
        }
        Ok(Err(error)) => Outcome::NotReady(format!("not ready: {url}: {error}")),
        Err(_) => Outcome::NotReady(format!(
            "not ready: {url}: no answer within {}",
            humantime::format_duration(TIMEOUT)
        )),
    }
}

/// `host:port` of an `http://host:port[/]` URL (or a bare `host:port`).
fn authority(base: &str) -> Result<&str, String> {
    if base.starts_with("https://") {
        return Err(format!(
            "--ops {base}: the operations listener speaks plain http, not https"
        ));
    }
    let authority = base.strip_prefix("http://").unwrap_or(base);
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() || authority.contains(['/', '?', '#', ' ']) || !authority.contains(':')
    {
        return Err(format!("--ops {base}: expected http://host:port"));
    }
    Ok(authority)
}

/// Sends the request and returns the status code and the body's first line.
async fn ask(authority: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .await?;
    let answer = String::from_utf8_lossy(&answer);
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an http answer");
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| answer.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(invalid)?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_plain_http_host_and_port() {
        assert_eq!(authority("http://127.0.0.1:9090"), Ok("127.0.0.1:9090"));
        assert_eq!(authority("http://localhost:9090/"), Ok("localhost:9090"));
        assert_eq!(authority("[::1]:9090"), Ok("[::1]:9090"));
        assert!(authority("https://127.0.0.1:9090").is_err());
        assert!(authority("http://127.0.0.1:9090/readyz").is_err());
        assert!(authority("http://localhost").is_err());
    }
}
