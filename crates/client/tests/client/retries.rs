//! Which failures are retried, at what pace, and what a retried call reports.

use std::time::{Duration, Instant};

use tandem_client::{RetryPolicy, TandemClient};

use crate::support::{Answer, FakeNode, Script, settle_request};

#[tokio::test]
async fn elections_and_lost_quorums_are_waited_out() {
    let node = FakeNode::start(Script::then(
        vec![
            Answer::Refuse("unavailable"),
            Answer::Refuse("not_active"),
            Answer::Refuse("no_quorum"),
            Answer::Refuse("unavailable"),
        ],
        Answer::Serve,
    ));
    let client = TandemClient::open(&node.address).expect("open");
    client.complete(settle_request()).await.expect("elected");
    assert_eq!(node.calls(), 5);
}

#[tokio::test]
async fn an_endless_election_is_given_up_on_at_the_deadline() {
    let node = FakeNode::start(Script::always(Answer::Refuse("unavailable")));
    let client = TandemClient::open(&node.address)
        .expect("open")
        .with_retry_policy(RetryPolicy::until(Duration::from_millis(300)));
    let started = Instant::now();
    let error = client
        .complete(settle_request())
        .await
        .expect_err("never elected");
    let elapsed = started.elapsed();
    assert!(error.is_code("unavailable"), "{error}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(node.calls() >= 3, "{} calls", node.calls());
}

#[tokio::test]
async fn throttled_calls_wait_at_least_the_retry_hint() {
    let node = FakeNode::start(Script::then(vec![Answer::Throttle(400)], Answer::Serve));
    let client = TandemClient::open(&node.address).expect("open");
    let started = Instant::now();
    client.complete(settle_request()).await.expect("served");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(node.calls(), 2);
}

#[tokio::test]
async fn a_retry_hint_past_the_deadline_is_reported_at_once() {
    let node = FakeNode::start(Script::always(Answer::Throttle(10_000)));
    let client = TandemClient::open(&node.address)
        .expect("open")
        .with_retry_policy(RetryPolicy::until(Duration::from_secs(1)));
    let started = Instant::now();
    let error = client
        .complete(settle_request())
        .await
        .expect_err("throttled");
    assert!(error.is_code("throttled"), "{error}");
    assert_eq!(error.retry_after_ms, Some(10_000));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(node.calls(), 1);
}

#[tokio::test]
async fn final_answers_are_returned_at_once_even_when_retrying_indefinitely() {
    for code in [
        "invalid_argument",
        "not_found",
        "lease_mismatch",
        "lease_expired",
        "no_route",
    ] {
        let node = FakeNode::start(Script::always(Answer::Refuse(code)));
        let client = TandemClient::open(&node.address)
            .expect("open")
            .with_retry_policy(RetryPolicy::indefinitely());
        let started = Instant::now();
        let error = client.complete(settle_request()).await.expect_err(code);
        assert!(error.is_code(code), "{error}");
        assert!(!error.after_retry, "{code}");
        assert_eq!(node.calls(), 1, "{code}");
        assert!(started.elapsed() < Duration::from_millis(500), "{code}");
    }
}

#[tokio::test]
async fn a_retried_complete_whose_first_attempt_landed_counts_as_done() {
    // The first attempt does the work but answers too late; the retry finds it done.
    let node = FakeNode::start(Script::then(
        vec![Answer::ServeLate(Duration::from_secs(1))],
        Answer::Refuse("not_found"),
    ));
    let client = TandemClient::open(&node.address)
        .expect("open")
        .with_call_timeout(Duration::from_millis(200));
    let error = client
        .complete(settle_request())
        .await
        .expect_err("not found");
    assert!(error.is_code("not_found"), "{error}");
    assert!(error.after_retry);
    assert!(error.completed_by_earlier_attempt());
    assert_eq!(node.calls(), 2);
}

#[tokio::test]
async fn a_switchover_whose_outcome_is_unknown_is_not_sent_again() {
    let node = FakeNode::start(Script::then(
        vec![Answer::ServeLate(Duration::from_secs(1))],
        Answer::Serve,
    ));
    let client = TandemClient::open(&node.address)
        .expect("open")
        .with_call_timeout(Duration::from_millis(200));
    let error = client
        .switchover(None)
        .await
        .expect_err("no answer in time");
    assert!(error.is_code("deadline_exceeded"), "{error}");
    assert_eq!(node.calls(), 1);
    // Refusals that did nothing are still retried.
    let electing = FakeNode::start(Script::then(
        vec![Answer::Refuse("unavailable")],
        Answer::Serve,
    ));
    let client = TandemClient::open(&electing.address).expect("open");
    assert_eq!(client.switchover(None).await.expect("elected"), 1);
}

#[tokio::test]
async fn publish_keeps_the_message_ids_it_gave_across_retries() {
    let node = FakeNode::start(Script::then(
        vec![Answer::Refuse("unavailable")],
        Answer::Serve,
    ));
    let client = TandemClient::open(&node.address).expect("open");
    let request = tandem_client::v1::PublishRequest {
        publisher: "test".into(),
        messages: vec![tandem_client::v1::PublishMessage::default()],
    };
    client.publish(request).await.expect("published");
    let ids = node.script.published_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids[0].is_empty());
    assert_eq!(ids[0], ids[1], "the retry carries the same id");
}
