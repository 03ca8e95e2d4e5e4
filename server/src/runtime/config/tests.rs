use super::*;

#[test]
fn toml_errors_name_the_line() {
    let text = "listen = \"127.0.0.1:1\"\nlisen = 1\n";
    let error = toml::from_str::<RawConfig>(text).unwrap_err();
    let message = toml_error(&error, text);
    assert!(message.starts_with("unknown field `lisen`"), "{message}");
    assert!(message.ends_with("at line 2"), "{message}");
}

#[test]
fn toml_value_errors_name_the_field() {
    let text = "listen = \"127.0.0.1:1\"\n[limits]\nrequest_timeout = \"soon\"\n";
    let error = toml::from_str::<RawConfig>(text).unwrap_err();
    assert_eq!(
        toml_error(&error, text),
        "[limits] request_timeout: invalid duration \"soon\": expected number at 0 at line 3"
    );
}

#[test]
fn relative_sqlite_urls_resolve_against_the_config_directory() {
    let base = Path::new("/etc/admission");
    assert_eq!(
        resolve_database_url(base, "sqlite://admission.db?mode=rwc"),
        "sqlite:///etc/admission/admission.db?mode=rwc"
    );
    assert_eq!(
        resolve_database_url(base, "sqlite:///var/lib/a.db"),
        "sqlite:///var/lib/a.db"
    );
    assert_eq!(
        resolve_database_url(base, "postgres://u@h/db"),
        "postgres://u@h/db"
    );
}

#[test]
fn length_limits_are_read_and_checked() {
    let limits: Limits = toml::from_str(
        "id_max_bytes = 64\nenvironment_part_max_bytes = 32\ntext_max_bytes = 512\n\
         capability_max_bytes = 40\nmax_capabilities = 4\n",
    )
    .unwrap();
    let request = limits.request_limits();
    assert_eq!(
        (
            request.id_max_bytes,
            request.environment_part_max_bytes,
            request.text_max_bytes,
            request.capability_max_bytes,
            request.max_capabilities,
        ),
        (64, 32, 512, 40, 4)
    );
    assert_eq!(validate_limits(&limits), Ok(()));
    let zero = Limits {
        text_max_bytes: 0,
        ..Limits::default()
    };
    assert_eq!(
        validate_limits(&zero),
        Err("[limits] text_max_bytes: must be at least 1".to_owned())
    );
}

#[test]
fn limits_default_to_the_spec() {
    let limits = Limits::default();
    assert_eq!(limits.spec_kv_max_bytes, 1_048_576);
    assert_eq!(limits.max_credentials, 8);
    assert_eq!(limits.credential_max_bytes, 16_384);
    assert_eq!(limits.request_limits(), RequestLimits::default());
    assert_eq!(limits.max_request_bytes(), 1_048_576 + 8 * 16_384 + 65_536);
    assert!(validate_limits(&limits).is_ok());
    // One caller at its cap cannot hold the whole buffer budget.
    assert!(
        limits.max_calls_per_identity * (limits.max_request_bytes() + GRPC_FRAME_HEADER_BYTES)
            < limits.max_buffered_request_bytes
    );
    assert_eq!(
        AuditConfig::default().durable_timeout,
        Duration::from_secs(2)
    );
}
