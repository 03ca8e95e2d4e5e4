//! The checkpoint directory: each signed checkpoint as `checkpoint-<tree_size>`, and the
//! newest also as `latest`, so a mirror or a verifier can fetch them by name. Every file is
//! written atomically: a temporary file in the same directory, fsynced, renamed over the
//! name, then the directory fsynced, so a reader sees the old note or the new one, whole.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `note` as `checkpoint-<tree_size>` and `latest` in `dir` (created if missing).
pub(super) fn write_checkpoint(dir: &Path, tree_size: u64, note: &str) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_atomically(dir, &format!("checkpoint-{tree_size}"), note)?;
    write_atomically(dir, "latest", note)?;
    // The renames are durable once the directory is.
    File::open(dir)?.sync_all()
}

fn write_atomically(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, dir.join(name))
    })();
    if written.is_err() {
        // Best effort: a leftover temporary file is harmless and replaced by the next write.
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_numbered_file_and_latest() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("checkpoints");
        write_checkpoint(&sub, 3, "three\n").unwrap();
        write_checkpoint(&sub, 5, "five\n").unwrap();
        assert_eq!(
            fs::read_to_string(sub.join("checkpoint-3")).unwrap(),
            "three\n"
        );
        assert_eq!(
            fs::read_to_string(sub.join("checkpoint-5")).unwrap(),
            "five\n"
        );
        assert_eq!(fs::read_to_string(sub.join("latest")).unwrap(), "five\n");
        let mut names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["checkpoint-3", "checkpoint-5", "latest"]);
    }

    #[test]
    fn a_path_that_is_a_file_fails_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        assert!(write_checkpoint(&file, 1, "note\n").is_err());
    }
}
