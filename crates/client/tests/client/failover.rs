//! Finding the active among the addresses given, and moving on when a node dies.

use std::time::{Duration, Instant};

use tandem_client::client::MAX_REDIRECTS;
use tandem_client::{RetryPolicy, TandemClient};

use crate::support::{Answer, FakeNode, Script, black_hole, free_address, settle_request};

#[tokio::test]
async fn a_dead_node_first_in_the_list_is_skipped_and_the_passive_redirects() {
    let active = FakeNode::start(Script::always(Answer::Serve));
    let passive = FakeNode::start(Script::always(Answer::Redirect(active.address.clone())));
    let dead = free_address();
    let client = TandemClient::open(&format!("{dead},{}", passive.address)).expect("open");
    client.complete(settle_request()).await.expect("completed");
    assert_eq!(client.connection().address(), active.address);
    assert_eq!((passive.calls(), active.calls()), (1, 1));
    // Later calls go straight to the active.
    client.complete(settle_request()).await.expect("completed");
    assert_eq!((passive.calls(), active.calls()), (1, 2));
}

/// A machine that is off (or cut off) answers no connection attempt at all, where a dead
/// process's host refuses it at once. A call whose connection never opened was never sent:
/// even a switchover, which is not sent again when its outcome is unknown, goes on to the
/// next node.
#[tokio::test]
async fn a_node_whose_address_swallows_connections_is_left_for_the_next() {
    let (swallowing, _hole) = black_hole();
    let active = FakeNode::start(Script::always(Answer::Serve));
    let client = TandemClient::open(&format!("{swallowing},{}", active.address)).expect("open");
    let answer = client.switchover(None).await;
    assert_eq!(answer.expect("answered by the next node"), 1);
    assert_eq!(client.connection().address(), active.address);
    assert_eq!(active.calls(), 1);
}

#[tokio::test]
async fn calls_move_to_the_next_address_when_the_current_node_dies() {
    let mut first = FakeNode::start(Script::always(Answer::Serve));
    let second = FakeNode::start(Script::always(Answer::Serve));
    let client =
        TandemClient::open(&format!("{},{}", first.address, second.address)).expect("open");
    client.complete(settle_request()).await.expect("first node");
    assert_eq!(second.calls(), 0);

    first.kill();
    let started = Instant::now();
    client
        .complete(settle_request())
        .await
        .expect("second node");
    assert_eq!(client.connection().address(), second.address);
    assert_eq!(second.calls(), 1);
    // Moving on to a listed node needs no pause.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_single_node_that_restarts_is_retried() {
    let mut node = FakeNode::start(Script::always(Answer::Serve));
    let address = node.address.clone();
    let client = TandemClient::open(&address).expect("open");
    client
        .complete(settle_request())
        .await
        .expect("before the restart");
    node.kill();
    let restarted = FakeNode::start_later(
        &address,
        Duration::from_millis(300),
        Script::always(Answer::Serve),
    );
    client
        .complete(settle_request())
        .await
        .expect("after the restart");
    assert_eq!(restarted.calls(), 1);
}

#[tokio::test]
async fn an_indefinite_retry_waits_for_a_node_that_comes_up_later() {
    let address = free_address();
    let client = TandemClient::open(&address)
        .expect("open")
        .with_retry_policy(RetryPolicy::indefinitely());
    let started = Instant::now();
    // Longer than the default deadline: only an indefinite retry gets there.
    let node = FakeNode::start_later(
        &address,
        Duration::from_secs(6),
        Script::always(Answer::Serve),
    );
    client
        .complete(settle_request())
        .await
        .expect("served at last");
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert_eq!(node.calls(), 1);
}

#[tokio::test]
async fn a_dead_single_node_fails_within_the_deadline_saying_what_to_do() {
    let address = free_address();
    let client = TandemClient::open(&address)
        .expect("open")
        .with_retry_policy(RetryPolicy::until(Duration::from_millis(400)));
    let started = Instant::now();
    let error = client
        .complete(settle_request())
        .await
        .expect_err("no node");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(error.code, "unavailable");
    assert!(error.message.contains(&address), "{error}");
    assert!(error.message.contains("connection refused"), "{error}");
    assert!(error.message.contains("tandem node start"), "{error}");
    // Refused connections never carried the call.
    assert!(!error.after_retry);
}

#[tokio::test]
async fn a_list_of_dead_nodes_names_each() {
    let (first, second) = (free_address(), free_address());
    let client = TandemClient::open(&format!("{first},{second}"))
        .expect("open")
        .with_retry_policy(RetryPolicy::until(Duration::from_millis(200)));
    let error = client
        .complete(settle_request())
        .await
        .expect_err("no node");
    assert_eq!(error.code, "unavailable");
    assert!(error.message.contains(&first), "{error}");
    assert!(error.message.contains(&second), "{error}");
    assert!(error.message.contains("tandem node start"), "{error}");
}

#[tokio::test]
async fn a_node_that_does_not_answer_in_time_is_left_for_the_next() {
    let silent = FakeNode::start(Script::always(Answer::ServeLate(Duration::from_secs(5))));
    let active = FakeNode::start(Script::always(Answer::Serve));
    let client = TandemClient::open(&format!("{},{}", silent.address, active.address))
        .expect("open")
        .with_call_timeout(Duration::from_millis(200));
    client
        .complete(settle_request())
        .await
        .expect("the next node");
    assert_eq!(client.connection().address(), active.address);
}

#[tokio::test]
async fn a_redirect_chain_longer_than_the_limit_reaches_the_active_after_a_pause() {
    let active = FakeNode::start(Script::always(Answer::Serve));
    let mut passives = Vec::new();
    let mut next = active.address.clone();
    for _ in 0..=MAX_REDIRECTS {
        let passive = FakeNode::start(Script::always(Answer::Redirect(next)));
        next = passive.address.clone();
        passives.push(passive);
    }
    let client = TandemClient::open(&next).expect("open");
    client
        .complete(settle_request())
        .await
        .expect("reached the active");
    assert_eq!(client.connection().address(), active.address);

    // Without retries, the chain is cut short.
    let client = TandemClient::open(&next)
        .expect("open")
        .with_retry_policy(RetryPolicy::no_retries());
    let error = client
        .complete(settle_request())
        .await
        .expect_err("too long");
    assert!(error.is_code("not_active"), "{error}");
}

#[tokio::test]
async fn passives_naming_each_other_are_given_up_on_at_the_deadline() {
    let first_address = free_address();
    let second = FakeNode::start(Script::always(Answer::Redirect(first_address.clone())));
    let first = FakeNode::start_later(
        &first_address,
        Duration::ZERO,
        Script::always(Answer::Redirect(second.address.clone())),
    );
    let client = TandemClient::open(&second.address)
        .expect("open")
        .with_retry_policy(RetryPolicy::until(Duration::from_millis(300)));
    let started = Instant::now();
    let error = client
        .complete(settle_request())
        .await
        .expect_err("no active");
    let elapsed = started.elapsed();
    assert!(error.is_code("not_active"), "{error}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(first.calls() >= 2, "{} calls", first.calls());
}

/// A client that cannot reach the active (its route to that machine is down) while a
/// passive answers: the passive, which names that active, is asked to relay the calls, and
/// later calls go the same way without trying the active again.
#[tokio::test]
async fn calls_go_through_a_passive_that_relays_them_when_the_active_cannot_be_reached() {
    let unreachable_active = free_address();
    let passive = FakeNode::start(Script::always(Answer::RelayOrRedirect(
        unreachable_active.clone(),
    )));
    let client =
        TandemClient::open(&format!("{unreachable_active},{}", passive.address)).expect("open");
    client
        .complete(settle_request())
        .await
        .expect("relayed by the passive");
    // Asked plainly first (it redirected), then to relay.
    assert_eq!((passive.calls(), passive.script.relay_requests()), (2, 1));
    client
        .complete(settle_request())
        .await
        .expect("relayed again");
    assert_eq!((passive.calls(), passive.script.relay_requests()), (3, 2));
    assert_eq!(client.connection().address(), passive.address);
}

/// A passive that names an active this client has not failed to reach is not asked to
/// relay: the client calls the active.
#[tokio::test]
async fn a_redirect_to_a_reachable_active_is_followed_without_relaying() {
    let active = FakeNode::start(Script::always(Answer::Serve));
    let passive = FakeNode::start(Script::always(Answer::RelayOrRedirect(
        active.address.clone(),
    )));
    let client = TandemClient::open(&passive.address).expect("open");
    client.complete(settle_request()).await.expect("served");
    assert_eq!(passive.script.relay_requests(), 0);
    assert_eq!((passive.calls(), active.calls()), (1, 1));
}
