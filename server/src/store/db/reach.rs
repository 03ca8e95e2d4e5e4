//! Reaching the database without touching it: a single connection, no pool and no migration,
//! whose failure names the host, port and cause (never the password).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions as _, Connection as _};

/// Connects once to `url` within `timeout` and disconnects; the error is one line naming where
/// it tried and why it failed.
pub(crate) async fn check_connection(url: &str, timeout: Duration) -> Result<(), String> {
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| scrub(url, format!("not a usable sqlite url: {e}")))?;
        let path = options.get_filename().to_path_buf();
        let file = path.display().to_string();
        if !path.exists() {
            // Serving creates the file; checking must not, so only its directory is checked.
            let directory = path.parent().filter(|p| !p.as_os_str().is_empty());
            return match directory {
                Some(directory) if !directory.is_dir() => Err(format!(
                    "cannot create sqlite database {file}: directory {} does not exist",
                    directory.display()
                )),
                _ => Ok(()),
            };
        }
        let connect = async {
            let connection: SqliteConnection = options.connect().await?;
            connection.close().await
        };
        return bounded(timeout, connect)
            .await
            .map_err(|cause| scrub(url, format!("cannot open sqlite database {file}: {cause}")));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| scrub(url, format!("not a usable postgres url: {e}")))?;
        let at = format!("{}:{}", options.get_host(), options.get_port());
        let connect = async {
            let connection: PgConnection = options.connect().await?;
            connection.close().await
        };
        return bounded(timeout, connect)
            .await
            .map_err(|cause| scrub(url, format!("cannot connect to postgres at {at}: {cause}")));
    }
    Err("must start with sqlite: or postgres:".to_owned())
}

/// Describes a pool that could not open for `url`: where, and the cause a single direct
/// connection reports (a pool only says it timed out).
pub(crate) async fn describe_open_failure(
    url: &str,
    pool_error: &sqlx::Error,
    timeout: Duration,
) -> String {
    match check_connection(url, timeout).await {
        Err(described) => described,
        Ok(()) => scrub(url, pool_error.to_string()),
    }
}

async fn bounded(
    timeout: Duration,
    connect: impl Future<Output = Result<(), sqlx::Error>>,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// `message` with the URL's password, if any, replaced, whatever printed it.
fn scrub(url: &str, message: String) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    let one_line = message.replace('\n', " ");
    match password {
        Some(password) => one_line.replace(password, "***"),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_postgres_is_named_by_host_and_port_without_its_password() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let url = "postgres://admission:hunter2@127.0.0.1:1/admission";
        let error = check_connection(url, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            error.starts_with("cannot connect to postgres at 127.0.0.1:1: "),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn scrub_hides_the_password_only() {
        let url = "postgres://u:p%40ss@h:5432/db";
        assert_eq!(scrub(url, "bad p%40ss here".into()), "bad *** here");
        assert_eq!(scrub("postgres://u@h/db", "as is".into()), "as is");
    }
}
