//! The disk's fsync latency where the server keeps its data: append a small block to a file
//! and fsync it, many times, as a durable audit append does.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::{BenchError, tally};

/// Bytes appended before each fsync: one page, about what a small SQLite WAL commit writes.
pub const BLOCK_BYTES: usize = 4096;
/// The probe stops after this long even if samples are left.
const TIME_CAP: Duration = Duration::from_secs(30);

/// Latencies of write+fsync in one directory.
#[derive(Clone, Debug)]
pub struct FsyncProbe {
    /// The directory probed.
    pub dir: PathBuf,
    /// Nanoseconds per write+fsync.
    pub latency: Histogram<u64>,
}

/// Appends and fsyncs up to `samples` times in a new file in `dir`, then removes the file.
/// Blocking.
pub fn probe(dir: &Path, samples: u32) -> Result<FsyncProbe, BenchError> {
    let path = dir.join(format!(".admission-bench-fsync-{}", std::process::id()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|file| sample(file, samples));
    let removed = fs::remove_file(&path);
    let fsync_error = |source| BenchError::Fsync {
        dir: dir.to_path_buf(),
        source,
    };
    let latency = result.map_err(fsync_error)?;
    removed.map_err(fsync_error)?;
    Ok(FsyncProbe {
        dir: dir.to_path_buf(),
        latency,
    })
}

fn sample(mut file: File, samples: u32) -> std::io::Result<Histogram<u64>> {
    let block = [0x5a_u8; BLOCK_BYTES];
    let mut latency = tally::latency_histogram();
    let started = Instant::now();
    for _ in 0..samples {
        if started.elapsed() >= TIME_CAP {
            break;
        }
        let begun = Instant::now();
        file.write_all(&block)?;
        file.sync_all()?;
        latency.saturating_record(tally::nanos(begun.elapsed()));
    }
    Ok(latency)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe(dir.path(), 5).unwrap();
        assert_eq!(probe.latency.len(), 5);
        assert!(probe.latency.min() > 0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(super::probe(&dir.path().join("missing"), 1).is_err());
    }
}
