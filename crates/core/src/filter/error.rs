//! [`FilterError`]: what is wrong with a filter's text, and the line and column where it is.

use std::fmt;

use super::lexer::Position;

/// A filter that cannot be parsed. `line` and `column` are 1-based; columns count
/// characters, not bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl FilterError {
    pub(super) fn at(position: Position, message: impl Into<String>) -> FilterError {
        FilterError {
            line: position.line,
            column: position.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for FilterError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_line_column_and_message() {
        let error = FilterError::at(Position { line: 2, column: 7 }, "expected a property name");
        assert_eq!(
            error.to_string(),
            "line 2, column 7: expected a property name"
        );
    }
}
