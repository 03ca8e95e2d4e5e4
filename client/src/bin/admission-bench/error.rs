//! The one error type of the bench, and its exit status.

use std::{io, path::PathBuf, process::ExitCode};

use admission_client::ClientError;
use admission_contract::credential::SignError;

/// Why a run could not be made or finished. Rejected or failed calls are not errors: they are
/// counted in the report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag or an input file is unusable.
    #[error("{0}")]
    Usage(String),
    /// An input file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A connection to the server could not be opened.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// A credential could not be signed.
    #[error("cannot sign a credential: {0}")]
    Sign(SignError),
    /// The CPU time of a process could not be read.
    #[error("cannot read the CPU time of process {pid} from /proc/{pid}/stat: {detail}")]
    ProcStat {
        /// The process.
        pid: u32,
        /// What went wrong.
        detail: String,
    },
    /// The disk probe could not write or sync its file.
    #[error("fsync probe in {dir}: {source}")]
    Fsync {
        /// The directory probed.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A load or probe task ended abnormally.
    #[error("a bench task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A helper thread panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
}

/// Exit status for unusable flags or input files.
pub const EXIT_USAGE: u8 = 2;

// === impl BenchError ===

impl BenchError {
    /// A usage error with `message`.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// The exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            BenchError::Usage(_) | BenchError::Read { .. } => ExitCode::from(EXIT_USAGE),
            BenchError::Connect(_)
            | BenchError::Sign(_)
            | BenchError::ProcStat { .. }
            | BenchError::Fsync { .. }
            | BenchError::Task(_)
            | BenchError::Panicked(_) => ExitCode::FAILURE,
        }
    }
}
