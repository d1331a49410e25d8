//! Group commit shares transactions between concurrent callers; a storage failure rolls
//! back the whole batch, acknowledges nothing, and leaves the machine as it was on disk. A
//! failed batch from a replicated log halts the store, so that no log entry is skipped. A
//! replicated batch answered before its transaction commits is still what a read then sees.

mod common;

use std::path::Path;

use rusqlite::Connection;
use tandem_core::command::Command;
use tandem_core::error::ErrorCode;
use tandem_core::outcome::Outcome;
use tandem_store::{Batch, Store, StoreHandle, integrity};

use common::{create_catalog, new_message, open, publish, runtime};

const PUBLISHES: usize = 2_000;

/// A temporary directory, a store in it with the test catalog created, its handle, and a
/// runtime to call it from: how every test here begins.
fn cataloged_store() -> (
    tempfile::TempDir,
    Store,
    StoreHandle,
    tokio::runtime::Runtime,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let handle = store.handle();
    let runtime = runtime();
    runtime.block_on(create_catalog(&handle));
    (dir, store, handle, runtime)
}

#[test]
fn concurrent_publishes_share_commits() {
    let (dir, store, handle, runtime) = cataloged_store();
    let before = handle.metrics().snapshot();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..PUBLISHES)
            .map(|index| {
                let handle = handle.clone();
                tokio::spawn(
                    async move { handle.execute(publish(&format!("m{index}"), "b")).await },
                )
            })
            .collect();
        for (index, task) in tasks.into_iter().enumerate() {
            let outcome = task.await.expect("publish task");
            let Ok(Outcome::Published(receipts)) = &outcome else {
                panic!("publish m{index}: {outcome:?}");
            };
            let receipt = receipts[0].as_ref().expect("stored");
            assert!(
                !receipt.duplicate && receipt.instances.len() == 1,
                "{receipt:?}"
            );
        }
    });
    let after = handle.metrics().snapshot();
    let commits = after.commits - before.commits;
    assert_eq!(after.commands - before.commands, PUBLISHES as u64);
    assert!(
        commits < (PUBLISHES / 2) as u64,
        "{PUBLISHES} concurrent publishes took {commits} commits; group commit should share them"
    );
    assert_eq!(handle.catalog().state.message_count, PUBLISHES as u64);
    assert_eq!(after.storage_failures, 0);
    store.close();
    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
    assert_eq!(report.messages, PUBLISHES as u64);
}

/// A trigger added behind the store's back makes inserting the instance of message `poison`
/// fail halfway through a batch.
const POISON_TRIGGER: &str = "CREATE TRIGGER poison BEFORE INSERT ON instances \
     WHEN NEW.message_id = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;";

/// A connection behind the store's back, which added [`POISON_TRIGGER`].
fn add_poison_trigger(dir: &Path) -> Connection {
    let saboteur = common::database(dir);
    saboteur
        .execute_batch(&format!("PRAGMA busy_timeout = 5000; {POISON_TRIGGER}"))
        .expect("add the trigger");
    saboteur
}

fn drop_poison_trigger(saboteur: &Connection) {
    saboteur
        .execute_batch("DROP TRIGGER poison;")
        .expect("drop the trigger");
}

#[test]
fn a_storage_failure_rolls_back_the_batch_and_acknowledges_nothing() {
    let (dir, store, handle, runtime) = cataloged_store();
    runtime.block_on(async {
        let first = handle.execute(publish("m0", "a")).await;
        assert!(first.is_ok(), "{first:?}");
    });
    let before = handle.catalog().state.clone();
    let saboteur = add_poison_trigger(dir.path());

    // One batch: a good message (stored first) and the poisoned one.
    let both = Command::Publish {
        publisher: "test".to_string(),
        messages: vec![new_message("good", "a"), new_message("poison", "a")],
    };
    let outcome = runtime.block_on(handle.execute(both));
    let error = outcome.expect_err("the batch must fail");
    assert_eq!(error.code, ErrorCode::Unavailable, "{error}");
    assert!(
        error.message.contains("nothing was acknowledged"),
        "unclear message: {error}"
    );
    assert_eq!(handle.metrics().snapshot().storage_failures, 1);
    assert_eq!(
        handle.catalog().state,
        before,
        "the machine is reloaded as it was on disk"
    );

    drop_poison_trigger(&saboteur);
    let retried = runtime.block_on(handle.execute(publish("good", "a")));
    let Ok(Outcome::Published(receipts)) = &retried else {
        panic!("retry failed: {retried:?}");
    };
    let receipt = receipts[0].as_ref().expect("stored on retry");
    assert!(
        !receipt.duplicate,
        "the rolled-back publish must not count for dedupe"
    );
    let next = before.next_instance_id;
    assert_eq!(
        receipt.instances,
        vec![next, next + 1],
        "instance ids of the failed batch are reused, none skipped"
    );
    assert_eq!(handle.catalog().state.message_count, 2);
    store.close();
    drop(saboteur);
    let report = integrity::check(dir.path()).expect("integrity check runs");
    assert!(report.is_healthy(), "problems: {:?}", report.problems);
    assert_eq!(
        report.messages, 2,
        "m0 and good; nothing of the failed batch"
    );
}

/// A connection behind the store's back that holds the write lock (until it runs `COMMIT`),
/// having run `then` in its transaction.
fn hold_write_lock(dir: &Path, then: &str) -> Connection {
    let blocker = common::database(dir);
    blocker
        .execute_batch(&format!(
            "PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE; {then}"
        ))
        .expect("take the write lock");
    blocker
}

/// A replicated batch is answered before its transaction commits; a read the caller makes
/// once answered still sees what the batch did.
#[test]
fn a_read_after_an_answer_sees_the_batch_before_its_transaction_commits() {
    const BATCHES: usize = 200;
    const MESSAGES_PER_BATCH: usize = 10;
    let (dir, store, handle, runtime) = cataloged_store();
    // Holding the write lock keeps the committer from starting, so that the batches below
    // pile up and most of them share one long transaction.
    let blocker = hold_write_lock(dir.path(), "");
    runtime.block_on(async {
        let mut answers = Vec::with_capacity(BATCHES);
        for batch in 0..BATCHES {
            let publish = Command::Publish {
                publisher: "test".to_string(),
                messages: (0..MESSAGES_PER_BATCH)
                    .map(|message| new_message(&format!("b{batch}-m{message}"), "a"))
                    .collect(),
            };
            let position = format!("entry {batch}");
            let submitted = handle.submit(replicated(publish, &position)).await;
            answers.push(submitted.expect("queued"));
        }
        blocker.execute_batch("COMMIT;").expect("release the lock");
        for (batch, answer) in answers.into_iter().enumerate() {
            let outcomes = answer.await.expect("applied");
            assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
            let body = handle
                .message_body(format!("b{batch}-m0"))
                .await
                .expect("read");
            assert!(body.is_some(), "batch {batch} answered, yet not readable");
            let counted = handle.catalog().state.message_count;
            assert!(
                counted >= ((batch + 1) * MESSAGES_PER_BATCH) as u64,
                "batch {batch} answered, yet the catalog counts {counted} messages"
            );
        }
    });
    assert_eq!(
        handle.catalog().state.message_count,
        (BATCHES * MESSAGES_PER_BATCH) as u64
    );
    store.close();
}

/// A replicated batch is answered once applied, before its transaction commits: when a later
/// batch of the same transaction fails, the earlier one keeps its answer though nothing of it
/// was committed, and replaying the log gives it the same outcome again.
#[test]
fn an_early_answer_is_what_the_replay_gives_when_its_transaction_fails() {
    let entries = [("m1", "entry 1"), ("m2", "entry 2"), ("poison", "entry 3")];
    let (dir, store, handle, runtime) = cataloged_store();
    // The committer takes entry 1 and waits for the write lock; entries 2 and 3 queue behind
    // it meanwhile, so they share the next transaction.
    let blocker = hold_write_lock(dir.path(), POISON_TRIGGER);
    let outcomes = runtime.block_on(async {
        let mut answers = Vec::new();
        for (index, (id, position)) in entries.into_iter().enumerate() {
            let submitted = handle.submit(replicated(publish(id, "a"), position)).await;
            answers.push(submitted.expect("queued"));
            if index == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        blocker.execute_batch("COMMIT;").expect("release the lock");
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await);
        }
        handle.settled().await;
        outcomes
    });
    let [first, answered, failed] = <[_; 3]>::try_from(outcomes).expect("three answers");
    first.expect("entry 1 applies");
    let answered = answered.expect("entry 2 is answered before its transaction fails");
    assert!(failed.is_err(), "the poisoned entry fails: {failed:?}");
    // Entry 1 commits on its own unless the committer was slow to take it (then it shares
    // the failed transaction too).
    let saved = saved_position(&handle);
    assert!(
        matches!(saved.as_deref(), Some("entry 1") | None),
        "entry 2 must not be committed: {saved:?}"
    );
    assert_eq!(
        runtime
            .block_on(handle.message_body("m2".into()))
            .expect("read"),
        None,
        "entry 2 was rolled back with the poisoned entry"
    );
    store.close();
    drop_poison_trigger(&blocker);

    let store = open(dir.path());
    let handle = store.handle();
    let replay_from = usize::from(saved.is_some());
    let replayed = runtime.block_on(async {
        let mut replayed = Vec::new();
        for (id, position) in &entries[replay_from..] {
            let outcome = handle.apply(replicated(publish(id, "a"), position)).await;
            replayed.push(outcome.expect("applies after the restart"));
        }
        replayed
    });
    let timeless_all = |outcomes: &[tandem_core::error::Result<Outcome>]| -> Vec<_> {
        outcomes.iter().cloned().map(common::timeless).collect()
    };
    assert_eq!(
        timeless_all(&replayed[1 - replay_from]),
        timeless_all(&answered)
    );
    store.close();
}

/// Replicated batches sent one after the other, each once the one before was answered,
/// share transactions: the committer keeps a transaction of replicated batches open for a
/// moment (`COMMIT_LINGER`) instead of committing each alone. Every batch is still readable
/// once the store has settled, and the store saves the last one's position.
#[test]
fn replicated_batches_one_after_the_other_share_a_lingering_transaction() {
    const BATCHES: usize = 200;
    let (_dir, store, handle, runtime) = cataloged_store();
    let before = handle.metrics().snapshot();
    runtime.block_on(async {
        for batch in 0..BATCHES {
            let position = format!("entry {batch}");
            let publish = publish(&format!("m{batch}"), "a");
            let outcomes = handle
                .apply(replicated(publish, &position))
                .await
                .expect("applied");
            assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        }
        handle.settled().await;
    });
    let commits = handle.metrics().snapshot().commits - before.commits;
    assert!(
        commits <= (BATCHES / 2) as u64,
        "{BATCHES} batches, each sent once the one before was answered, took {commits} \
         commits; a lingering transaction should have taken most of them together"
    );
    assert_eq!(
        saved_position(&handle).as_deref(),
        Some(format!("entry {}", BATCHES - 1).as_str())
    );
    for batch in [0, BATCHES / 2, BATCHES - 1] {
        let body = runtime
            .block_on(handle.message_body(format!("m{batch}")))
            .expect("read");
        assert!(body.is_some(), "batch {batch} is not readable once settled");
    }
    store.close();
}

/// Closing the store while a transaction lingers commits it: the batch answered just before
/// is there when the store opens again.
#[test]
fn closing_the_store_commits_the_lingering_transaction() {
    let (dir, store, handle, runtime) = cataloged_store();
    let outcomes = runtime
        .block_on(handle.apply(replicated(publish("last", "a"), "entry 1")))
        .expect("applied");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    store.close();

    let store = open(dir.path());
    let handle = store.handle();
    assert_eq!(saved_position(&handle).as_deref(), Some("entry 1"));
    let body = runtime
        .block_on(handle.message_body("last".into()))
        .expect("read");
    assert_eq!(body.as_deref(), Some(&b"last"[..]));
    store.close();
}

/// A batch from a replicated log at `position` (the store keeps the position opaque).
fn replicated(command: Command, position: &str) -> Batch {
    Batch {
        timestamp_ms: 1_000,
        commands: vec![command],
        event: None,
        position: Some(position.as_bytes().to_vec()),
    }
}

fn saved_position(handle: &StoreHandle) -> Option<String> {
    handle
        .position()
        .map(|bytes| String::from_utf8(bytes).expect("test positions are text"))
}

#[test]
fn a_failed_replicated_batch_halts_the_store_until_it_reopens() {
    let (dir, store, handle, runtime) = cataloged_store();
    runtime.block_on(async {
        let first = handle
            .apply(replicated(publish("m1", "a"), "entry 1"))
            .await;
        assert!(first.is_ok(), "{first:?}");
    });
    let saboteur = add_poison_trigger(dir.path());
    let failed = runtime.block_on(handle.apply(replicated(publish("poison", "a"), "entry 2")));
    assert!(failed.is_err(), "the poisoned entry must fail: {failed:?}");
    drop_poison_trigger(&saboteur);

    // Applying entry 3 now would skip entry 2 for good.
    let refused = runtime.block_on(handle.apply(replicated(publish("m3", "a"), "entry 3")));
    let error = refused.expect_err("the entry behind a failed one must be refused");
    assert!(
        error.to_string().contains("halted"),
        "unclear refusal: {error}"
    );
    assert_eq!(saved_position(&handle).as_deref(), Some("entry 1"));
    assert_eq!(handle.metrics().snapshot().storage_failures, 1);
    store.close();

    let store = open(dir.path());
    let handle = store.handle();
    assert_eq!(saved_position(&handle).as_deref(), Some("entry 1"));
    runtime.block_on(async {
        for (id, position) in [("poison", "entry 2"), ("m3", "entry 3")] {
            let replayed = handle.apply(replicated(publish(id, "a"), position)).await;
            assert!(
                replayed.is_ok(),
                "{position} after the restart: {replayed:?}"
            );
        }
        handle.settled().await;
    });
    assert_eq!(saved_position(&handle).as_deref(), Some("entry 3"));
    assert_eq!(handle.catalog().state.message_count, 3);
    store.close();
    drop(saboteur);
}
