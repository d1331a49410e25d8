//! The bindings file: a good one yields exactly what it declares; a bad one yields every
//! problem with its line and column, and no bindings.

use std::path::Path;
use std::time::Duration;

use tandem_core::ValueType;
use tandem_host::Bindings;
use tandem_host::bindings::{ReceiveEndpoint, Transport};
use tandem_host::promotion::PromotionSource;

const GOOD: &str = r#"
[[host]]
name = "orders"

[[receive_location]]
name = "inbox"
host = "orders"
adapter = "file"
address = "in"
pattern = "*.json"
archive = "done"
poll_interval = "250ms"
promote = [
  { property = "MessageType", from = "json:/type" },
  { property = "Total", from = "json:/total", type = "int" },
  { property = "Batch", from = "file_name:batch-*.json", written = true },
]

[[receive_location]]
name = "api"
host = "orders"
adapter = "http"
address = "127.0.0.1:18080/orders"
enabled = false
promote = [{ property = "Channel", from = "header:X-Channel" }]

[[send_port]]
name = "big"
host = "orders"
filter = 'MessageType == "Order" and Total > 1000'
priority = 2
adapter = "file"
address = "out/big"
file_name = "{message_id}.json"
retry_count = 2
retry_interval = "10s"
exponential_backoff = true
backup = { adapter = "http", address = "http://127.0.0.1:9000/orders", retry_count = 1, retry_interval = "1s" }

[[send_port]]
name = "small"
host = "orders"
filter = 'MessageType == "Order" and Total <= 1000'
adapter = "http"
address = "http://127.0.0.1:9000/small"
"#;

#[test]
fn a_good_file_yields_what_it_declares() {
    let bindings = Bindings::parse(GOOD, Path::new("/etc/tandem"), "good.toml").expect("valid");
    assert_eq!(bindings.hosts, ["orders"]);
    let inbox = &bindings.receive_locations[0];
    let ReceiveEndpoint::File(file) = &inbox.endpoint else {
        panic!("inbox is a FILE receive location");
    };
    assert_eq!(file.folder, Path::new("/etc/tandem/in"));
    assert_eq!(file.archive.as_deref(), Some(Path::new("/etc/tandem/done")));
    assert_eq!(file.poll_interval, Duration::from_millis(250));
    assert!(file.pattern.matches("a.json") && !file.pattern.matches("a.xml"));
    assert_eq!(inbox.promotions.len(), 3);
    assert_eq!(inbox.promotions[1].value_type, ValueType::Int);
    assert!(!inbox.promotions[2].promoted, "written = true");
    let api = &bindings.receive_locations[1];
    assert!(!api.enabled);
    let ReceiveEndpoint::Http(http) = &api.endpoint else {
        panic!("api is an HTTP receive location");
    };
    assert_eq!(http.listen.to_string(), "127.0.0.1:18080");
    assert_eq!(http.path, "/orders");
    assert_eq!(
        api.promotions[0].source,
        PromotionSource::Header("x-channel".into())
    );

    let big = &bindings.send_ports[0];
    assert_eq!(big.priority, 2);
    assert_eq!(big.retry.retry_count, 2);
    assert_eq!(big.retry.retry_interval_ms, 10_000);
    assert!(big.retry.exponential_backoff);
    assert!(
        matches!(&big.transport, Transport::File { folder, .. } if folder == Path::new("/etc/tandem/out/big"))
    );
    let backup = big.backup.as_ref().expect("a backup transport");
    assert_eq!(
        backup.transport.to_string(),
        "http http://127.0.0.1:9000/orders"
    );
    assert_eq!(backup.retry.retry_count, 1);
    assert_eq!(backup.retry.retry_interval_ms, 1_000);

    let small = &bindings.send_ports[1];
    assert_eq!(small.priority, 5, "the default priority");
    assert_eq!(small.retry.retry_count, 3, "the default retry count");
    assert!(small.backup.is_none());
    assert_eq!(bindings.send_ports_of("orders").count(), 2);
}

#[test]
fn every_problem_is_reported_with_its_line_and_nothing_is_built() {
    let bad = r#"[[host]]
name = "orders"

[[receive_location]]
name = "inbox"
host = "billing"
adapter = "ftp"
address = "in"

[[send_port]]
name = "big"
host = "orders"
filter = 'Total >'
adapter = "file"
address = "out"
priority = 11
retry_interval = "5 parsecs"
"#;
    let error = Bindings::parse(bad, Path::new("."), "bad.toml").expect_err("invalid");
    let lines: Vec<usize> = error.problems.iter().map(|problem| problem.line).collect();
    assert_eq!(lines, [6, 7, 13, 16, 17], "{error}");
    let text = error.to_string();
    assert!(
        text.contains("bad.toml:6:8: host 'billing' is not declared"),
        "{text}"
    );
    assert!(
        text.contains("bad.toml:7:11: unknown adapter 'ftp'"),
        "{text}"
    );
    assert!(
        text.contains("bad.toml:13:10: the filter does not parse"),
        "{text}"
    );
    assert!(text.contains("priority 11 is out of range"), "{text}");
    assert!(text.contains("unknown unit"), "{text}");
}

#[test]
fn unknown_keys_and_syntax_errors_name_their_line() {
    let unknown_key = "[[host]]\nname = \"orders\"\n\n[[send_port]]\nname = \"p\"\nhost = \"orders\"\nfilter = 'A == 1'\nadapter = \"file\"\naddress = \"out\"\nretries = 3\n";
    let error = Bindings::parse(unknown_key, Path::new("."), "b.toml").expect_err("unknown key");
    assert_eq!(error.problems[0].line, 10, "{error}");
    assert!(error.to_string().contains("retries"), "{error}");

    let syntax = "[[host]]\nname = \"orders\n";
    let error = Bindings::parse(syntax, Path::new("."), "b.toml").expect_err("bad TOML");
    assert_eq!(error.problems[0].line, 2, "{error}");
}

#[test]
fn names_must_be_unique_and_sources_fit_their_adapter() {
    let bad = r#"[[host]]
name = "orders"
[[host]]
name = "orders"

[[receive_location]]
name = "in"
host = "orders"
adapter = "http"
address = "127.0.0.1:1/x"
promote = [{ property = "F", from = "file_name" }]

[[receive_location]]
name = "in"
host = "orders"
adapter = "file"
address = "in"
promote = [{ property = "H", from = "header:X-A" }]
"#;
    let error = Bindings::parse(bad, Path::new("."), "b.toml").expect_err("invalid");
    let text = error.to_string();
    assert!(
        text.contains("b.toml:4:8: host 'orders' is declared twice"),
        "{text}"
    );
    assert!(
        text.contains("b.toml:14:8: receive location 'in' is declared twice"),
        "{text}"
    );
    assert!(text.contains("b.toml:11:"), "{text}");
    assert!(
        text.contains("`file_name` sources are for FILE receive only"),
        "{text}"
    );
    assert!(text.contains("b.toml:18:"), "{text}");
    assert!(
        text.contains("`header:` sources are for HTTP receive only"),
        "{text}"
    );
}
