//! Files in a directory, for unit tests of what cleans snapshot directories up.

use std::path::Path;

/// Creates each named file in `directory`.
pub fn create(directory: &Path, names: &[&str]) {
    for name in names {
        std::fs::write(directory.join(name), b"x").expect("write a file");
    }
}

/// The names of the files in `directory`, sorted.
pub fn names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .expect("read the directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into()
        })
        .collect();
    names.sort();
    names
}
