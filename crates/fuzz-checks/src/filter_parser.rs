//! [`filter_parser`]: `Filter::parse` on arbitrary text. A refused filter names a line and a
//! column inside the text; an accepted one round-trips through its canonical text, which a
//! subscription stores and parses again on every load.

use tandem_core::filter::Filter;

use crate::{Verdict, clear};

/// Parses `data` (refused unless it is UTF-8: filters arrive as protobuf or JSON strings).
pub fn filter_parser(data: &[u8]) -> Verdict {
    let Ok(text) = std::str::from_utf8(data) else {
        return Verdict::Refused;
    };
    match Filter::parse(text) {
        Ok(filter) => {
            let canonical = filter.to_text();
            let again = Filter::parse(&canonical).unwrap_or_else(|error| {
                panic!("canonical text {canonical:?} of {text:?} does not parse: {error}")
            });
            assert_eq!(again, filter, "canonical text {canonical:?} of {text:?}");
            assert_eq!(
                again.to_text(),
                canonical,
                "canonical text is a fixed point"
            );
            Verdict::Accepted
        }
        Err(error) => {
            let lines = text.split('\n').count();
            assert!(
                error.line >= 1 && error.line as usize <= lines && error.column >= 1,
                "error position {}:{} is outside the {lines} lines of {text:?}",
                error.line,
                error.column
            );
            let line = text.split('\n').nth(error.line as usize - 1).unwrap_or("");
            assert!(
                error.column as usize <= line.chars().count() + 1,
                "error column {} is past the end of line {:?}",
                error.column,
                line
            );
            clear(&error.message, "a filter")
        }
    }
}
