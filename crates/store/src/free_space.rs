//! The free space of the filesystem that holds a node's files: what a new file (a snapshot)
//! or a growing one (the store, the log) can still take.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The bytes an unprivileged process may still write on the filesystem holding `path`.
pub fn filesystem_free_bytes(path: &Path) -> io::Result<u64> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `name` is a NUL-terminated path and `stats` is a buffer of the size statvfs
    // writes; it is read only after statvfs reported success.
    let stats = unsafe {
        if libc::statvfs(name.as_ptr(), stats.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        stats.assume_init()
    };
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_a_real_directory_is_measured() {
        let directory = tempfile::tempdir().unwrap();
        assert!(filesystem_free_bytes(directory.path()).unwrap() > 0);
        let missing = directory.path().join("missing");
        assert!(filesystem_free_bytes(&missing).is_err());
    }
}
