use std::time::Duration;

use super::*;

#[test]
fn year_month_of_known_dates() {
    assert_eq!(year_month(0), (1970, 1));
    assert_eq!(year_month(951_782_400), (2000, 2)); // 2000-02-29
    assert_eq!(year_month(1_767_225_599), (2025, 12)); // 2025-12-31T23:59:59Z
    assert_eq!(year_month(1_767_225_600), (2026, 1));
    let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000); // 2026-11-18
    assert_eq!(dev_kid(now), "dev-2026-11");
}

#[test]
fn prepare_creates_everything_once_and_the_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let first = prepare(dir.path()).unwrap();
    assert_eq!(first.created.len(), 17);
    let config = crate::runtime::config::Config::load(&first.config).unwrap();
    assert_eq!(config.environments.len(), 2);
    assert_eq!(config.roles.len(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [
            "ca.key",
            "server.key",
            "orchestrator.key",
            "signing.key",
            "log.key",
        ] {
            let mode = fs::metadata(first.dir.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
    let ca_before = fs::read(first.dir.join("ca.pem")).unwrap();
    let second = prepare(dir.path()).unwrap();
    assert!(second.created.is_empty());
    assert_eq!(fs::read(second.dir.join("ca.pem")).unwrap(), ca_before);
}

#[test]
fn missing_leaf_is_reissued_by_the_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let env = prepare(dir.path()).unwrap();
    fs::remove_file(env.dir.join("auditor.pem")).unwrap();
    fs::remove_file(env.dir.join("auditor.key")).unwrap();
    let again = prepare(dir.path()).unwrap();
    assert_eq!(again.created.len(), 2);
    fs::remove_file(env.dir.join("reviewer.key")).unwrap();
    assert!(matches!(
        prepare(dir.path()),
        Err(DevError::Inconsistent { .. })
    ));
}
