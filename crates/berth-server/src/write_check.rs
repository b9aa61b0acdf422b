//! The start-up check that the data directory can be written: a read-only mount or a
//! full disk otherwise shows only at the first write, as a 503 to whoever made it.

use std::path::Path;

/// Creates and removes a small file in `dir`.
///
/// # Errors
///
/// The I/O error that stops it (read-only filesystem, no space, no permission).
pub fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".berth-write-check");
    std::fs::write(&path, b"berth")?;
    std::fs::remove_file(&path)
}

/// Logs a warning naming `dir` when it cannot be written; the server still starts, to
/// serve reads, and `/readyz` reports the store as not ready until writes work.
pub fn warn_if_read_only(dir: &Path) {
    if let Err(error) = probe(dir) {
        tracing::warn!(
            dir = %dir.display(),
            %error,
            "the data directory cannot be written: every change will fail until it can \
             (free space, or make it writable); /readyz reports it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_passes_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        probe(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_read_only_mount_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(std::env::var_os("CI").is_none(), "CI runs this test as root");
            eprintln!("skipped: cannot mount a tmpfs here (run as root)");
            return;
        }
        let result = probe(dir.path());
        let _ = std::process::Command::new("umount").arg(dir.path()).status();
        let error = result.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(30), "EROFS: {error}");
    }
}
