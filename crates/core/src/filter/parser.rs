//! [`Parser`]: reads filter text into an OR of AND-groups of predicates, reporting the first
//! problem, in text order, with what was expected and what was found.
//!
//! Grammar (`and` binds tighter than `or`; no parentheses):
//!
//! ```text
//! filter    = and_group { ("or" | "||") and_group }
//! and_group = predicate { ("and" | "&&") predicate }
//! predicate = property ("exists" | comparison value)
//! value     = string | integer | float | "true" | "false" | "timestamp" "(" string ")"
//! ```

use crate::timestamp;
use crate::value::Value;

use super::error::FilterError;
use super::lexer::{Lexer, Position, Token, TokenKind};
use super::predicate::{Operator, Predicate};
use super::{AndGroup, MAX_FILTER_BYTES, MAX_FILTER_PREDICATES, MAX_PROPERTY_NAME_BYTES};

const OPERATOR_EXPECTATION: &str = "an operator (==, !=, <, <=, >, >=, exists)";

/// Parses a whole filter into its AND-groups (never empty on success).
pub(super) fn parse(text: &str) -> Result<Vec<AndGroup>, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        let message = format!(
            "filter is {} bytes; the limit is {MAX_FILTER_BYTES} bytes",
            text.len()
        );
        return Err(FilterError::at(Position::START, message));
    }
    Parser::new(text)?.parse_filter()
}

struct Parser<'text> {
    lexer: Lexer<'text>,
    current: Token<'text>,
    predicate_count: usize,
}

impl<'text> Parser<'text> {
    fn new(text: &'text str) -> Result<Parser<'text>, FilterError> {
        let mut lexer = Lexer::new(text);
        let current = lexer.next_token()?;
        Ok(Parser {
            lexer,
            current,
            predicate_count: 0,
        })
    }

    fn parse_filter(&mut self) -> Result<Vec<AndGroup>, FilterError> {
        let mut groups = vec![self.parse_and_group()?];
        while self.current.kind == TokenKind::Or {
            self.advance()?;
            groups.push(self.parse_and_group()?);
        }
        if self.current.kind != TokenKind::End {
            return Err(self.expected("'and', 'or' or end of filter after a predicate"));
        }
        Ok(groups)
    }

    fn parse_and_group(&mut self) -> Result<AndGroup, FilterError> {
        let mut predicates = vec![self.parse_predicate()?];
        while self.current.kind == TokenKind::And {
            self.advance()?;
            predicates.push(self.parse_predicate()?);
        }
        Ok(AndGroup { predicates })
    }

    fn parse_predicate(&mut self) -> Result<Predicate, FilterError> {
        self.count_predicate()?;
        let property = self.parse_property_name()?;
        match self.current.kind {
            TokenKind::Exists => {
                self.advance()?;
                Ok(Predicate::exists(property))
            }
            TokenKind::Comparison(operator) => {
                self.advance()?;
                let operand = self.parse_value(operator)?;
                Ok(Predicate::comparison(property, operator, operand))
            }
            _ => Err(self.expected(OPERATOR_EXPECTATION)),
        }
    }

    fn count_predicate(&mut self) -> Result<(), FilterError> {
        self.predicate_count += 1;
        if self.predicate_count <= MAX_FILTER_PREDICATES {
            return Ok(());
        }
        let message = format!(
            "too many predicates: a filter may have at most {MAX_FILTER_PREDICATES}; \
             split it into several subscriptions"
        );
        Err(FilterError::at(self.current.position, message))
    }

    fn parse_property_name(&mut self) -> Result<String, FilterError> {
        if self.current.kind != TokenKind::Identifier {
            return Err(self.expected("a property name"));
        }
        let length = self.current.text.len();
        if length > MAX_PROPERTY_NAME_BYTES {
            let message = format!(
                "property name is {length} bytes; the limit is {MAX_PROPERTY_NAME_BYTES} bytes"
            );
            return Err(FilterError::at(self.current.position, message));
        }
        Ok(self.advance()?.text.to_string())
    }

    fn parse_value(&mut self, operator: Operator) -> Result<Value, FilterError> {
        let value = match &self.current.kind {
            TokenKind::String(text) => Value::String(text.clone()),
            TokenKind::Integer(number) => Value::Int(*number),
            TokenKind::Float(number) => Value::Float(*number),
            TokenKind::True => Value::Bool(true),
            TokenKind::False => Value::Bool(false),
            TokenKind::Identifier if self.current.text.eq_ignore_ascii_case("timestamp") => {
                return self.parse_timestamp();
            }
            _ => return Err(self.expected_value(operator)),
        };
        self.advance()?;
        Ok(value)
    }

    fn expected_value(&self, operator: Operator) -> FilterError {
        let symbol = operator.symbol();
        let expectation =
            format!("a value (string, number, true, false or timestamp(\"...\")) after '{symbol}'");
        let mut error = self.expected(&expectation);
        if self.current.kind == TokenKind::Identifier {
            let text = self.current.text;
            error.message.push_str(&format!(
                "; write strings in double quotes, such as \"{text}\""
            ));
        }
        error
    }

    /// `timestamp("2026-11-26T10:00:00Z")`; epoch milliseconds (`timestamp("0")`) also work.
    fn parse_timestamp(&mut self) -> Result<Value, FilterError> {
        self.advance()?;
        if self.current.kind != TokenKind::LeftParenthesis {
            return Err(self.expected_literally("'(' after 'timestamp'"));
        }
        self.advance()?;
        let TokenKind::String(text) = &self.current.kind else {
            let expectation = "a quoted RFC 3339 timestamp such as \"2026-11-26T10:00:00Z\" \
                               after 'timestamp('";
            return Err(self.expected_literally(expectation));
        };
        let millis = timestamp_millis(text).map_err(|reason| {
            let message = format!("invalid timestamp {}: {reason}", self.current.text);
            FilterError::at(self.current.position, message)
        })?;
        self.advance()?;
        if self.current.kind != TokenKind::RightParenthesis {
            return Err(self.expected_literally("')' after the timestamp"));
        }
        self.advance()?;
        Ok(Value::Timestamp(millis))
    }

    /// Moves to the next token and returns the one it replaces.
    fn advance(&mut self) -> Result<Token<'text>, FilterError> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.current, next))
    }

    /// "expected ..., found ..." at the current token; a parenthesis gets its own message
    /// because the language has no grouping.
    fn expected(&self, expectation: &str) -> FilterError {
        if matches!(
            self.current.kind,
            TokenKind::LeftParenthesis | TokenKind::RightParenthesis
        ) {
            let message = format!(
                "found {}: parentheses are not supported; a filter is an OR of AND-groups, \
                 such as A == 1 and B == 2 or C exists",
                self.current.describe()
            );
            return FilterError::at(self.current.position, message);
        }
        self.expected_literally(expectation)
    }

    fn expected_literally(&self, expectation: &str) -> FilterError {
        let mut message = format!("expected {expectation}, found {}", self.current.describe());
        if let Some(hint) = self.hint() {
            message.push_str("; ");
            message.push_str(hint);
        }
        FilterError::at(self.current.position, message)
    }

    fn hint(&self) -> Option<&'static str> {
        if self.current.kind != TokenKind::Unexpected {
            return None;
        }
        match self.current.text {
            "=" => Some("did you mean '=='?"),
            "!" => Some("did you mean '!='?"),
            "&" => Some("did you mean '&&'?"),
            "|" => Some("did you mean '||'?"),
            _ => None,
        }
    }
}

fn timestamp_millis(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(millis) => Ok(millis),
        Err(_) => timestamp::parse_rfc3339(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predicate(property: &str, operator: Operator, operand: Value) -> Predicate {
        Predicate::comparison(property, operator, operand)
    }

    fn single_group(text: &str) -> Vec<Predicate> {
        let mut groups = parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(groups.len(), 1, "{text}");
        groups.remove(0).predicates
    }

    fn error(text: &str) -> (u32, u32, String) {
        let error = parse(text).expect_err(text);
        (error.line, error.column, error.message)
    }

    fn expect_error(text: &str, line: u32, column: u32, message: &str) {
        assert_eq!(
            error(text),
            (line, column, message.to_string()),
            "filter: {text:?}"
        );
    }

    #[test]
    fn parses_every_operator() {
        let cases = [
            ("A == 1", Operator::Equal),
            ("A != 1", Operator::NotEqual),
            ("A < 1", Operator::Less),
            ("A <= 1", Operator::LessOrEqual),
            ("A > 1", Operator::Greater),
            ("A >= 1", Operator::GreaterOrEqual),
            ("A==1", Operator::Equal),
        ];
        for (text, operator) in cases {
            assert_eq!(
                single_group(text),
                vec![predicate("A", operator, Value::Int(1))]
            );
        }
        assert_eq!(single_group("A exists"), vec![Predicate::exists("A")]);
        assert_eq!(single_group("A EXISTS"), vec![Predicate::exists("A")]);
    }

    #[test]
    fn parses_every_literal_type() {
        let cases = [
            (r#"P == "Order""#, Value::String("Order".to_string())),
            (
                r#"P == "tab\there \"quoted\" \u{1F600}""#,
                Value::String("tab\there \"quoted\" \u{1F600}".to_string()),
            ),
            ("P == -42", Value::Int(-42)),
            ("P == 9223372036854775807", Value::Int(i64::MAX)),
            ("P == 2.5", Value::Float(2.5)),
            ("P == -1.5e3", Value::Float(-1500.0)),
            ("P == true", Value::Bool(true)),
            ("P == False", Value::Bool(false)),
            (
                r#"P == timestamp("2026-11-26T10:00:00Z")"#,
                Value::Timestamp(1_795_687_200_000),
            ),
            (
                r#"P == TIMESTAMP ( "1970-01-01T00:00:01+01:00" )"#,
                Value::Timestamp(-3_599_000),
            ),
            (r#"P == timestamp("1500")"#, Value::Timestamp(1500)),
        ];
        for (text, value) in cases {
            assert_eq!(
                single_group(text),
                vec![predicate("P", Operator::Equal, value)],
                "{text}"
            );
        }
    }

    #[test]
    fn accepts_property_names_with_dots_colons_and_dashes() {
        let predicates =
            single_group("BTS.MessageType exists and http:Content-Type exists and _x1 exists");
        let names: Vec<&str> = predicates
            .iter()
            .map(|predicate| predicate.property.as_str())
            .collect();
        assert_eq!(names, ["BTS.MessageType", "http:Content-Type", "_x1"]);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let groups = parse("A == 1 and B == 2 or C exists && D < 3 || E exists").unwrap();
        let shape: Vec<Vec<&str>> = groups
            .iter()
            .map(|group| {
                group
                    .predicates
                    .iter()
                    .map(|predicate| predicate.property.as_str())
                    .collect()
            })
            .collect();
        assert_eq!(shape, vec![vec!["A", "B"], vec!["C", "D"], vec!["E"]]);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let groups = parse("A exists AND B exists Or C exists").unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].predicates.len(), 2);
    }

    #[test]
    fn filters_may_span_lines() {
        let text = "MessageType == \"Order\"\n  and Total > 1000\r\n  or\n\tPriority exists\n";
        let groups = parse(text).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0].predicates[1],
            predicate("Total", Operator::Greater, Value::Int(1000))
        );
        assert_eq!(groups[1].predicates, vec![Predicate::exists("Priority")]);
    }

    #[test]
    fn empty_filter() {
        expect_error("", 1, 1, "expected a property name, found end of filter");
        expect_error(
            "  \n  ",
            1,
            1,
            "expected a property name, found end of filter",
        );
    }

    #[test]
    fn missing_operator() {
        let message = "expected an operator (==, !=, <, <=, >, >=, exists), found '\"Order\"'";
        expect_error("MessageType \"Order\"", 1, 13, message);
        let at_end = "expected an operator (==, !=, <, <=, >, >=, exists), found end of filter";
        expect_error("MessageType", 1, 12, at_end);
    }

    #[test]
    fn single_equals_suggests_double_equals() {
        let message =
            "expected an operator (==, !=, <, <=, >, >=, exists), found '='; did you mean '=='?";
        expect_error("MessageType = \"Order\"", 1, 13, message);
        let bang =
            "expected an operator (==, !=, <, <=, >, >=, exists), found '!'; did you mean '!='?";
        expect_error("A ! 1", 1, 3, bang);
    }

    #[test]
    fn missing_value() {
        let message = "expected a value (string, number, true, false or timestamp(\"...\")) after '==', found end of filter";
        expect_error("MessageType ==", 1, 15, message);
        let before_and = "expected a value (string, number, true, false or timestamp(\"...\")) after '>', found 'and'";
        expect_error("Total > and B exists", 1, 9, before_and);
    }

    #[test]
    fn bare_word_value_suggests_quotes() {
        let message = "expected a value (string, number, true, false or timestamp(\"...\")) after '==', \
                       found 'Order'; write strings in double quotes, such as \"Order\"";
        expect_error("MessageType == Order", 1, 16, message);
    }

    #[test]
    fn unterminated_string_points_at_the_opening_quote() {
        let message = "unterminated string: expected a closing '\"', found end of filter";
        expect_error("A == 1 and B == \"abc", 1, 17, message);
        let on_line = "unterminated string: expected a closing '\"', found end of line";
        expect_error("B == \"abc\n\"", 1, 6, on_line);
    }

    #[test]
    fn bad_escape() {
        let message = "unknown escape '\\q' in string: expected \\\", \\\\, \\n, \\t or \\u{XXXX}";
        expect_error(r#"A == "ab\qc""#, 1, 9, message);
    }

    #[test]
    fn integer_overflow_names_the_literal() {
        let message = "integer 9223372036854775808 is out of range: integers must be between \
                       -9223372036854775808 and 9223372036854775807";
        expect_error("Total > 9223372036854775808", 1, 9, message);
    }

    #[test]
    fn trailing_garbage() {
        let message = "expected 'and', 'or' or end of filter after a predicate, found 'B'";
        expect_error("A == 1 B", 1, 8, message);
    }

    #[test]
    fn parentheses_are_rejected_with_an_explanation() {
        let message = "found '(': parentheses are not supported; a filter is an OR of AND-groups, \
                       such as A == 1 and B == 2 or C exists";
        expect_error("(A == 1 or B == 2) and C exists", 1, 1, message);
        expect_error("A == 1 and (B == 2)", 1, 12, message);
        let closing = message.replace("'('", "')'");
        expect_error("A == 1)", 1, 7, &closing);
    }

    #[test]
    fn error_on_line_two_reports_line_and_column() {
        let message =
            "expected an operator (==, !=, <, <=, >, >=, exists), found '='; did you mean '=='?";
        expect_error("A == 1 and\n  B = 2", 2, 5, message);
        expect_error(
            "A == 1\nor\n",
            2,
            3,
            "expected a property name, found end of filter",
        );
    }

    #[test]
    fn keywords_are_not_property_names() {
        expect_error(
            "A == 1 and or B == 2",
            1,
            12,
            "expected a property name, found 'or'",
        );
        expect_error(
            "A == 1 && # == 2",
            1,
            11,
            "expected a property name, found '#'",
        );
    }

    #[test]
    fn malformed_timestamps() {
        expect_error(
            "T < timestamp",
            1,
            14,
            "expected '(' after 'timestamp', found end of filter",
        );
        let missing_string = "expected a quoted RFC 3339 timestamp such as \"2026-11-26T10:00:00Z\" \
                              after 'timestamp(', found ')'";
        expect_error("T < timestamp()", 1, 15, missing_string);
        let invalid = "invalid timestamp \"2026-02-30T00:00:00Z\": date out of range";
        expect_error("T < timestamp(\"2026-02-30T00:00:00Z\")", 1, 15, invalid);
        let unclosed = "expected ')' after the timestamp, found end of filter";
        expect_error("T < timestamp(\"2026-11-26T10:00:00Z\"", 1, 37, unclosed);
    }

    #[test]
    fn non_finite_float_is_rejected() {
        expect_error(
            "A < 1e400",
            1,
            5,
            "number 1e400 is out of range for a float",
        );
    }

    #[test]
    fn limits_filter_size() {
        let text = format!("A == \"{}\"", "x".repeat(MAX_FILTER_BYTES));
        let message = format!("filter is {} bytes; the limit is 65536 bytes", text.len());
        expect_error(&text, 1, 1, &message);
    }

    #[test]
    fn limits_predicate_count() {
        let allowed = vec!["A exists"; MAX_FILTER_PREDICATES].join(" and ");
        assert_eq!(
            parse(&allowed).unwrap()[0].predicates.len(),
            MAX_FILTER_PREDICATES
        );
        let too_many = format!("{allowed} or B exists");
        let column = u32::try_from(allowed.len() + 5).unwrap();
        let message = "too many predicates: a filter may have at most 1000; split it into several subscriptions";
        expect_error(&too_many, 1, column, message);
    }

    #[test]
    fn limits_property_name_length() {
        let at_limit = format!("{} exists", "P".repeat(MAX_PROPERTY_NAME_BYTES));
        assert!(parse(&at_limit).is_ok());
        let over = format!("{} exists", "P".repeat(MAX_PROPERTY_NAME_BYTES + 1));
        expect_error(
            &over,
            1,
            1,
            "property name is 257 bytes; the limit is 256 bytes",
        );
    }
}
