//! `admissionctl completion bash|zsh|fish`: a completion script generated from the command line
//! definition, so it always matches the installed binary.

use std::io::Write;

use clap::{Args, ValueEnum};
use clap_complete::Shell;

use super::{CliError, ExitStatus, Output};

/// Arguments of `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells a script can be printed for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompletionShell {
    /// Bash: `source <(admissionctl completion bash)`.
    Bash,
    /// Zsh: write it as `_admissionctl` in a directory of `$fpath`.
    Zsh,
    /// Fish: write it to `~/.config/fish/completions/admissionctl.fish`.
    Fish,
}

/// Prints the script (with `--json`, as `{"shell": …, "script": …}`).
pub fn run(output: &Output, args: CompletionArgs) -> Result<ExitStatus, CliError> {
    let (shell, name) = match args.shell {
        CompletionShell::Bash => (Shell::Bash, "bash"),
        CompletionShell::Zsh => (Shell::Zsh, "zsh"),
        CompletionShell::Fish => (Shell::Fish, "fish"),
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "admissionctl", &mut script);
    let script = String::from_utf8(script)
        .map_err(|e| CliError::usage(format_args!("the {name} script is not UTF-8: {e}")))?;
    let text = if output.json {
        format!(
            "{}\n",
            serde_json::json!({ "shell": name, "script": script })
        )
    } else {
        script
    };
    match std::io::stdout().write_all(text.as_bytes()) {
        // `admissionctl completion bash | head` closes the pipe early; that is not a failure.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::usage(
            format_args!("cannot write the {name} script: {error}"),
        )),
        _ => Ok(ExitStatus::Ok),
    }
}
