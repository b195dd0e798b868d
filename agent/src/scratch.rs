//! Private scratch folders: a new folder under the system's temporary
//! directory, readable by this user only (mode 700), removed when dropped.
//! Other users on the robot can neither read what passes through it (weights,
//! secrets) nor put a file or link there in advance.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

/// A private folder, removed with what it holds when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new private folder named after `tag`.
    pub fn new(tag: &str) -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let mut last = None;
        for attempt in 0..16u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let p = base.join(format!(
                "onboard-{tag}-{}-{nanos:x}-{attempt}",
                std::process::id()
            ));
            // `create`, not `create_all`: a name someone else made first is
            // never used.
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(Scratch(p)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no attempt made"), anyhow::Error::from))
            .with_context(|| format!("cannot make a private folder in {}", base.display()))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_and_removed() {
        let s = Scratch::new("test").unwrap();
        let p = s.path().to_path_buf();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        std::fs::write(p.join("x"), b"1").unwrap();
        let other = Scratch::new("test").unwrap();
        assert_ne!(other.path(), p.as_path());
        drop(s);
        assert!(!p.exists());
    }
}
