//! The validating walk over toml's spanned document: the document with its
//! file (for errors naming line and key), its tables and items, and the value
//! readers (durations, numbers, regexes, sizes) the parser builds on. Only
//! this way does every semantic error carry the line of the key that caused it.

use super::schema::{ConfigError, MAX_CONFIG_BYTES, MAX_REGEX_BYTES, home_dir, parse_duration};
use super::suggest::did_you_mean;
use regex::Regex;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

// ---------------------------------------------------------------------------------
// The validating walk over the spanned document
// ---------------------------------------------------------------------------------

/// The text being parsed and the file to name in errors.
pub(super) struct Doc<'t> {
    pub(super) text: &'t str,
    pub(super) path: &'t Path,
}

impl Doc<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    pub(super) fn error(
        &self,
        span: &Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            line: self.line_of(span.start),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A TOML syntax error: toml knows the position but not the key, so the key
    /// is read back from the text (the table header above and the key on the line).
    pub(super) fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map_or(0, |s| s.start);
        let line = self.line_of(offset);
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            key: key_at_line(self.text, line),
            message: format!("invalid TOML: {}", error.message()),
        }
    }

    /// Relative paths in the file are relative to the file's directory.
    pub(super) fn resolve_path(&self, raw: &str) -> PathBuf {
        let expanded = match raw.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => match home_dir() {
                Some(home) => home.join(rest.trim_start_matches('/')),
                None => PathBuf::from(raw),
            },
            _ => PathBuf::from(raw),
        };
        match self.path.parent() {
            Some(dir) if expanded.is_relative() && dir.is_absolute() => dir.join(expanded),
            _ => expanded,
        }
    }
}

/// The key path of a line, best effort, for syntax errors: `[header]` or
/// `[[header]]` (with its index) above it, plus `key =` on the line itself.
pub(super) fn key_at_line(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line.saturating_sub(1)).map_or("", |l| l.trim());
    let header_of = |l: &str| -> Option<(String, bool)> {
        let l = l.trim();
        if let Some(inner) = l.strip_prefix("[[") {
            // Up to the first `]`: an unclosed `[[watch]` is the header `watch`
            // (issue 13: its syntax error was reported under the key `watch]`).
            let name = inner.split(']').next()?.trim();
            return Some((name.to_owned(), true));
        }
        let inner = l.strip_prefix('[')?;
        Some((inner.split(']').next()?.trim().to_owned(), false))
    };
    // The header this line belongs to, and which element of an array of tables.
    let mut header: Option<(String, bool)> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines.iter().take(line.saturating_sub(1)) {
        if let Some((name, array)) = header_of(l) {
            if array {
                *counts.entry(name.clone()).or_insert(0) += 1;
            }
            header = Some((name, array));
        }
    }
    let mut path = String::new();
    if let Some((name, _)) = &header {
        // `[watch.rules]` after the second `[[watch]]` is `watch[1].rules`.
        let mut parts = Vec::new();
        let mut prefix = String::new();
        for part in name.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part.trim());
            match counts.get(&prefix) {
                Some(n) => parts.push(format!("{}[{}]", part.trim(), n.saturating_sub(1))),
                None => parts.push(part.trim().to_owned()),
            }
        }
        path = parts.join(".");
    }
    if header_of(current).is_none()
        && let Some((key, _)) = current.split_once('=')
    {
        let key = key.trim();
        if !key.is_empty() && !key.starts_with('#') {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
    } else if let Some((name, _)) = header_of(current) {
        return name;
    }
    path
}

/// A key path extended by one key, quoting keys that are not bare.
pub(super) fn join_key(parent: &str, key: &str) -> String {
    let bare =
        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_owned() } else { format!("{key:?}") };
    if parent.is_empty() { key } else { format!("{parent}.{key}") }
}

/// A table of the document, with its key path and header span.
pub(super) struct Table<'a, 'i> {
    pub(super) path: String,
    pub(super) span: Range<usize>,
    pub(super) map: &'a DeTable<'i>,
}

/// A value of the document, with its key path and the spans of key and value.
pub(super) struct Item<'a, 'i> {
    pub(super) path: String,
    pub(super) name: &'a str,
    pub(super) key_span: Range<usize>,
    pub(super) value: &'a Spanned<DeValue<'i>>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// Entries in file order (the map itself is sorted by key).
    pub(super) fn entries(&self) -> Vec<Item<'a, 'i>> {
        let mut items: Vec<Item<'a, 'i>> = self
            .map
            .iter()
            .map(|(k, v)| Item {
                path: join_key(&self.path, k.get_ref()),
                name: k.get_ref().as_ref(),
                key_span: k.span(),
                value: v,
            })
            .collect();
        items.sort_by_key(|item| item.key_span.start);
        items
    }

    pub(super) fn get(&self, name: &str) -> Option<Item<'a, 'i>> {
        self.map.iter().find(|(k, _)| k.get_ref().as_ref() == name).map(|(k, v)| Item {
            path: join_key(&self.path, name),
            name: k.get_ref().as_ref(),
            key_span: k.span(),
            value: v,
        })
    }

    /// Rejects keys not in `allowed`, naming the first in the file.
    pub(super) fn check_keys(&self, doc: &Doc<'_>, allowed: &[&str]) -> Result<(), ConfigError> {
        for item in self.entries() {
            if !allowed.contains(&item.name) {
                let mut message = String::from("unknown key");
                if let Some(close) = did_you_mean(item.name, allowed.iter().copied()) {
                    message.push_str(&format!(" (did you mean \"{close}\"?)"));
                }
                message.push_str(&format!("; expected one of: {}", allowed.join(", ")));
                return Err(doc.error(&item.key_span, &item.path, message));
            }
        }
        Ok(())
    }
}

impl<'a, 'i> Item<'a, 'i> {
    pub(super) fn value(&self) -> &'a DeValue<'i> {
        self.value.get_ref()
    }

    pub(super) fn span(&self) -> Range<usize> {
        self.value.span()
    }

    pub(super) fn error(&self, doc: &Doc<'_>, message: impl Into<String>) -> ConfigError {
        doc.error(&self.span(), &self.path, message)
    }

    pub(super) fn key_error(&self, doc: &Doc<'_>, message: impl Into<String>) -> ConfigError {
        doc.error(&self.key_span, &self.path, message)
    }

    pub(super) fn expected(&self, doc: &Doc<'_>, what: &str) -> ConfigError {
        self.error(doc, format!("expected {what}, found {}", describe(self.value())))
    }

    pub(super) fn table(&self, doc: &Doc<'_>) -> Result<Table<'a, 'i>, ConfigError> {
        match self.value() {
            DeValue::Table(map) => Ok(Table { path: self.path.clone(), span: self.span(), map }),
            _ => Err(self.expected(doc, "a table")),
        }
    }

    pub(super) fn string(&self, doc: &Doc<'_>, what: &str) -> Result<&'a str, ConfigError> {
        match self.value() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected(doc, what)),
        }
    }

    pub(super) fn non_empty_string(
        &self,
        doc: &Doc<'_>,
        what: &str,
    ) -> Result<&'a str, ConfigError> {
        match self.string(doc, what)? {
            s if s.trim().is_empty() => Err(self.expected(doc, what)),
            s => Ok(s),
        }
    }

    pub(super) fn bool(&self, doc: &Doc<'_>) -> Result<bool, ConfigError> {
        self.value().as_bool().ok_or_else(|| self.expected(doc, "true or false"))
    }

    pub(super) fn duration(&self, doc: &Doc<'_>) -> Result<Duration, ConfigError> {
        let what = "a duration like \"2s\" or \"1h\"";
        let text = self.string(doc, what)?;
        match parse_duration(text) {
            Ok(d) => Ok(d),
            Err(_) if humantime::parse_duration(text.trim()).is_ok() => {
                Err(self.error(doc, "expected a duration of at most 365 days"))
            }
            Err(_) => Err(self.expected(doc, what)),
        }
    }

    pub(super) fn positive_duration(&self, doc: &Doc<'_>) -> Result<Duration, ConfigError> {
        let d = self.duration(doc)?;
        if d.is_zero() {
            return Err(
                self.error(doc, "expected a duration longer than zero, like \"2s\" or \"1h\"")
            );
        }
        Ok(d)
    }

    pub(super) fn integer_in(
        &self,
        doc: &Doc<'_>,
        min: i128,
        max: i128,
        what: &str,
    ) -> Result<i128, ConfigError> {
        integer(self.value())
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.expected(doc, what))
    }

    pub(super) fn regex(&self, doc: &Doc<'_>, what: &str) -> Result<Regex, ConfigError> {
        let text = self.string(doc, what)?;
        compile_regex(text).map_err(|e| self.error(doc, e))
    }

    pub(super) fn regex_list(&self, doc: &Doc<'_>, what: &str) -> Result<Vec<Regex>, ConfigError> {
        let DeValue::Array(items) = self.value() else {
            return Err(self.expected(doc, what));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let item = Item {
                    path: format!("{}[{i}]", self.path),
                    name: self.name,
                    key_span: value.span(),
                    value,
                };
                item.regex(doc, "a regex string")
            })
            .collect()
    }
}

pub(super) fn too_big() -> String {
    format!(
        "the configuration is larger than {} KiB, the most Leakwatch reads",
        MAX_CONFIG_BYTES / 1024
    )
}

pub(super) fn compile_regex(text: &str) -> Result<Regex, String> {
    let mut builder = regex::RegexBuilder::new(text);
    builder.size_limit(MAX_REGEX_BYTES).dfa_size_limit(MAX_REGEX_BYTES);
    builder.build().map_err(|e| {
        if matches!(e, regex::Error::CompiledTooBig(_)) {
            let quoted: String = text.chars().take(60).collect();
            return format!(
                "regex {quoted:?}{} is too big: compiled, a regex may take at most {} KiB",
                if text.chars().count() > 60 { "..." } else { "" },
                MAX_REGEX_BYTES / 1024
            );
        }
        // The regex crate's message spans several lines with a caret diagram; the
        // line starting with "error:" is the part that reads well after a key.
        let full = e.to_string();
        let reason = full.lines().find_map(|l| l.trim().strip_prefix("error:")).map_or_else(
            || full.lines().last().unwrap_or("").trim().to_owned(),
            |r| r.trim().to_owned(),
        );
        format!("invalid regex {text:?}: {reason}")
    })
}

/// How a value reads in "found ..." messages.
pub(super) fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

pub(super) fn integer(value: &DeValue<'_>) -> Option<i128> {
    let i = value.as_integer()?;
    let digits = i.as_str().replace('_', "");
    i128::from_str_radix(&digits, i.radix()).ok()
}

pub(super) fn float(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        _ => integer(value).map(|i| i as f64),
    }
}

pub(super) fn positive_number(value: &DeValue<'_>) -> Option<f64> {
    float(value).filter(|n| n.is_finite() && *n > 0.0)
}

pub(super) fn parse_percent(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix('%')?.trim().parse::<f64>().ok()?;
    (number.is_finite() && number > 0.0 && number <= 100.0).then_some(number)
}

/// `"500MB"`, `"2GiB"`, `"1.5 GB"`, `"2G"` or `"1048576"`: KB, MB, GB and TB are
/// powers of 1000; K, M, G, T and KiB, MiB, GiB, TiB of 1024, as `ulimit` and `top`
/// read them.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split =
        text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.replace('_', "").parse().ok()?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (number * multiplier).round();
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}
