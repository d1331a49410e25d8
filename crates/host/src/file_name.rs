//! File names: [`Glob`] picks files up by pattern (`*.json`, `order-??.xml`) and can
//! capture the part a single `*` matched; [`FileNameTemplate`] names delivered files
//! (`{message_id}.json`, `{ReceivedFileName}`).

use std::fmt;

/// A file-name pattern: `*` matches any run of characters, `?` any one character,
/// everything else itself. Matching is on the whole name and case-sensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("the pattern is empty; use \"*\" to pick up every file".to_string());
        }
        if pattern.contains(['/', '\\']) {
            return Err(format!(
                "the pattern '{pattern}' contains a path separator; it matches file names only"
            ));
        }
        Ok(Glob {
            pattern: pattern.chars().collect(),
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        wildcard_match(&self.pattern, &name)
    }

    /// For a pattern with exactly one `*`: the text the `*` matched in `name`, if `name`
    /// matches.
    pub fn capture<'a>(&self, name: &'a str) -> Option<&'a str> {
        let pattern: String = self.pattern.iter().collect();
        let (prefix, suffix) = pattern.split_once('*')?;
        if !self.matches(name) || name.len() < prefix.len() + suffix.len() {
            return None;
        }
        let start = prefix.chars().count();
        let end = name.chars().count() - suffix.chars().count();
        let start_byte = name
            .char_indices()
            .nth(start)
            .map_or(name.len(), |(at, _)| at);
        let end_byte = name
            .char_indices()
            .nth(end)
            .map_or(name.len(), |(at, _)| at);
        name.get(start_byte..end_byte)
    }

    pub fn star_count(&self) -> usize {
        self.pattern.iter().filter(|&&c| c == '*').count()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.pattern.iter().collect::<String>())
    }
}

/// Iterative wildcard matching with one backtrack point: linear in practice, never
/// exponential.
fn wildcard_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                last_star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match last_star {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    last_star = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The name a FILE send port gives a delivered message: literal text with placeholders,
/// `{message_id}` or `{PropertyName}` (any context property of the message). The default,
/// `{message_id}`, makes a redelivery overwrite the same file rather than add a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileNameTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TemplatePart {
    Text(String),
    MessageId,
    Property(String),
}

/// The placeholder for the message id.
const MESSAGE_ID_PLACEHOLDER: &str = "message_id";

impl FileNameTemplate {
    pub fn message_id() -> FileNameTemplate {
        FileNameTemplate {
            parts: vec![TemplatePart::MessageId],
        }
    }

    pub fn parse(template: &str) -> Result<FileNameTemplate, String> {
        if template.contains(['/', '\\']) {
            return Err(format!(
                "the file name '{template}' contains a path separator; name the folder in \
                 `address`"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!(
                    "the file name '{template}' has a '{{' without '}}'"
                ));
            };
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "" => return Err(format!("the file name '{template}' has an empty '{{}}'")),
                MESSAGE_ID_PLACEHOLDER => TemplatePart::MessageId,
                property => TemplatePart::Property(property.to_string()),
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!(
                "the file name '{template}' has a '}}' without '{{'"
            ));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        if parts.is_empty() {
            return Err("the file name is empty; the default is \"{message_id}\"".to_string());
        }
        Ok(FileNameTemplate { parts })
    }

    /// The file name for one message; `property` looks a context property up as text.
    /// Refuses a name that would leave the folder or that is empty.
    pub fn render(
        &self,
        message_id: &str,
        property: impl Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        let mut name = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Text(text) => name.push_str(text),
                TemplatePart::MessageId => name.push_str(message_id),
                TemplatePart::Property(property_name) => match property(property_name) {
                    Some(value) => name.push_str(&value),
                    None => {
                        return Err(format!(
                            "the file name needs property '{property_name}', which the \
                             message does not have"
                        ));
                    }
                },
            }
        }
        let unsafe_name = name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\', '\0'])
            || name.starts_with('.');
        if unsafe_name {
            return Err(format!(
                "'{name}' cannot be a file name (empty, hidden, or with a path separator)"
            ));
        }
        Ok(name)
    }
}

impl Default for FileNameTemplate {
    fn default() -> FileNameTemplate {
        FileNameTemplate::message_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let glob = Glob::new("*.json").expect("pattern");
        assert!(glob.matches("order.json"));
        assert!(glob.matches(".json"));
        assert!(!glob.matches("order.json.tmp"));
        let glob = Glob::new("order-??.x*l").expect("pattern");
        assert!(glob.matches("order-12.xml"));
        assert!(glob.matches("order-12.xhtml"));
        assert!(!glob.matches("order-123.xml"));
        assert!(Glob::new("*").expect("pattern").matches("anything at all"));
        assert!(Glob::new("a/*").is_err());
    }

    #[test]
    fn a_single_star_captures_what_it_matched() {
        let glob = Glob::new("order-*.json").expect("pattern");
        assert_eq!(glob.capture("order-4711.json"), Some("4711"));
        assert_eq!(glob.capture("order-.json"), Some(""));
        assert_eq!(glob.capture("invoice-1.json"), None);
        let glob = Glob::new("ü-*-ß").expect("pattern");
        assert_eq!(glob.capture("ü-straße-ß"), Some("straße"));
    }

    #[test]
    fn templates_fill_in_the_message_id_and_properties() {
        let template = FileNameTemplate::parse("{Customer}-{message_id}.json").expect("valid");
        let name = template
            .render("m-1", |name| {
                (name == "Customer").then(|| "acme".to_string())
            })
            .expect("rendered");
        assert_eq!(name, "acme-m-1.json");
        let missing = template.render("m-1", |_| None).expect_err("no Customer");
        assert!(missing.contains("Customer"), "{missing}");
    }

    #[test]
    fn templates_cannot_leave_the_folder() {
        assert!(FileNameTemplate::parse("../{message_id}").is_err());
        assert!(FileNameTemplate::parse("{message_id").is_err());
        assert!(FileNameTemplate::parse("").is_err());
        let template = FileNameTemplate::parse("{Name}").expect("valid");
        let escape = template.render("m", |_| Some("../../etc/passwd".to_string()));
        assert!(escape.is_err());
        let hidden = template.render("m", |_| Some(".profile".to_string()));
        assert!(hidden.is_err());
    }
}
