//! FILE send: writes a message's body into a folder atomically (temporary file, fsync,
//! rename, fsync of the folder), so a reader never sees half a file and a crash leaves
//! either the whole file or none. The name comes from the port's template; with the
//! default, `{message_id}`, a redelivery replaces the same file instead of adding one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tandem_core::Value;

use crate::file_name::FileNameTemplate;
use crate::send::Delivery;

/// Writes `delivery` into `folder`; the error is the reason recorded with the failure.
pub async fn deliver(
    folder: &Path,
    file_name: &FileNameTemplate,
    delivery: &Delivery,
) -> Result<(), String> {
    let name = file_name.render(&delivery.message_id, |property| {
        delivery.property(property).map(value_text)
    })?;
    let folder = folder.to_path_buf();
    let body = delivery.body.clone();
    let temporary_tag = delivery.instance;
    tokio::task::spawn_blocking(move || write_atomically(&folder, &name, &body, temporary_tag))
        .await
        .map_err(|error| format!("the file writer stopped: {error}"))?
}

fn write_atomically(folder: &Path, name: &str, body: &[u8], tag: u64) -> Result<(), String> {
    let describe = |what: &str, path: &Path, error: std::io::Error| {
        format!("cannot {what} {}: {error}", path.display())
    };
    fs::create_dir_all(folder).map_err(|error| describe("create folder", folder, error))?;
    let temporary: PathBuf = folder.join(format!(".{name}.tandem-{tag}.tmp"));
    let target = folder.join(name);
    let written = File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(body)?;
            file.sync_all()
        })
        .map_err(|error| describe("write", &temporary, error));
    if let Err(reason) = written {
        let _ = fs::remove_file(&temporary);
        return Err(reason);
    }
    fs::rename(&temporary, &target).map_err(|error| describe("rename into", &target, error))?;
    File::open(folder)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| describe("sync folder", folder, error))
}

/// A property value as it appears in a file name: strings without quotes.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporaries() {
        let folder = tempfile::tempdir().expect("temp dir");
        write_atomically(folder.path(), "m-1", b"first", 1).expect("written");
        write_atomically(folder.path(), "m-1", b"second", 2).expect("rewritten");
        let names: Vec<String> = fs::read_dir(folder.path())
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["m-1"]);
        let body = fs::read(folder.path().join("m-1")).expect("read");
        assert_eq!(body, b"second");
    }

    #[test]
    fn values_in_names_are_unquoted() {
        assert_eq!(value_text(&Value::String("acme".into())), "acme");
        assert_eq!(value_text(&Value::Int(7)), "7");
    }
}
