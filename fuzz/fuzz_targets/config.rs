//! The config file parser and validation, on text: `Config::from_toml` exactly as the server
//! loads a file, with relative paths resolving into a directory of real TLS and key files (so
//! inputs that name them get past TLS and key loading into role, environment and limit
//! validation). Any text either loads or yields its problems, one line each naming the file;
//! nothing panics.
#![no_main]

use admission_fuzz::config_dir;
use admission_server::runtime::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Operators choose the paths in their config; reading a device or a kernel file is not a
    // parser question, and an endless file would only stall the fuzzer.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let path = config_dir().join("admission.toml");
    match Config::from_toml(&path, text) {
        Ok(config) => assert_eq!(config.path, path),
        Err(error) => {
            assert_eq!(error.file(), path);
            assert!(!error.problems().is_empty(), "an error without a problem");
            for problem in error.problems() {
                assert!(!problem.contains('\n'), "{problem}");
            }
            let shown = error.to_string();
            assert_eq!(shown.lines().count(), error.problems().len(), "{shown}");
            let named = path.display().to_string();
            assert!(shown.lines().all(|line| line.starts_with(&named)), "{shown}");
        }
    }
});
