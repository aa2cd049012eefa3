//! lm-evaluation-harness per-sample records, every generation (README, `routerdc ingest`):
//! `doc_id`, `doc`, `target`, `arguments`, `resps`, `filtered_resps`, per-metric keys, and from
//! 0.4.3 on `doc_hash` (and from 0.4.7 `filter`, `metrics`).
//!
//! A record is parsed borrowing from the file's bytes: the large fields (`arguments` holds the
//! whole few-shot prompt) are kept as raw JSON slices and only decoded when a rule needs them.
//! From 0.4.3 on the leaves of `resps` are strings (`"-1.93"`, `"False"`), so numbers and
//! booleans are read from either form.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// One record, fields borrowed from the file as raw JSON text.
#[derive(Debug, Default)]
pub struct Record<'a> {
    pub doc_id: Option<i64>,
    pub doc: Option<&'a str>,
    pub target: Option<&'a str>,
    /// Raw bytes, validated only when a rule needs them (they hold the whole few-shot prompt).
    pub arguments: Option<&'a [u8]>,
    pub resps: Option<&'a str>,
    pub filter: Option<String>,
    pub doc_hash: Option<String>,
    /// The per-sample metric keys that were asked for (`acc`, `acc_norm`, `exact_match`, ...),
    /// named by the caller's list (no copy per record).
    pub metrics: Vec<(&'a str, Value)>,
}

impl Record<'_> {
    pub fn metric(&self, name: &str) -> Option<&Value> {
        self.metrics.iter().find(|(key, _)| *key == name).map(|(_, value)| value)
    }
}

/// Deserialises one record, keeping the metric keys named in `metrics`.
pub struct RecordSeed<'m> {
    pub metrics: &'m [String],
}

impl<'de, 'm: 'de> DeserializeSeed<'de> for RecordSeed<'m> {
    type Value = Record<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(RecordVisitor { metrics: self.metrics })
    }
}

struct RecordVisitor<'m> {
    metrics: &'m [String],
}

impl<'de, 'm: 'de> Visitor<'de> for RecordVisitor<'m> {
    type Value = Record<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an lm-evaluation-harness sample record (an object with `doc_id`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut record = Record::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "doc_id" => record.doc_id = Some(doc_id(&map.next_value()?).map_err(de::Error::custom)?),
                "doc" => record.doc = Some(map.next_value::<&RawValue>()?.get()),
                "target" => record.target = Some(map.next_value::<&RawValue>()?.get()),
                "arguments" => record.arguments = Some(map.next_value::<&RawValue>()?.get().as_bytes()),
                "resps" => record.resps = Some(map.next_value::<&RawValue>()?.get()),
                "filter" => record.filter = map.next_value()?,
                "doc_hash" => record.doc_hash = map.next_value()?,
                name => match self.metrics.iter().find(|metric| *metric == name) {
                    Some(metric) => record.metrics.push((metric.as_str(), map.next_value()?)),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        if record.doc_id.is_none() {
            return Err(de::Error::missing_field("doc_id"));
        }
        Ok(record)
    }
}

/// An object key, borrowed from the input unless it holds escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(key) => key,
            Key::Owned(key) => key,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Key::Borrowed(key))
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Key::Owned(key.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A JSON array of records (lm-eval 0.4.0–0.4.2 write one per task, despite `.jsonl`).
pub struct RecordArraySeed<'m, F> {
    pub metrics: &'m [String],
    /// Called with each record and its 0-based position; an `Err` stops the parse.
    pub each: F,
}

impl<'de, 'm: 'de, F> DeserializeSeed<'de> for RecordArraySeed<'m, F>
where
    F: FnMut(usize, Record<'de>) -> Result<(), String>,
{
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, 'm: 'de, F> Visitor<'de> for RecordArraySeed<'m, F>
where
    F: FnMut(usize, Record<'de>) -> Result<(), String>,
{
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of lm-evaluation-harness sample records")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut index = 0;
        while let Some(record) = seq.next_element_seed(RecordSeed { metrics: self.metrics })? {
            (self.each)(index, record).map_err(de::Error::custom)?;
            index += 1;
        }
        Ok(index)
    }
}

fn doc_id(value: &Value) -> Result<i64, String> {
    as_f64(value)
        .filter(|id| id.fract() == 0.0 && *id >= 0.0 && *id < 9e15)
        .map(|id| id as i64)
        .ok_or_else(|| format!("field `doc_id` is {value}, not an integer"))
}

/// The fast path for one JSON Lines record: a top-level scan that skips every value it does not
/// need with `memchr` (from quote to quote, counting brackets in between) and hands only the
/// needed fields to serde_json. `None` when the line is not a well-formed record by this scan;
/// the caller then parses the line with [`RecordSeed`], which also gives the exact error.
pub fn scan_record<'a>(line: &'a [u8], metrics: &'a [String]) -> Option<Record<'a>> {
    let mut record = Record::default();
    let mut p = skip_ws(line, 0);
    if line.get(p) != Some(&b'{') {
        return None;
    }
    p = skip_ws(line, p + 1);
    if line.get(p) == Some(&b'}') {
        return None; // no doc_id
    }
    loop {
        if line.get(p) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(line, p)?;
        let key = &line[p + 1..key_end];
        p = skip_ws(line, key_end + 1);
        if line.get(p) != Some(&b':') {
            return None;
        }
        let start = skip_ws(line, p + 1);
        let end = value_end(line, start)?;
        let value = &line[start..end];
        match key {
            b"doc_id" => record.doc_id = Some(doc_id(&serde_json::from_slice(value).ok()?).ok()?),
            b"doc" => record.doc = Some(std::str::from_utf8(value).ok()?),
            b"target" => record.target = Some(std::str::from_utf8(value).ok()?),
            b"arguments" => record.arguments = Some(value),
            b"resps" => record.resps = Some(std::str::from_utf8(value).ok()?),
            b"filter" => record.filter = serde_json::from_slice(value).ok()?,
            b"doc_hash" => record.doc_hash = serde_json::from_slice(value).ok()?,
            _ => {
                if let Some(name) = metrics.iter().find(|m| m.as_bytes() == key) {
                    record.metrics.push((name.as_str(), serde_json::from_slice(value).ok()?));
                }
            }
        }
        p = skip_ws(line, end);
        match line.get(p) {
            Some(b',') => p = skip_ws(line, p + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    if record.doc_id.is_none() || skip_ws(line, p + 1) != line.len() {
        return None;
    }
    Some(record)
}

fn skip_ws(bytes: &[u8], mut p: usize) -> usize {
    while p < bytes.len() && matches!(bytes[p], b' ' | b'\t' | b'\r' | b'\n') {
        p += 1;
    }
    p
}

/// The index of the quote that closes the string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let quote = i + memchr::memchr(b'"', &bytes[i..])?;
        // A quote after an odd number of backslashes is escaped.
        let backslashes = bytes[i..quote].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        i = quote + 1;
    }
}

/// One past the end of the JSON value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match *bytes.get(start)? {
        b'"' => Some(string_end(bytes, start)? + 1),
        open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut depth = 0usize;
            let mut i = start;
            loop {
                let j = i + memchr::memchr3(b'"', open, close, &bytes[i..])?;
                if bytes[j] == b'"' {
                    i = string_end(bytes, j)? + 1;
                } else if bytes[j] == open {
                    depth += 1;
                    i = j + 1;
                } else {
                    depth -= 1;
                    i = j + 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
            }
        }
        _ => {
            let end =
                bytes[start..].iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))?;
            (end > 0).then_some(start + end)
        }
    }
}

/// A number from a JSON number, a numeric string (`"-1.93"`, `"1e-06"`, `"-inf"`) or a boolean.
pub fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => number_in_text(text),
        Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        _ => None,
    }
}

/// A number written as text by lm-eval 0.4.3+ (`"-1.93"`, `"1e-06"`, `"-inf"`, `"True"`).
pub fn number_in_text(text: &str) -> Option<f64> {
    match text.trim() {
        "True" | "true" => Some(1.0),
        "False" | "false" => Some(0.0),
        text => text.parse().ok(),
    }
}

/// A boolean from `true`, `"True"`, `1` or `1.0` (and their false twins).
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.trim() {
            "True" | "true" | "1" | "1.0" => Some(true),
            "False" | "false" | "0" | "0.0" => Some(false),
            _ => None,
        },
        Value::Number(number) => match number.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names the tests ask for; records borrow their names from this list.
    static METRICS: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["acc".to_owned(), "exact_match".to_owned()]);

    fn parse(line: &str) -> Result<Record<'_>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_str(line);
        RecordSeed { metrics: &METRICS }.deserialize(&mut deserializer)
    }

    #[test]
    fn a_record_keeps_the_scoring_fields_and_skips_the_rest() {
        let record = parse(
            r#"{"doc_id": 3, "doc": {"q": 1}, "target": "1", "arguments": {"gen_args_0": {"arg_0": "long prompt"}},
               "resps": [[["-1.5", "False"]]], "filtered_resps": [["-1.5", "False"]], "filter": "none",
               "metrics": ["acc"], "doc_hash": "ab", "acc": 1.0, "acc_norm": 0.0}"#,
        )
        .unwrap();
        assert_eq!(record.doc_id, Some(3));
        assert_eq!(record.doc.unwrap(), r#"{"q": 1}"#);
        assert_eq!(record.filter.as_deref(), Some("none"));
        assert_eq!(record.doc_hash.as_deref(), Some("ab"));
        assert_eq!(record.metrics, [("acc", Value::from(1.0))]);
    }

    #[test]
    fn the_fast_scan_agrees_with_serde() {
        let metrics = &*METRICS;
        let lines = [
            r#"{"doc_id": 3, "doc": {"q": "a \"}\" [b]"}, "target": "1", "arguments": {"gen_args_0": {"arg_0": "x\\", "arg_1": " A"}}, "resps": [[["-1.5", "False"]]], "filter": "none", "acc": 1.0}"#,
            r#"  {"doc_id":0,"doc":{},"resps":[[1,2],[3]],"target":0,"exact_match":0}  "#,
        ];
        for line in lines {
            let fast = scan_record(line.as_bytes(), metrics).expect("the scan reads it");
            let slow = parse(line).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{line}");
        }
        for broken in
            [r#"{"doc_id": 1, "doc": {"q": 1}"#, r#"{"doc": {}}"#, r#"{"doc_id": 1} trailing"#, r#"{"doc_id": NaN}"#]
        {
            assert!(scan_record(broken.as_bytes(), metrics).is_none(), "{broken}");
        }
    }

    #[test]
    fn doc_id_is_required_and_integral() {
        assert!(parse(r#"{"doc": {}}"#).unwrap_err().to_string().contains("missing field `doc_id`"));
        assert!(parse(r#"{"doc_id": 1.5}"#).unwrap_err().to_string().contains("not an integer"));
        assert_eq!(parse(r#"{"doc_id": "7"}"#).unwrap().doc_id, Some(7));
    }

    #[test]
    fn numbers_and_booleans_come_from_strings_too() {
        assert_eq!(as_f64(&Value::from("-9.536740890325746e-07")), Some(-9.536740890325746e-07));
        assert_eq!(as_f64(&Value::from("-inf")), Some(f64::NEG_INFINITY));
        assert_eq!(as_f64(&Value::from(true)), Some(1.0));
        assert_eq!(as_bool(&Value::from("False")), Some(false));
        assert_eq!(as_bool(&Value::from(1)), Some(true));
        assert_eq!(as_bool(&Value::from("maybe")), None);
    }
}
