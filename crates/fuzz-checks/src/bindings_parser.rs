//! [`bindings_parser`]: `Bindings::parse` on arbitrary text, as `tandem bindings check` and
//! `tandem host run` read a bindings file. A refused file lists problems, each with a
//! message and a line and column inside the file (line 0 for the whole file); an accepted
//! one holds only filters that parse. Parsing touches no file: paths are only joined to the
//! base folder.

use std::path::Path;

use tandem_core::filter::Filter;
use tandem_host::Bindings;

use crate::{Verdict, clear};

/// Parses `data` as a bindings file named `fuzz.toml` (refused unless it is UTF-8, as
/// `Bindings::load` refuses it).
pub fn bindings_parser(data: &[u8]) -> Verdict {
    let Ok(source) = std::str::from_utf8(data) else {
        return Verdict::Refused;
    };
    match Bindings::parse(source, Path::new("bindings"), "fuzz.toml") {
        Ok(bindings) => {
            for port in &bindings.send_ports {
                assert!(
                    Filter::parse(&port.filter).is_ok(),
                    "send port {} was accepted with a filter that does not parse",
                    port.name
                );
            }
            Verdict::Accepted
        }
        Err(error) => {
            assert!(!error.problems.is_empty(), "refused without a problem");
            let lines = source.split('\n').count();
            for problem in &error.problems {
                assert!(
                    problem.line <= lines && (problem.line == 0 || problem.column >= 1),
                    "problem at {}:{} is outside the {lines} lines: {}",
                    problem.line,
                    problem.column,
                    problem.message
                );
                clear(&problem.message, "a bindings file");
            }
            clear(&error.to_string(), "a bindings file")
        }
    }
}
