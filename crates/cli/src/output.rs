//! Printing results: aligned tables for people, JSON for machines (`--json`), and the
//! renderings of protocol types that several commands share.

use serde_json::{Value as Json, json};
use tandem_core::Property;
use tandem_core::timestamp::format_rfc3339;
use tandem_protocol::v1;

/// How to print: for people, or as JSON.
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one JSON document (pretty, one per command).
    pub fn print_json(&self, value: &Json) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("error: cannot render JSON: {error}"),
        }
    }

    /// Prints one JSON document on a single line (streams of records).
    pub fn print_json_line(&self, value: &Json) {
        println!("{value}");
    }
}

/// A table with a header row, printed with columns aligned.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Table {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn add_row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let widths = self.column_widths();
        let header: Vec<String> = self.headers.iter().map(|text| text.to_string()).collect();
        let mut lines = vec![render_row(&header, &widths)];
        lines.extend(self.rows.iter().map(|row| render_row(row, &widths)));
        lines.join("\n")
    }

    pub fn print(&self) {
        println!("{}", self.render());
    }

    fn column_widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|text| text.chars().count())
            .collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(column) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        widths
    }
}

fn render_row(cells: &[String], widths: &[usize]) -> String {
    let last = cells.len().saturating_sub(1);
    let padded: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(column, cell)| match widths.get(column) {
            Some(width) if column < last => format!("{cell:<width$}"),
            _ => cell.clone(),
        })
        .collect();
    padded.join("  ")
}

/// A time in RFC 3339, or "-" for zero (not set).
pub fn format_time(milliseconds: i64) -> String {
    if milliseconds == 0 {
        "-".to_string()
    } else {
        format_rfc3339(milliseconds)
    }
}

/// The host depth table: name, ready, delayed, leased, suspended.
pub fn host_depth_table(hosts: &[v1::Host]) -> Table {
    let mut table = Table::new(vec!["NAME", "READY", "DELAYED", "LEASED", "SUSPENDED"]);
    for host in hosts {
        let depth = host.depth.unwrap_or_default();
        table.add_row(vec![
            host.name.clone(),
            depth.ready.to_string(),
            depth.delayed.to_string(),
            depth.leased.to_string(),
            depth.suspended.to_string(),
        ]);
    }
    table
}

pub fn host_json(host: &v1::Host) -> Json {
    let depth = host.depth.unwrap_or_default();
    json!({
        "id": host.id,
        "name": host.name,
        "created_at": format_time(host.created_at_ms),
        "ready": depth.ready,
        "delayed": depth.delayed,
        "leased": depth.leased,
        "suspended": depth.suspended,
    })
}

pub fn instance_json(instance: &v1::Instance) -> Json {
    json!({
        "id": instance.id,
        "message_id": instance.message_id,
        "subscription": instance.subscription,
        "host": instance.host,
        "priority": instance.priority,
        "state": instance.state,
        "attempts": instance.attempts,
        "visible_at": format_time(instance.visible_at_ms),
        "lease_holder": instance.lease_holder,
        "lease_expires_at": format_time(instance.lease_expires_at_ms),
        "last_error": instance.last_error,
        "enqueued_at": format_time(instance.enqueued_at_ms),
    })
}

/// A property as `Name = value` (values typed: strings quoted, times in RFC 3339),
/// marked "(written)" when not promoted.
pub fn describe_property(property: &v1::Property) -> String {
    match Property::try_from(property.clone()) {
        Ok(property) if property.promoted => format!("{} = {}", property.name, property.value),
        Ok(property) => format!("{} = {} (written)", property.name, property.value),
        Err(error) => format!("(unreadable property: {error})"),
    }
}

pub fn property_json(property: &v1::Property) -> Json {
    match Property::try_from(property.clone()) {
        Ok(property) => json!({
            "name": property.name,
            "type": property.value.value_type().name(),
            "value": typed_value_json(&property.value),
            "promoted": property.promoted,
        }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

fn typed_value_json(value: &tandem_core::Value) -> Json {
    match value {
        tandem_core::Value::String(text) => json!(text),
        tandem_core::Value::Int(number) => json!(number),
        tandem_core::Value::Float(number) => json!(number),
        tandem_core::Value::Bool(flag) => json!(flag),
        tandem_core::Value::Timestamp(milliseconds) => json!(format_rfc3339(*milliseconds)),
    }
}

/// A body as text when it is UTF-8, else its size.
pub fn describe_body(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.trim_end_matches(['\r', '\n']).to_string(),
        Err(_) => format!("({} bytes, not UTF-8)", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(vec!["NAME", "READY"]);
        table.add_row(vec!["orders".into(), "12".into()]);
        table.add_row(vec!["x".into(), "3".into()]);
        assert_eq!(table.render(), "NAME    READY\norders  12\nx       3");
    }

    #[test]
    fn bodies_show_as_text_or_size() {
        assert_eq!(describe_body(b"hello\n"), "hello");
        assert_eq!(describe_body(&[0xff, 0xfe]), "(2 bytes, not UTF-8)");
    }

    #[test]
    fn properties_show_their_typed_value() {
        let property = v1::Property::from(Property {
            name: "Total".into(),
            value: tandem_core::Value::Int(1500),
            promoted: true,
        });
        assert_eq!(describe_property(&property), "Total = 1500");
    }
}
