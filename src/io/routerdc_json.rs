//! The RouterDC reference's JSON datasets: one array of `{"question", "scores", "cluster_id"?}`
//! records per file (`split2_model7*/`).
//!
//! Reading checks every record (same models in the same order, scores in [0, 1]) and reports
//! the file, line, column and record of the first problem. Writing reproduces Python's
//! `json.dumps(records)` byte for byte (ASCII escapes, `", "` and `": "` separators, `repr` of
//! floats), so an export diffs cleanly against the reference's files. One difference cannot be
//! undone: a score the source wrote as an integer (`0`) is written back as a float (`0.0`); both
//! parse to the same value.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{Error, Result};
use crate::table::{MetricKind, ScoredTable, Split};

/// A file read into a table, with what was left out of it.
#[derive(Debug)]
pub struct JsonDataset {
    pub table: ScoredTable,
    /// Record keys other than `question`, `scores` and `cluster_id`, with how many records had each.
    pub ignored_fields: BTreeMap<String, usize>,
}

/// Read a RouterDC JSON file as the table `dataset` of the given kind.
///
/// Query ids are the records' 0-based positions; the split comes from a `_train`/`_test` suffix
/// of the dataset name, if it has one.
pub fn read(path: &Path, dataset: &str, kind: MetricKind) -> Result<JsonDataset> {
    let bytes = super::read_bytes(path)?;
    parse(&bytes, path, dataset, kind)
}

/// [`read`] on bytes already in memory; `path` only names the source in errors.
pub fn parse(bytes: &[u8], path: &Path, dataset: &str, kind: MetricKind) -> Result<JsonDataset> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyFile { path: path.to_path_buf() });
    }
    let current = Cell::new(0);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let records = Records { current: &current }
        .deserialize(&mut deserializer)
        .and_then(|records| deserializer.end().map(|()| records))
        .map_err(|error| json_error(bytes, path, &error, current.get()))?;
    if records.is_empty() {
        return Err(Error::EmptyFile { path: path.to_path_buf() });
    }

    let models: Vec<String> = records[0].scores.iter().map(|(model, _)| model.clone()).collect();
    let n_models = models.len();
    let mut scores = Vec::with_capacity(records.len() * n_models);
    let mut ignored_fields = BTreeMap::new();
    let split = Split::from_dataset_name(dataset);
    let (mut query_ids, mut texts, mut cluster_ids) = (Vec::new(), Vec::new(), Vec::new());
    for (index, record) in records.into_iter().enumerate() {
        let record_error = |message: String| Error::Record { path: path.to_path_buf(), record: index, message };
        if record.scores.is_empty() {
            return Err(record_error("`scores` is empty".into()));
        }
        let names = record.scores.iter().map(|(model, _)| model);
        if !names.clone().eq(models.iter()) {
            let found: Vec<&String> = names.collect();
            return Err(record_error(format!(
                "its models {found:?} differ from record 0's {models:?} (question {})",
                preview(&record.question)
            )));
        }
        for (model, score) in &record.scores {
            if !(0.0..=1.0).contains(score) {
                return Err(record_error(format!("score {score} for `{model}` is outside [0, 1]")));
            }
        }
        for field in record.unknown {
            *ignored_fields.entry(field).or_insert(0) += 1;
        }
        scores.extend(record.scores.into_iter().map(|(_, score)| score));
        query_ids.push(index.to_string());
        texts.push(record.question);
        cluster_ids.push(record.cluster_id);
    }
    let table = ScoredTable {
        dataset: dataset.to_owned(),
        kind,
        models,
        splits: vec![split; query_ids.len()],
        query_ids,
        texts,
        cluster_ids,
        scores,
        costs: None,
    };
    table.validate(path)?;
    Ok(JsonDataset { table, ignored_fields })
}

/// `table` as the reference's JSON, exactly as Python's `json.dumps` writes it.
pub fn to_json(table: &ScoredTable) -> String {
    let mut out = String::with_capacity(table.n_queries() * (64 + 48 * table.n_models()));
    out.push('[');
    for row in 0..table.n_queries() {
        if row > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"question\": ");
        write_python_string(&mut out, &table.texts[row]);
        out.push_str(", \"scores\": {");
        for (index, (model, score)) in table.models.iter().zip(table.score_row(row)).enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            write_python_string(&mut out, model);
            out.push_str(": ");
            write_python_float(&mut out, *score);
        }
        out.push('}');
        if let Some(cluster) = table.cluster_ids[row] {
            let _ = write!(out, ", \"cluster_id\": {cluster}");
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// A JSON string as Python's `json.dumps` (ensure_ascii) writes it.
fn write_python_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it: the shortest digits that round-trip, positional for
/// exponents in [-4, 16), otherwise scientific with a signed two-digit exponent.
fn write_python_float(out: &mut String, value: f64) {
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits, e.g. `9.125664194477702e-1`, `1e0`.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |rest| ("-", rest));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    out.push_str(sign);
    if (-4..16).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(&digits);
        } else {
            let point = exponent as usize + 1;
            if digits.len() > point {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            } else {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs());
    }
}

fn preview(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() { format!("{short:?}…") } else { format!("{short:?}") }
}

/// A serde_json error as file:line:column, the record it happened in, and a readable message.
fn json_error(bytes: &[u8], path: &Path, error: &serde_json::Error, record: usize) -> Error {
    let (line, column) = (error.line(), error.column());
    let message = super::json::describe_error(bytes, error);
    let message = if error.is_eof() {
        format!("record {record}: {message} (the file is truncated)")
    } else if error.is_data() || error.is_syntax() {
        format!("record {record}: {message}")
    } else {
        message
    };
    Error::Json { path: path.to_path_buf(), line, column, message }
}

/// One record as it appears in the file.
struct RawRecord {
    question: String,
    scores: Vec<(String, f64)>,
    cluster_id: Option<i64>,
    unknown: Vec<String>,
}

/// The top-level array, counting records so that errors can name the one that failed.
struct Records<'a> {
    current: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = Vec<RawRecord>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = Vec<RawRecord>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of {\"question\", \"scores\"} records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            self.current.set(records.len());
            match seq.next_element_seed(RecordSeed)? {
                Some(record) => records.push(record),
                None => return Ok(records),
            }
        }
    }
}

struct RecordSeed;

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = RawRecord;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed {
    type Value = RawRecord;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a {\"question\", \"scores\"} record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut question, mut scores, mut cluster_id, mut unknown) = (None, None, None, Vec::new());
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "question" => question = Some(map.next_value::<String>()?),
                "scores" => scores = Some(map.next_value::<OrderedScores>()?.0),
                "cluster_id" => cluster_id = map.next_value::<Option<i64>>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    unknown.push(key);
                }
            }
        }
        Ok(RawRecord {
            question: question.ok_or_else(|| de::Error::missing_field("question"))?,
            scores: scores.ok_or_else(|| de::Error::missing_field("scores"))?,
            cluster_id,
            unknown,
        })
    }
}

/// `{model: score}` in file order (the order is the model order).
struct OrderedScores(Vec<(String, f64)>);

impl<'de> serde::Deserialize<'de> for OrderedScores {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScoresVisitor;
        impl<'de> Visitor<'de> for ScoresVisitor {
            type Value = OrderedScores;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object {model: score}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut scores = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((model, score)) = map.next_entry::<String, f64>()? {
                    if scores.iter().any(|(seen, _): &(String, f64)| *seen == model) {
                        return Err(de::Error::custom(format!("model `{model}` appears twice in `scores`")));
                    }
                    scores.push((model, score));
                }
                Ok(OrderedScores(scores))
            }
        }
        deserializer.deserialize_map(ScoresVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python_float(value: f64) -> String {
        let mut out = String::new();
        write_python_float(&mut out, value);
        out
    }

    #[test]
    fn floats_print_like_python_repr() {
        // Each expected string is what CPython's `repr(float)` prints for the value.
        for (value, repr) in [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.9125664194477702, "0.9125664194477702"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.0, "123456.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (-0.25, "-0.25"),
            (12.5, "12.5"),
        ] {
            assert_eq!(python_float(value), repr, "{value:e}");
        }
    }

    #[test]
    fn strings_escape_like_python_ensure_ascii() {
        let mut out = String::new();
        write_python_string(&mut out, "a\"b\\c\nd\te\u{1}é…😀\u{7f}");
        assert_eq!(out, r#""a\"b\\c\nd\te\u0001\u00e9\u2026\ud83d\ude00\u007f""#);
    }

    fn parse_str(text: &str) -> Result<JsonDataset> {
        parse(text.as_bytes(), Path::new("x.json"), "gsm8k-test", MetricKind::MultiAttempt)
    }

    #[test]
    fn nan_is_reported_with_its_place() {
        let error = parse_str("[{\"question\": \"q\",\n \"scores\": {\"a\": NaN}}]").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("x.json:2:") && text.contains("`NaN`") && text.contains("record 0"), "{text}");
    }

    #[test]
    fn a_record_with_other_models_is_named() {
        let error = parse_str(
            r#"[{"question": "q0", "scores": {"a": 1, "b": 0}}, {"question": "q1", "scores": {"b": 0, "a": 1}}]"#,
        )
        .unwrap_err();
        assert!(matches!(error, Error::Record { record: 1, .. }), "{error}");
    }

    #[test]
    fn missing_fields_truncation_and_empty_input_are_errors() {
        let missing = parse_str(r#"[{"scores": {"a": 1}}]"#).unwrap_err().to_string();
        assert!(missing.contains("missing field `question`"), "{missing}");
        let truncated = parse_str(r#"[{"question": "q", "scores": {"a": 1}}, {"quest"#).unwrap_err().to_string();
        assert!(truncated.contains("record 1") && truncated.contains("truncated"), "{truncated}");
        assert!(matches!(parse_str("  \n").unwrap_err(), Error::EmptyFile { .. }));
        assert!(matches!(parse_str("[]").unwrap_err(), Error::EmptyFile { .. }));
        let duplicate = parse_str(r#"[{"question": "q", "scores": {"a": 1, "a": 0}}]"#).unwrap_err().to_string();
        assert!(duplicate.contains("appears twice"), "{duplicate}");
        let range = parse_str(r#"[{"question": "q", "scores": {"a": 1.5}}]"#).unwrap_err().to_string();
        assert!(range.contains("outside [0, 1]"), "{range}");
    }

    #[test]
    fn unknown_fields_are_counted_and_cluster_ids_kept() {
        let read = parse_str(r#"[{"question": "q", "id": 7, "scores": {"a": 0.5}, "cluster_id": 2}, {"question": "r", "scores": {"a": 1}}]"#)
            .unwrap();
        assert_eq!(read.ignored_fields.get("id"), Some(&1));
        assert_eq!(read.table.cluster_ids, [Some(2), None]);
        assert_eq!(read.table.splits, [Some(Split::Test); 2]);
        assert_eq!(
            to_json(&read.table),
            r#"[{"question": "q", "scores": {"a": 0.5}, "cluster_id": 2}, {"question": "r", "scores": {"a": 1.0}}]"#
        );
    }
}
