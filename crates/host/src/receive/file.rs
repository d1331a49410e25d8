//! FILE receive: picks files up from a drop folder by pattern and publishes each as one
//! message. No file is lost and none is published twice, whatever crashes:
//!
//! 1. **Claim**: the file is renamed to `.tandem-claim-<message id>-<name>`. The rename is
//!    atomic, so of several host instances polling one folder exactly one claims a file,
//!    and the message id is now stored with the file itself.
//! 2. **Publish** with that id, waiting through an outage of the message box (pickup of
//!    further files pauses meanwhile).
//! 3. **Delete** the file (or move it into the archive folder) only after the durable
//!    acknowledgement.
//!
//! A crash between 1 and 3 leaves a claimed file; the next pass (of any instance)
//! publishes it again under the same id, which the message box stores once. A file the
//! message box refuses (no subscription matches, a property of the wrong type, too large)
//! is moved to `rejected/` beside a `.error.txt` that says why.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use tandem_client::{TandemClient, new_message_id};
use tandem_core::{Property, Value, limits};
use tokio::sync::watch;

use crate::bindings::{FileReceive, ReceiveLocation};
use crate::promotion::{Arrival, promote};
use crate::receive::{PublishOutcome, publish};

/// Claimed files start with this.
const CLAIM_PREFIX: &str = ".tandem-claim-";
/// Every message id this module makes has this many characters (a UUID's shape).
const MESSAGE_ID_CHARS: usize = 36;
/// The folder, inside the drop folder, for files the message box refused.
pub const REJECTED_FOLDER: &str = "rejected";
/// The written property carrying the received file's name.
pub const RECEIVED_FILE_NAME_PROPERTY: &str = "ReceivedFileName";

/// A claimed file: where it is now, its original name, and its message id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    path: PathBuf,
    name: String,
    message_id: String,
}

/// Polls and publishes until `shutdown` turns true.
pub async fn run(
    location: &ReceiveLocation,
    file: &FileReceive,
    client: &TandemClient,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let claims = match claim_batch(file).await {
            Ok(claims) => claims,
            Err(reason) => {
                tracing::warn!(location = %location.name, "cannot pick files up: {reason}");
                Vec::new()
            }
        };
        if claims.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(file.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for claim in claims {
            tokio::select! {
                _ = publish_claim(location, file, client, &claim) => {}
                // The claim stays; the next start publishes it again under the same id.
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Claims up to a batch of files: first those claimed before (by a crashed run), then new
/// ones matching the pattern, oldest name first.
async fn claim_batch(file: &FileReceive) -> Result<Vec<Claim>, String> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || claim_batch_blocking(&file))
        .await
        .map_err(|error| format!("the pickup stopped: {error}"))?
}

fn claim_batch_blocking(file: &FileReceive) -> Result<Vec<Claim>, String> {
    let entries = fs::read_dir(&file.folder)
        .map_err(|error| format!("cannot list {}: {error}", file.folder.display()))?;
    let mut claimed = Vec::new();
    let mut ready = Vec::new();
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !is_file {
            continue;
        }
        if let Some(claim) = parse_claim(&file.folder, &name) {
            claimed.push(claim);
        } else if !name.starts_with('.') && file.pattern.matches(&name) {
            ready.push(name);
        }
    }
    claimed.sort_by(|a, b| a.name.cmp(&b.name));
    ready.sort();
    let room = limits::HOST_FILE_PICKUP_BATCH.saturating_sub(claimed.len());
    claimed.truncate(limits::HOST_FILE_PICKUP_BATCH);
    for name in ready.into_iter().take(room) {
        if let Some(claim) = claim(&file.folder, &name)? {
            claimed.push(claim);
        }
    }
    Ok(claimed)
}

/// Renames `name` to its claim; None when another instance claimed it first.
fn claim(folder: &Path, name: &str) -> Result<Option<Claim>, String> {
    let message_id = new_message_id();
    let claim = Claim {
        path: folder.join(format!("{CLAIM_PREFIX}{message_id}-{name}")),
        name: name.to_string(),
        message_id,
    };
    match fs::rename(folder.join(name), &claim.path) {
        Ok(()) => Ok(Some(claim)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("cannot claim {name}: {error}")),
    }
}

fn parse_claim(folder: &Path, file_name: &str) -> Option<Claim> {
    let rest = file_name.strip_prefix(CLAIM_PREFIX)?;
    let message_id = rest.get(..MESSAGE_ID_CHARS)?;
    let name = rest.get(MESSAGE_ID_CHARS..)?.strip_prefix('-')?;
    Some(Claim {
        path: folder.join(file_name),
        name: name.to_string(),
        message_id: message_id.to_string(),
    })
}

async fn publish_claim(
    location: &ReceiveLocation,
    file: &FileReceive,
    client: &TandemClient,
    claim: &Claim,
) {
    let body = match tokio::fs::read(&claim.path).await {
        Ok(body) => body,
        Err(error) if error.kind() == ErrorKind::NotFound => return, // another instance
        Err(error) => {
            let reason = format!("cannot read the file: {error}");
            return reject(location, file, claim, &reason).await;
        }
    };
    let arrival = Arrival {
        body: &body,
        headers: &[],
        file_name: Some(&claim.name),
    };
    let mut properties = match promote(&location.promotions, arrival) {
        Ok(properties) => properties,
        Err(reason) => return reject(location, file, claim, &reason).await,
    };
    properties.push(Property {
        name: RECEIVED_FILE_NAME_PROPERTY.to_string(),
        value: Value::String(claim.name.clone()),
        promoted: false,
    });
    match publish(client, &location.name, &claim.message_id, body, properties).await {
        PublishOutcome::Stored { .. } => finish(location, file, claim).await,
        PublishOutcome::Refused(error) => reject(location, file, claim, &error.to_string()).await,
        // Only with a client that gives up; the claim stays for the next pass.
        PublishOutcome::Unavailable(error) => {
            tracing::warn!(location = %location.name, file = %claim.name, "not published yet: {error}");
        }
    }
}

/// After the durable acknowledgement: delete the file, or move it into the archive.
async fn finish(location: &ReceiveLocation, file: &FileReceive, claim: &Claim) {
    let result = match &file.archive {
        None => tokio::fs::remove_file(&claim.path).await,
        Some(archive) => move_into(archive, &claim.path, &claim.name).await,
    };
    match result {
        Ok(()) => {
            tracing::debug!(location = %location.name, file = %claim.name, message_id = %claim.message_id, "published")
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => tracing::error!(
            location = %location.name,
            "published {} but cannot remove it ({error}); it will be published again under \
             the same id, which is stored once",
            claim.name
        ),
    }
}

/// A refused file goes to `rejected/` with a note saying why.
async fn reject(location: &ReceiveLocation, file: &FileReceive, claim: &Claim, reason: &str) {
    tracing::warn!(location = %location.name, file = %claim.name, "refused: {reason}");
    let rejected = file.folder.join(REJECTED_FOLDER);
    let note = rejected.join(format!("{}.error.txt", claim.name));
    let moved = async {
        move_into(&rejected, &claim.path, &claim.name).await?;
        tokio::fs::write(&note, format!("{reason}\n")).await
    };
    if let Err(error) = moved.await {
        tracing::error!(location = %location.name, file = %claim.name, "cannot move a refused file to {}: {error}", rejected.display());
    }
}

async fn move_into(folder: &Path, from: &Path, name: &str) -> std::io::Result<()> {
    tokio::fs::create_dir_all(folder).await?;
    tokio::fs::rename(from, folder.join(name)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_keep_the_id_and_the_original_name() {
        let folder = tempfile::tempdir().expect("temp dir");
        fs::write(folder.path().join("order-1.json"), b"{}").expect("drop");
        let claim = claim(folder.path(), "order-1.json")
            .expect("claimed")
            .expect("present");
        assert_eq!(claim.message_id.len(), MESSAGE_ID_CHARS);
        let claimed_name = claim.path.file_name().expect("name").to_string_lossy();
        let parsed = parse_claim(folder.path(), &claimed_name).expect("a claim");
        assert_eq!(parsed, claim);
        let again = super::claim(folder.path(), "order-1.json").expect("no error");
        assert_eq!(again, None, "a file is claimed once");
    }

    #[test]
    fn a_batch_takes_earlier_claims_first_and_skips_what_does_not_match() {
        let folder = tempfile::tempdir().expect("temp dir");
        let earlier = claim_in(folder.path(), "b.json");
        for name in ["a.json", "c.txt", ".hidden.json"] {
            fs::write(folder.path().join(name), b"{}").expect("drop");
        }
        let file = FileReceive {
            folder: folder.path().to_path_buf(),
            pattern: crate::file_name::Glob::new("*.json").expect("pattern"),
            archive: None,
            poll_interval: std::time::Duration::from_millis(10),
        };
        let batch = claim_batch_blocking(&file).expect("batch");
        let names: Vec<&str> = batch.iter().map(|claim| claim.name.as_str()).collect();
        assert_eq!(names, ["b.json", "a.json"]);
        assert_eq!(batch[0].message_id, earlier.message_id);
        assert!(folder.path().join("c.txt").exists());
    }

    fn claim_in(folder: &Path, name: &str) -> Claim {
        fs::write(folder.join(name), b"{}").expect("drop");
        claim(folder, name).expect("claimed").expect("present")
    }
}
