//! `admission-server dev` as a child process on a loopback port, and clients presenting the
//! identities it generates.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use admission_client::AdmissionClient;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A port nobody listens on now (the kernel's pick for an ephemeral bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `admission-server` in the same target directory as `admissionctl` (a client test's
/// `CARGO_BIN_EXE_admissionctl`; a `cargo test --workspace` builds both).
pub fn server_binary_beside(admissionctl: &Path) -> PathBuf {
    let name = format!("admission-server{}", std::env::consts::EXE_SUFFIX);
    let path = admissionctl.with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p admission-server` (a `cargo test --workspace` \
         builds it)",
        path.display()
    );
    path
}

/// `<server_bin> dev --dir <dir> --listen 127.0.0.1:<port>` with `RUST_LOG=warn`, its stdout
/// piped (for [`spawn_until_served`]) and killed when dropped; callers add what they need.
pub fn dev_command(server_bin: &Path, dir: &Path, port: u16) -> Command {
    let mut command = Command::new(server_bin);
    command
        .arg("dev")
        .arg("--dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Spawns `command` (a [`dev_command`]) and waits until it has printed its last instruction
/// line, which it does once the listener is bound; the child and everything it printed.
pub async fn spawn_until_served(command: &mut Command) -> (Child, String) {
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().expect("dev_command pipes stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("--endpoint") {
            return (child, printed);
        }
    }
    panic!("admission-server dev exited before printing its instructions: {printed}");
}

/// A client of `https://localhost:<port>` presenting the dev identity `stem` of `dir`
/// (`<stem>.pem`, `<stem>.key`, trusting `ca.pem`).
pub async fn dev_client(dir: &Path, port: u16, stem: &str) -> AdmissionClient {
    AdmissionClient::builder()
        .endpoint(format!("https://localhost:{port}"))
        .ca_file(dir.join("ca.pem"))
        .identity_files(
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        )
        .connect()
        .await
        .unwrap()
}

/// A command running the tool `bin` without any `ADMISSION_*` variable of the test's own
/// environment, so only what the test sets configures it.
pub fn tool_command(bin: &str) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars() {
        if name.starts_with("ADMISSION_") {
            command.env_remove(name);
        }
    }
    command
}

/// The exit status and both streams of `output`, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
