//! `tandem status` (the node at a glance) and `tandem queue` (host queue depths).

use serde_json::{Value as Json, json};
use tandem_core::byte_size::format_bytes;
use tandem_protocol::v1;

use crate::command_context::CommandContext;
use crate::command_error::CommandError;
use crate::duration::format_milliseconds;
use crate::output::{format_time, host_depth_table, host_json};

pub async fn run_status(context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let status = client.status().await?;
    if context.output.is_json() {
        context.output.print_json(&status_json(&status));
        return Ok(());
    }
    print_summary(&status);
    if let Some(settings) = &status.settings {
        print_settings(settings);
    }
    println!();
    host_depth_table(&status.hosts).print();
    Ok(())
}

pub async fn run_queue(context: &CommandContext) -> Result<(), CommandError> {
    let client = context.connect().await?;
    let hosts = client.list_hosts().await?.hosts;
    if context.output.is_json() {
        let hosts: Vec<Json> = hosts.iter().map(host_json).collect();
        context.output.print_json(&json!({ "hosts": hosts }));
    } else {
        host_depth_table(&hosts).print();
    }
    Ok(())
}

fn print_summary(status: &v1::StatusResponse) {
    println!("version:            {}", status.version);
    println!("data dir:           {}", status.data_dir);
    println!("format version:     {}", status.format_version);
    println!("started at:         {}", format_time(status.started_at_ms));
    println!("messages:           {}", status.message_count);
    println!("throttled:          {}", yes_or_no(status.throttled));
    println!("disk room:          {}", disk_room_text(status));
    println!("routing failures:   {}", status.routing_failures);
    println!("subscriptions:      {}", status.subscription_count);
}

fn print_settings(settings: &v1::Settings) {
    println!("settings:");
    println!("  max_body_bytes:         {}", settings.max_body_bytes);
    println!(
        "  dedupe_window:          {}",
        format_milliseconds(settings.dedupe_window_ms)
    );
    println!(
        "  throttle_message_count: {}",
        settings.throttle_message_count
    );
    println!(
        "  routing_failure_queue:  {}",
        settings.routing_failure_queue
    );
    println!("  tracking:               {}", settings.tracking);
    println!(
        "  tracking_retention:     {}",
        if settings.tracking_retention_ms == 0 {
            "forever".to_string()
        } else {
            format_milliseconds(settings.tracking_retention_ms)
        }
    );
}

/// The room left under the data directory and the floor below which the active refuses
/// publishes.
fn disk_room_text(status: &v1::StatusResponse) -> String {
    let room = status
        .disk_room_bytes
        .map_or("not measured".to_string(), format_bytes);
    match status.min_free_disk_bytes {
        0 => room,
        floor if status.disk_low => format!(
            "{room}, LOW: below {} (as the active, this node refuses publishes)",
            format_bytes(floor)
        ),
        floor => format!(
            "{room} (as the active, this node refuses publishes below {})",
            format_bytes(floor)
        ),
    }
}

fn yes_or_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

fn status_json(status: &v1::StatusResponse) -> Json {
    let hosts: Vec<Json> = status.hosts.iter().map(host_json).collect();
    let settings = status.settings.as_ref().map(|settings| {
        json!({
            "max_body_bytes": settings.max_body_bytes,
            "dedupe_window_ms": settings.dedupe_window_ms,
            "throttle_message_count": settings.throttle_message_count,
            "routing_failure_queue": settings.routing_failure_queue,
            "tracking": settings.tracking,
            "tracking_retention_ms": settings.tracking_retention_ms,
        })
    });
    json!({
        "version": status.version,
        "data_dir": status.data_dir,
        "format_version": status.format_version,
        "started_at": format_time(status.started_at_ms),
        "message_count": status.message_count,
        "throttled": status.throttled,
        "disk_room_bytes": status.disk_room_bytes,
        "min_free_disk_bytes": status.min_free_disk_bytes,
        "disk_low": status.disk_low,
        "routing_failures": status.routing_failures,
        "subscription_count": status.subscription_count,
        "settings": settings,
        "hosts": hosts,
    })
}
