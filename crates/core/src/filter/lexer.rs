//! [`Lexer`]: turns filter text into tokens, one at a time, tracking the 1-based line and
//! column (in characters) of each token so that every error can point at its cause.
//!
//! The lexer knows the shape of tokens (words, numbers, strings, symbols) but not the
//! grammar: a character that starts no token becomes [`TokenKind::Unexpected`], which the
//! parser reports together with what it expected at that place.

use super::error::FilterError;
use super::predicate::Operator;

/// A 1-based line and column (in characters) in the filter text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) line: u32,
    pub(super) column: u32,
}

impl Position {
    pub(super) const START: Position = Position { line: 1, column: 1 };
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum TokenKind {
    /// A property name, or the word `timestamp` before a timestamp literal.
    Identifier,
    String(String),
    Integer(i64),
    Float(f64),
    Comparison(Operator),
    And,
    Or,
    Exists,
    True,
    False,
    LeftParenthesis,
    RightParenthesis,
    /// A character that starts no token, such as `=`, `!` or `#`.
    Unexpected,
    End,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token<'text> {
    pub(super) kind: TokenKind,
    /// The token exactly as written (empty for [`TokenKind::End`]).
    pub(super) text: &'text str,
    pub(super) position: Position,
}

/// Longer tokens are shortened in error messages.
const DESCRIBED_TOKEN_MAX_CHARS: usize = 40;

impl Token<'_> {
    /// How an error message names this token: `'text'`, or `end of filter`.
    pub(super) fn describe(&self) -> String {
        if self.kind == TokenKind::End {
            return "end of filter".to_string();
        }
        let mut shown: String = self.text.chars().take(DESCRIBED_TOKEN_MAX_CHARS).collect();
        if shown.len() < self.text.len() {
            shown.push_str("...");
        }
        format!("'{shown}'")
    }
}

pub(super) struct Lexer<'text> {
    text: &'text str,
    offset: usize,
    position: Position,
    /// Where "end of filter" is reported: just after the last token.
    end_of_last_token: Position,
}

impl<'text> Lexer<'text> {
    pub(super) fn new(text: &'text str) -> Lexer<'text> {
        Lexer {
            text,
            offset: 0,
            position: Position::START,
            end_of_last_token: Position::START,
        }
    }

    pub(super) fn next_token(&mut self) -> Result<Token<'text>, FilterError> {
        self.skip_whitespace();
        let start_offset = self.offset;
        let start = self.position;
        let Some(first) = self.peek() else {
            let position = self.end_of_last_token;
            return Ok(Token {
                kind: TokenKind::End,
                text: "",
                position,
            });
        };
        let kind = self.lex_token_kind(first, start_offset, start)?;
        self.end_of_last_token = self.position;
        Ok(Token {
            kind,
            text: &self.text[start_offset..self.offset],
            position: start,
        })
    }

    fn lex_token_kind(
        &mut self,
        first: char,
        start_offset: usize,
        start: Position,
    ) -> Result<TokenKind, FilterError> {
        if is_identifier_start(first) {
            return Ok(self.lex_word(start_offset));
        }
        let starts_negative_number =
            first == '-' && self.peek_second().is_some_and(|next| next.is_ascii_digit());
        if first.is_ascii_digit() || starts_negative_number {
            return self.lex_number(start_offset, start);
        }
        if first == '"' {
            return self.lex_string(start);
        }
        Ok(self.lex_symbol())
    }

    fn lex_word(&mut self, start_offset: usize) -> TokenKind {
        while self.peek().is_some_and(is_identifier_continue) {
            self.advance();
        }
        keyword_kind(&self.text[start_offset..self.offset]).unwrap_or(TokenKind::Identifier)
    }

    fn lex_number(
        &mut self,
        start_offset: usize,
        start: Position,
    ) -> Result<TokenKind, FilterError> {
        self.advance();
        while let Some(next) = self.peek() {
            let after_exponent_marker = self.text[..self.offset].ends_with(['e', 'E']);
            let is_exponent_sign = after_exponent_marker && matches!(next, '+' | '-');
            if next.is_ascii_alphanumeric() || matches!(next, '_' | '.') || is_exponent_sign {
                self.advance();
            } else {
                break;
            }
        }
        number_kind(&self.text[start_offset..self.offset])
            .map_err(|message| FilterError::at(start, message))
    }

    fn lex_string(&mut self, start: Position) -> Result<TokenKind, FilterError> {
        self.advance();
        let mut value = String::new();
        loop {
            let character_position = self.position;
            match self.advance() {
                None => return Err(unterminated_string(start, "end of filter")),
                Some('\n') => return Err(unterminated_string(start, "end of line")),
                Some('"') => return Ok(TokenKind::String(value)),
                Some('\\') => value.push(self.lex_escape(start, character_position)?),
                Some(character) => value.push(character),
            }
        }
    }

    fn lex_escape(
        &mut self,
        string_start: Position,
        backslash: Position,
    ) -> Result<char, FilterError> {
        match self.advance() {
            None => Err(unterminated_string(string_start, "end of filter")),
            Some('"') => Ok('"'),
            Some('\\') => Ok('\\'),
            Some('n') => Ok('\n'),
            Some('t') => Ok('\t'),
            Some('u') => self.lex_unicode_escape(backslash),
            Some(other) => Err(FilterError::at(
                backslash,
                format!(
                    "unknown escape '\\{}' in string: expected \\\", \\\\, \\n, \\t or \\u{{XXXX}}",
                    other.escape_debug()
                ),
            )),
        }
    }

    /// Reads `{XXXX}` after `\u`: one to six hexadecimal digits naming a Unicode scalar.
    fn lex_unicode_escape(&mut self, backslash: Position) -> Result<char, FilterError> {
        let malformed = || {
            FilterError::at(
                backslash,
                "invalid unicode escape: expected \\u{XXXX} with 1 to 6 hexadecimal digits",
            )
        };
        if self.peek() != Some('{') {
            return Err(malformed());
        }
        self.advance();
        let mut digits = String::new();
        loop {
            match self.advance() {
                Some('}') if !digits.is_empty() => break,
                Some(digit) if digit.is_ascii_hexdigit() && digits.len() < 6 => digits.push(digit),
                _ => return Err(malformed()),
            }
        }
        u32::from_str_radix(&digits, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| {
                FilterError::at(
                    backslash,
                    format!("unicode escape \\u{{{digits}}} is not a valid character"),
                )
            })
    }

    fn lex_symbol(&mut self) -> TokenKind {
        let Some(first) = self.advance() else {
            return TokenKind::End;
        };
        match first {
            '=' if self.advance_if('=') => TokenKind::Comparison(Operator::Equal),
            '!' if self.advance_if('=') => TokenKind::Comparison(Operator::NotEqual),
            '<' if self.advance_if('=') => TokenKind::Comparison(Operator::LessOrEqual),
            '<' => TokenKind::Comparison(Operator::Less),
            '>' if self.advance_if('=') => TokenKind::Comparison(Operator::GreaterOrEqual),
            '>' => TokenKind::Comparison(Operator::Greater),
            '&' if self.advance_if('&') => TokenKind::And,
            '|' if self.advance_if('|') => TokenKind::Or,
            '(' => TokenKind::LeftParenthesis,
            ')' => TokenKind::RightParenthesis,
            _ => TokenKind::Unexpected,
        }
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.advance();
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.text[self.offset..].chars().nth(1)
    }

    fn advance_if(&mut self, expected: char) -> bool {
        let matches = self.peek() == Some(expected);
        if matches {
            self.advance();
        }
        matches
    }

    fn advance(&mut self) -> Option<char> {
        let character = self.peek()?;
        self.offset += character.len_utf8();
        if character == '\n' {
            self.position = Position {
                line: self.position.line + 1,
                column: 1,
            };
        } else {
            self.position.column += 1;
        }
        Some(character)
    }
}

pub(super) fn is_identifier_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_'
}

pub(super) fn is_identifier_continue(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | ':' | '-')
}

/// The keyword a word spells, case-insensitively; `None` for property names.
pub(super) fn keyword_kind(word: &str) -> Option<TokenKind> {
    let keywords = [
        ("and", TokenKind::And),
        ("or", TokenKind::Or),
        ("exists", TokenKind::Exists),
        ("true", TokenKind::True),
        ("false", TokenKind::False),
    ];
    keywords
        .into_iter()
        .find(|(keyword, _)| word.eq_ignore_ascii_case(keyword))
        .map(|(_, kind)| kind)
}

fn unterminated_string(start: Position, found: &str) -> FilterError {
    FilterError::at(
        start,
        format!("unterminated string: expected a closing '\"', found {found}"),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumberShape {
    Integer,
    Float,
}

fn number_kind(text: &str) -> Result<TokenKind, String> {
    match number_shape(text) {
        None => Err(format!(
            "expected a number such as 42, -7, 2.5 or 1e3, found '{text}'"
        )),
        Some(NumberShape::Integer) => text.parse::<i64>().map(TokenKind::Integer).map_err(|_| {
            format!(
                "integer {text} is out of range: integers must be between {} and {}",
                i64::MIN,
                i64::MAX
            )
        }),
        Some(NumberShape::Float) => match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(TokenKind::Float(number)),
            _ => Err(format!("number {text} is out of range for a float")),
        },
    }
}

/// `-?digits(.digits)?([eE][+-]?digits)?`; a fraction or exponent makes it a float.
fn number_shape(text: &str) -> Option<NumberShape> {
    let all_digits =
        |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let exponent_is_valid = exponent
        .is_none_or(|exponent| all_digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)));
    if !all_digits(whole) || !fraction.is_none_or(all_digits) || !exponent_is_valid {
        return None;
    }
    if fraction.is_some() || exponent.is_some() {
        Some(NumberShape::Float)
    } else {
        Some(NumberShape::Integer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Result<Vec<TokenKind>, FilterError> {
        let mut lexer = Lexer::new(text);
        let mut kinds = Vec::new();
        loop {
            let token = lexer.next_token()?;
            if token.kind == TokenKind::End {
                return Ok(kinds);
            }
            kinds.push(token.kind);
        }
    }

    #[test]
    fn lexes_every_symbol() {
        let expected = vec![
            TokenKind::Comparison(Operator::Equal),
            TokenKind::Comparison(Operator::NotEqual),
            TokenKind::Comparison(Operator::Less),
            TokenKind::Comparison(Operator::LessOrEqual),
            TokenKind::Comparison(Operator::Greater),
            TokenKind::Comparison(Operator::GreaterOrEqual),
            TokenKind::And,
            TokenKind::Or,
            TokenKind::LeftParenthesis,
            TokenKind::RightParenthesis,
            TokenKind::Unexpected,
            TokenKind::Unexpected,
        ];
        assert_eq!(kinds("== != < <= > >= && || ( ) = !"), Ok(expected));
    }

    #[test]
    fn keywords_are_case_insensitive_and_other_words_are_identifiers() {
        let expected = vec![
            TokenKind::And,
            TokenKind::Or,
            TokenKind::Exists,
            TokenKind::True,
            TokenKind::False,
            TokenKind::Identifier,
            TokenKind::Identifier,
        ];
        assert_eq!(
            kinds("AND Or eXiStS TRUE false Brand http:Content-Type"),
            Ok(expected)
        );
    }

    #[test]
    fn lexes_numbers() {
        let expected = vec![
            TokenKind::Integer(42),
            TokenKind::Integer(-7),
            TokenKind::Float(2.5),
            TokenKind::Float(-1e-3),
            TokenKind::Float(1e3),
            TokenKind::Integer(i64::MIN),
        ];
        assert_eq!(
            kinds("42 -7 2.5 -1e-3 1E+3 -9223372036854775808"),
            Ok(expected)
        );
    }

    #[test]
    fn rejects_malformed_numbers() {
        for text in ["1.", "1.2.3", "1e", "1e+", "1abc", "0x10", "1e5e5"] {
            let error = kinds(text).unwrap_err();
            assert_eq!(
                error.message,
                format!("expected a number such as 42, -7, 2.5 or 1e3, found '{text}'"),
            );
        }
        assert_eq!(
            kinds("1e999").unwrap_err().message,
            "number 1e999 is out of range for a float"
        );
    }

    #[test]
    fn lexes_string_escapes() {
        let expected = vec![TokenKind::String(
            "a\"b\\c\nd\te\u{e9}\u{1F600}".to_string(),
        )];
        assert_eq!(kinds(r#""a\"b\\c\nd\te\u{E9}\u{1f600}""#), Ok(expected));
    }

    #[test]
    fn rejects_invalid_unicode_escapes() {
        let message = "invalid unicode escape: expected \\u{XXXX} with 1 to 6 hexadecimal digits";
        for text in [r#""\u00e9""#, r#""\u{}""#, r#""\u{1234567}""#, r#""\u{12""#] {
            assert_eq!(kinds(text).unwrap_err().message, message, "{text}");
        }
        let surrogate = kinds(r#""\u{D800}""#).unwrap_err();
        assert_eq!(
            surrogate.message,
            "unicode escape \\u{D800} is not a valid character"
        );
    }

    #[test]
    fn positions_count_characters_and_lines() {
        let mut lexer = Lexer::new("é == 1\n  \"ü\" x");
        let positions: Vec<(u32, u32)> = std::iter::from_fn(|| {
            let token = lexer.next_token().ok()?;
            (token.kind != TokenKind::End).then_some((token.position.line, token.position.column))
        })
        .collect();
        assert_eq!(positions, vec![(1, 1), (1, 3), (1, 6), (2, 3), (2, 7)]);
    }

    #[test]
    fn end_of_filter_is_reported_just_after_the_last_token() {
        let mut lexer = Lexer::new("A ==\n\n   ");
        let mut token = lexer.next_token().unwrap();
        while token.kind != TokenKind::End {
            token = lexer.next_token().unwrap();
        }
        assert_eq!(token.position, Position { line: 1, column: 5 });
    }

    #[test]
    fn long_tokens_are_shortened_in_descriptions() {
        let text = "A".repeat(50);
        let token = Lexer::new(&text).next_token().unwrap();
        assert_eq!(token.describe(), format!("'{}...'", "A".repeat(40)));
    }
}
