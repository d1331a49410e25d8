//! Renewing a lease while its handler runs.

use std::time::Duration;

use tandem_client::{LeaseStatus, TandemClient};

use crate::support::{Answer, FakeNode, Script};

const LEASE: Duration = Duration::from_millis(300);

async fn handler_taking(duration: Duration) -> &'static str {
    tokio::time::sleep(duration).await;
    "handled"
}

#[tokio::test]
async fn the_lease_is_renewed_every_third_of_its_duration_while_the_handler_runs() {
    let node = FakeNode::start(Script::always(Answer::Serve));
    let client = TandemClient::open(&node.address).expect("open");
    let (output, status) = client
        .renew_while(7, 1, LEASE, handler_taking(Duration::from_millis(750)))
        .await;
    assert_eq!(output, "handled");
    assert_eq!(status, LeaseStatus::Held);
    // Due at 100, 200, …, 700 ms.
    let renewals = node.calls();
    assert!((3..=7).contains(&renewals), "{renewals} renewals");
    // Renewing stops with the handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.calls(), renewals);
}

#[tokio::test]
async fn a_lost_lease_is_reported_and_renewing_stops() {
    let node = FakeNode::start(Script::then(
        vec![Answer::Serve, Answer::Refuse("lease_expired")],
        Answer::Serve,
    ));
    let client = TandemClient::open(&node.address).expect("open");
    let (output, status) = client
        .renew_while(7, 1, LEASE, handler_taking(Duration::from_millis(700)))
        .await;
    assert_eq!(output, "handled", "the handler runs to its end");
    let LeaseStatus::Lost(error) = status else {
        panic!("expected a lost lease, got {status:?}");
    };
    assert!(error.is_code("lease_expired"), "{error}");
    assert_eq!(node.calls(), 2);
}

#[tokio::test]
async fn renewals_ride_through_a_failover() {
    let mut first = FakeNode::start(Script::always(Answer::Serve));
    let second = FakeNode::start(Script::always(Answer::Serve));
    let client =
        TandemClient::open(&format!("{},{}", first.address, second.address)).expect("open");
    let handling = client.renew_while(7, 1, LEASE, handler_taking(Duration::from_millis(800)));
    let killing = async {
        tokio::time::sleep(Duration::from_millis(350)).await;
        first.kill();
    };
    let ((output, status), ()) = tokio::join!(handling, killing);
    assert_eq!(output, "handled");
    assert_eq!(status, LeaseStatus::Held);
    assert!(
        first.calls() >= 2,
        "{} renewals before the kill",
        first.calls()
    );
    assert!(
        second.calls() >= 2,
        "{} renewals after the kill",
        second.calls()
    );
}
