//! Checks a raw bindings file and builds [`Bindings`] from it, collecting every problem
//! with the line and column of the value at fault.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_core::duration::parse_milliseconds;
use tandem_core::filter::Filter;
use tandem_core::subscription::RetryPolicy;
use tandem_core::{ValueType, limits, validate as core_validate};
use toml::Spanned;

use super::raw::{RawBindings, RawPromotion, RawReceiveLocation, RawSendPort, RawTransport};
use super::{
    BackupTransport, Bindings, FileReceive, HttpReceive, HttpUrl, Problem, ReceiveEndpoint,
    ReceiveLocation, SendPort, Transport,
};
use crate::file_name::{FileNameTemplate, Glob};
use crate::promotion::{Promotion, PromotionSource};

/// How often a FILE receive location looks into its folder by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

const ADAPTERS: &str = "\"file\" or \"http\"";

pub(super) fn check(source: &str, base: &Path) -> Result<Bindings, Vec<Problem>> {
    let mut checker = Checker {
        source,
        base,
        problems: Vec::new(),
    };
    let raw: RawBindings = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().to_string();
            checker.problem(&span, message);
            return Err(checker.problems);
        }
    };
    let bindings = checker.bindings(raw);
    if checker.problems.is_empty() {
        Ok(bindings)
    } else {
        checker
            .problems
            .sort_by_key(|problem| (problem.line, problem.column));
        Err(checker.problems)
    }
}

struct Checker<'a> {
    source: &'a str,
    base: &'a Path,
    problems: Vec<Problem>,
}

enum Adapter {
    File,
    Http,
}

impl Checker<'_> {
    fn bindings(&mut self, raw: RawBindings) -> Bindings {
        let hosts = self.hosts(&raw);
        let host_names: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
        let mut receive_names = BTreeSet::new();
        let mut listen_addresses = BTreeSet::new();
        let mut receive_locations = Vec::new();
        for location in &raw.receive_location {
            self.unique("receive location", &location.name, &mut receive_names);
            self.known_host(&location.host, &host_names);
            if let Some(location) = self.receive_location(location) {
                if let ReceiveEndpoint::Http(http) = &location.endpoint
                    && !listen_addresses.insert(http.listen)
                {
                    let message = format!(
                        "another receive location already listens on {}",
                        http.listen
                    );
                    self.problem(&raw_span(&location.name, &raw.receive_location), message);
                }
                receive_locations.push(location);
            }
        }
        let mut port_names = BTreeSet::new();
        let mut send_ports = Vec::new();
        for port in &raw.send_port {
            self.unique("send port", &port.name, &mut port_names);
            self.known_host(&port.host, &host_names);
            if let Some(port) = self.send_port(port) {
                send_ports.push(port);
            }
        }
        Bindings {
            hosts,
            receive_locations,
            send_ports,
        }
    }

    fn hosts(&mut self, raw: &RawBindings) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut hosts = Vec::new();
        for host in &raw.host {
            if self.valid_name("host", &host.name) && self.unique("host", &host.name, &mut seen) {
                hosts.push(host.name.get_ref().clone());
            }
        }
        hosts
    }

    fn receive_location(&mut self, raw: &RawReceiveLocation) -> Option<ReceiveLocation> {
        let name_ok = self.valid_name("receive location", &raw.name);
        let adapter = self.adapter(&raw.adapter)?;
        let endpoint = match adapter {
            Adapter::File => ReceiveEndpoint::File(self.file_receive(raw)?),
            Adapter::Http => {
                for (field, value) in [
                    ("pattern", &raw.pattern),
                    ("archive", &raw.archive),
                    ("poll_interval", &raw.poll_interval),
                ] {
                    if let Some(value) = value {
                        self.problem(&value.span(), format!("`{field}` is for FILE receive only"));
                    }
                }
                ReceiveEndpoint::Http(self.http_receive(&raw.address)?)
            }
        };
        let promotions = self.promotions(&raw.promote, &endpoint);
        name_ok.then(|| ReceiveLocation {
            name: raw.name.get_ref().clone(),
            host: raw.host.get_ref().clone(),
            enabled: raw.enabled.unwrap_or(true),
            endpoint,
            promotions,
        })
    }

    fn file_receive(&mut self, raw: &RawReceiveLocation) -> Option<FileReceive> {
        let folder = self.folder(&raw.address)?;
        let pattern = match &raw.pattern {
            None => Glob::new("*").expect("a valid pattern"),
            Some(pattern) => self.or_problem(pattern.span(), Glob::new(pattern.get_ref()))?,
        };
        let archive = match &raw.archive {
            None => None,
            Some(archive) => Some(self.folder(archive)?),
        };
        let poll_interval = match &raw.poll_interval {
            None => DEFAULT_POLL_INTERVAL,
            Some(text) => Duration::from_millis(self.duration(text, 1)?),
        };
        Some(FileReceive {
            folder,
            pattern,
            archive,
            poll_interval,
        })
    }

    fn http_receive(&mut self, address: &Spanned<String>) -> Option<HttpReceive> {
        let text = address.get_ref().trim();
        let without_scheme = text.strip_prefix("http://").unwrap_or(text);
        let (socket, path) = match without_scheme.find('/') {
            Some(slash) => without_scheme.split_at(slash),
            None => (without_scheme, "/"),
        };
        match socket.parse::<SocketAddr>() {
            Ok(listen) => Some(HttpReceive {
                listen,
                path: path.to_string(),
            }),
            Err(_) => {
                let message = format!(
                    "'{text}' is not a listen address; expected IP:PORT/PATH, e.g. \
                     127.0.0.1:8080/orders"
                );
                self.problem(&address.span(), message);
                None
            }
        }
    }

    fn promotions(&mut self, raw: &[RawPromotion], endpoint: &ReceiveEndpoint) -> Vec<Promotion> {
        let mut promotions = Vec::new();
        for rule in raw {
            if let Some(promotion) = self.promotion(rule, endpoint) {
                promotions.push(promotion);
            }
        }
        promotions
    }

    fn promotion(&mut self, raw: &RawPromotion, endpoint: &ReceiveEndpoint) -> Option<Promotion> {
        let property = raw.property.get_ref();
        if property.is_empty() || property.len() > limits::MAX_PROPERTY_NAME_BYTES {
            let message = format!(
                "a property name has 1 to {} bytes",
                limits::MAX_PROPERTY_NAME_BYTES
            );
            self.problem(&raw.property.span(), message);
        }
        let source =
            self.or_problem(raw.from.span(), PromotionSource::parse(raw.from.get_ref()))?;
        let fits_the_adapter = match (&source, endpoint) {
            (PromotionSource::Header(_), ReceiveEndpoint::File(_)) => {
                Err("`header:` sources are for HTTP receive only")
            }
            (PromotionSource::FileName(_), ReceiveEndpoint::Http(_)) => {
                Err("`file_name` sources are for FILE receive only")
            }
            _ => Ok(()),
        };
        self.or_problem(raw.from.span(), fits_the_adapter)?;
        let value_type = match &raw.value_type {
            None => ValueType::String,
            Some(name) => self.or_problem(
                name.span(),
                ValueType::from_name(name.get_ref()).ok_or_else(|| {
                    format!(
                        "unknown type '{}'; use string, int, float, bool or timestamp",
                        name.get_ref()
                    )
                }),
            )?,
        };
        Some(Promotion {
            property: property.clone(),
            source,
            value_type,
            promoted: !raw.written.unwrap_or(false),
        })
    }

    fn send_port(&mut self, raw: &RawSendPort) -> Option<SendPort> {
        let name_ok = self.valid_name("send port", &raw.name);
        let filter_ok = self.filter(&raw.filter);
        let priority = self.priority(raw.priority.as_ref());
        let primary = RawTransport {
            adapter: raw.adapter.clone(),
            address: raw.address.clone(),
            file_name: raw.file_name.clone(),
            retry_count: raw.retry_count.clone(),
            retry_interval: raw.retry_interval.clone(),
            exponential_backoff: raw.exponential_backoff,
        };
        let primary = self.transport(&primary);
        let backup = match &raw.backup {
            None => Some(None),
            Some(backup) => self.transport(backup.get_ref()).map(Some),
        };
        let ((transport, retry), backup, priority) = (primary?, backup?, priority?);
        (name_ok && filter_ok).then(|| SendPort {
            name: raw.name.get_ref().clone(),
            host: raw.host.get_ref().clone(),
            enabled: raw.enabled.unwrap_or(true),
            filter: raw.filter.get_ref().clone(),
            priority,
            transport,
            retry,
            backup: backup.map(|(transport, retry)| BackupTransport { transport, retry }),
        })
    }

    fn transport(&mut self, raw: &RawTransport) -> Option<(Transport, RetryPolicy)> {
        let retry = self.retry_policy(raw);
        let transport = match self.adapter(&raw.adapter)? {
            Adapter::File => {
                let folder = self.folder(&raw.address)?;
                let file_name = match &raw.file_name {
                    None => FileNameTemplate::default(),
                    Some(template) => self
                        .or_problem(template.span(), FileNameTemplate::parse(template.get_ref()))?,
                };
                Transport::File { folder, file_name }
            }
            Adapter::Http => {
                if let Some(file_name) = &raw.file_name {
                    self.problem(&file_name.span(), "`file_name` is for FILE send only");
                }
                let url = self.or_problem(raw.address.span(), parse_url(raw.address.get_ref()))?;
                Transport::Http { url }
            }
        };
        Some((transport, retry?))
    }

    fn retry_policy(&mut self, raw: &RawTransport) -> Option<RetryPolicy> {
        let defaults = RetryPolicy::default();
        let retry_count = match &raw.retry_count {
            None => Some(i64::from(defaults.retry_count)),
            Some(count) => {
                self.in_range(count, 0, i64::from(limits::MAX_RETRY_COUNT), "retry_count")
            }
        };
        let retry_interval_ms = match &raw.retry_interval {
            None => Some(defaults.retry_interval_ms),
            Some(text) => self.duration(text, 0),
        };
        Some(RetryPolicy {
            retry_count: u32::try_from(retry_count?).ok()?,
            retry_interval_ms: retry_interval_ms?,
            exponential_backoff: raw.exponential_backoff.unwrap_or(false),
        })
    }

    fn priority(&mut self, raw: Option<&Spanned<i64>>) -> Option<u8> {
        let Some(priority) = raw else {
            return Some(limits::DEFAULT_PRIORITY);
        };
        let (lowest, highest) = (limits::LOWEST_PRIORITY, limits::HIGHEST_PRIORITY);
        let value = self.in_range(priority, i64::from(highest), i64::from(lowest), "priority")?;
        u8::try_from(value).ok()
    }

    fn in_range(&mut self, value: &Spanned<i64>, low: i64, high: i64, what: &str) -> Option<i64> {
        let number = *value.get_ref();
        if (low..=high).contains(&number) {
            return Some(number);
        }
        self.problem(
            &value.span(),
            format!("{what} {number} is out of range ({low} to {high})"),
        );
        None
    }

    fn filter(&mut self, filter: &Spanned<String>) -> bool {
        match Filter::parse(filter.get_ref()) {
            Ok(_) => true,
            Err(error) => {
                self.problem(
                    &filter.span(),
                    format!("the filter does not parse: {error}"),
                );
                false
            }
        }
    }

    fn adapter(&mut self, adapter: &Spanned<String>) -> Option<Adapter> {
        match adapter.get_ref().as_str() {
            "file" => Some(Adapter::File),
            "http" => Some(Adapter::Http),
            other => {
                let message = format!("unknown adapter '{other}'; use {ADAPTERS}");
                self.problem(&adapter.span(), message);
                None
            }
        }
    }

    fn folder(&mut self, address: &Spanned<String>) -> Option<PathBuf> {
        let text = address.get_ref().trim();
        if text.is_empty() {
            self.problem(&address.span(), "the folder is empty");
            return None;
        }
        Some(self.base.join(text))
    }

    fn duration(&mut self, text: &Spanned<String>, minimum_ms: u64) -> Option<u64> {
        let milliseconds = self.or_problem(text.span(), parse_milliseconds(text.get_ref()))?;
        if milliseconds < minimum_ms {
            self.problem(&text.span(), format!("use at least {minimum_ms} ms"));
            return None;
        }
        Some(milliseconds)
    }

    fn valid_name(&mut self, kind: &str, name: &Spanned<String>) -> bool {
        match core_validate::name(kind, name.get_ref()) {
            Ok(()) => true,
            Err(error) => {
                self.problem(&name.span(), error.message);
                false
            }
        }
    }

    fn unique<'n>(
        &mut self,
        kind: &str,
        name: &'n Spanned<String>,
        seen: &mut BTreeSet<&'n str>,
    ) -> bool {
        if seen.insert(name.get_ref().as_str()) {
            return true;
        }
        let message = format!("{kind} '{}' is declared twice", name.get_ref());
        self.problem(&name.span(), message);
        false
    }

    fn known_host(&mut self, host: &Spanned<String>, hosts: &BTreeSet<&str>) {
        if !hosts.contains(host.get_ref().as_str()) {
            let message = format!(
                "host '{}' is not declared; add [[host]] name = \"{}\"",
                host.get_ref(),
                host.get_ref()
            );
            self.problem(&host.span(), message);
        }
    }

    fn or_problem<T>(
        &mut self,
        span: Range<usize>,
        result: Result<T, impl Into<String>>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.problem(&span, message);
                None
            }
        }
    }

    fn problem(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let (line, column) = line_and_column(self.source, span.start);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }
}

/// The span of the raw receive location with this name, for problems found after the
/// location was built.
fn raw_span(name: &str, raw: &[RawReceiveLocation]) -> Range<usize> {
    raw.iter()
        .find(|location| location.name.get_ref() == name)
        .map(|location| location.address.span())
        .unwrap_or(0..0)
}

fn parse_url(text: &str) -> Result<HttpUrl, String> {
    let Some(rest) = text.trim().strip_prefix("http://") else {
        return Err(format!(
            "'{text}' is not an http:// address (plain HTTP only), e.g. \
             http://127.0.0.1:9000/orders"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!(
            "'{text}' needs a host and a port, e.g. http://127.0.0.1:9000/"
        ));
    }
    Ok(HttpUrl {
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
