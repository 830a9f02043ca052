//! Durable file replacement: write a temporary file, fsync it, rename it over
//! the target, fsync the directory. A crash leaves either the old file or the
//! new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Creates `path` (and parents) as a directory readable only by its owner.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    set_owner_only(path, 0o700)
}

/// Sets Unix permission bits (owner-only modes for secrets).
pub fn set_owner_only(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Atomically and durably replaces `path` with `bytes` (mode 0600).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A bare file name has the empty path as its parent: that is ".".
    let dir = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path has no parent",
            ));
        }
    };
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Overwrites a file's current contents with zeros in place and fsyncs it,
/// then unlinks it. Best effort against remnants: on copy-on-write file
/// systems and SSDs the old blocks may survive (see the threat model).
pub fn scrub_and_remove(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(mut file) => {
            let len = file.metadata()?.len();
            let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
            file.write_all(&zeros)?;
            file.sync_all()?;
            drop(file);
            fs::remove_file(path)?;
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`atomic_write`] fsyncs the parent directory, which must be named:
/// a bare `wallet.json` has an empty parent, so make it `./wallet.json`.
pub fn with_explicit_parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new(".").join(path),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn scrub_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"secret").unwrap();
        scrub_and_remove(&path).unwrap();
        assert!(!path.exists());
        scrub_and_remove(&path).unwrap();
    }

    #[test]
    fn bare_file_names_get_an_explicit_parent() {
        assert_eq!(
            with_explicit_parent(Path::new("w.json")),
            Path::new("./w.json")
        );
        assert_eq!(
            with_explicit_parent(Path::new("/a/w.json")),
            Path::new("/a/w.json")
        );
    }
}
