//! lm-evaluation-harness per-sample records, every generation (../shared/notes/harness-formats.md §1):
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

/// One record, fields borrowed from the file.
#[derive(Debug, Default)]
pub struct Record<'a> {
    pub doc_id: Option<i64>,
    pub doc: Option<&'a RawValue>,
    pub target: Option<&'a RawValue>,
    pub arguments: Option<&'a RawValue>,
    pub resps: Option<&'a RawValue>,
    pub filter: Option<String>,
    pub doc_hash: Option<String>,
    /// The per-sample metric keys that were asked for (`acc`, `acc_norm`, `exact_match`, ...).
    pub metrics: Vec<(String, Value)>,
}

impl Record<'_> {
    pub fn metric(&self, name: &str) -> Option<&Value> {
        self.metrics.iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }
}

/// Deserialises one record, keeping the metric keys named in `metrics`.
pub struct RecordSeed<'m> {
    pub metrics: &'m [String],
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Record<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(RecordVisitor { metrics: self.metrics })
    }
}

struct RecordVisitor<'m> {
    metrics: &'m [String],
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Record<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an lm-evaluation-harness sample record (an object with `doc_id`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut record = Record::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "doc_id" => {
                    let value: Value = map.next_value()?;
                    let id = as_f64(&value)
                        .filter(|id| id.fract() == 0.0 && *id >= 0.0)
                        .ok_or_else(|| de::Error::custom(format!("field `doc_id` is {value}, not an integer")))?;
                    record.doc_id = Some(id as i64);
                }
                "doc" => record.doc = Some(map.next_value()?),
                "target" => record.target = Some(map.next_value()?),
                "arguments" => record.arguments = Some(map.next_value()?),
                "resps" => record.resps = Some(map.next_value()?),
                "filter" => record.filter = map.next_value()?,
                "doc_hash" => record.doc_hash = map.next_value()?,
                name if self.metrics.iter().any(|metric| metric == name) => {
                    record.metrics.push((name.to_owned(), map.next_value()?));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
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

impl<'de, F> DeserializeSeed<'de> for RecordArraySeed<'_, F>
where
    F: FnMut(usize, Record<'de>) -> Result<(), String>,
{
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F> Visitor<'de> for RecordArraySeed<'_, F>
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

/// A number from a JSON number, a numeric string (`"-1.93"`, `"1e-06"`, `"-inf"`) or a boolean.
pub fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => match text.trim() {
            "True" | "true" => Some(1.0),
            "False" | "false" => Some(0.0),
            text => text.parse().ok(),
        },
        Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        _ => None,
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
            Some(x) if x == 1.0 => Some(true),
            Some(x) if x == 0.0 => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Record<'_>, serde_json::Error> {
        let metrics = ["acc".to_owned(), "exact_match".to_owned()];
        let mut deserializer = serde_json::Deserializer::from_str(line);
        RecordSeed { metrics: &metrics }.deserialize(&mut deserializer)
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
        assert_eq!(record.doc.unwrap().get(), r#"{"q": 1}"#);
        assert_eq!(record.filter.as_deref(), Some("none"));
        assert_eq!(record.doc_hash.as_deref(), Some("ab"));
        assert_eq!(record.metrics, [("acc".to_owned(), Value::from(1.0))]);
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
