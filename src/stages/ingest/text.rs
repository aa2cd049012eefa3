//! The query text of a record, rebuilt from its `doc` as the RouterDC reference does (`docs/method.md`, "Scoring rules"),
//! never from the prompt, which holds few-shot examples and chat templates.
//!
//! | family | text |
//! |---|---|
//! | mmlu | `question` + `"\nA. " choice` ... for each of `choices` |
//! | arc | `"Question:" + question + "\nAnswer:"` |
//! | hellaswag | lm-eval's `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())` |
//! | ceval | `question` + `"\nA. " A` ... `"\nD. " D` + `"答案："` |
//! | cmmlu | `Question.strip()` + `"\nA. " A` ... `"\nD. " D` + `"\n答案："` |
//! | MATH (`minerva_math*`, `hendrycks_math*`) | `problem` |
//! | gsm8k | `question` |
//! | any other task | the `doc` field named by `--text-field`, else the prompt of the request (`arg_0`) when it is a string |

use serde_json::{Map, Value};

use super::records::Record;

/// The query text of `record` in `task`.
pub fn query_text(task: &str, record: &Record<'_>, text_field: Option<&str>) -> Result<String, String> {
    let doc: Value = match record.doc {
        Some(raw) => serde_json::from_str(raw).map_err(|e| format!("field `doc`: {e}"))?,
        None => Value::Null,
    };
    let empty = Map::new();
    let doc = doc.as_object().unwrap_or(&empty);
    if let Some(field) = text_field {
        return string_field(doc, field);
    }
    let family = task.to_ascii_lowercase();
    let text = if family.starts_with("mmlu") && doc.contains_key("choices") {
        let mut text = string_field(doc, "question")?;
        let choices = doc.get("choices").and_then(Value::as_array).ok_or("field `doc.choices` is not a list")?;
        for (letter, choice) in "ABCDEFGHIJ".chars().zip(choices) {
            text.push_str(&format!("\n{letter}. {}", choice.as_str().ok_or("field `doc.choices` holds a non-string")?));
        }
        text
    } else if family.starts_with("arc") {
        format!("Question:{}\nAnswer:", string_field(doc, "question")?)
    } else if family.starts_with("hellaswag") {
        let raw = format!(
            "{}: {} {}",
            string_field(doc, "activity_label")?,
            string_field(doc, "ctx_a")?,
            python_capitalize(&string_field(doc, "ctx_b")?)
        );
        hellaswag_preprocess(&raw)
    } else if family.starts_with("ceval") {
        format!("{}{}答案：", string_field(doc, "question")?, lettered(doc)?)
    } else if family.starts_with("cmmlu") {
        format!("{}{}\n答案：", string_field(doc, "Question")?.trim(), lettered(doc)?)
    } else if family.starts_with("minerva_math") || family.starts_with("hendrycks_math") || family.starts_with("math") {
        string_field(doc, "problem")?
    } else if family.starts_with("gsm8k") {
        string_field(doc, "question")?
    } else {
        prompt(record).ok_or_else(|| {
            format!(
                "task `{task}` has no text rule and its prompt is not a string; name a `doc` field with `--text-field`"
            )
        })?
    };
    Ok(text)
}

fn string_field(doc: &Map<String, Value>, field: &str) -> Result<String, String> {
    match doc.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(format!("field `doc.{field}` is {other}, not text")),
        None => Err(format!("field `doc.{field}` is missing")),
    }
}

/// `"\nA. " + A + ... + "\nD. " + D` from the doc's `A`–`D` keys (ceval, cmmlu).
fn lettered(doc: &Map<String, Value>) -> Result<String, String> {
    let mut text = String::new();
    for letter in ["A", "B", "C", "D"] {
        text.push_str(&format!("\n{letter}. {}", string_field(doc, letter)?));
    }
    Ok(text)
}

/// The first request's prompt (`arg_0`), when it is a string (not a chat message list).
fn prompt(record: &Record<'_>) -> Option<String> {
    let arguments: Value = serde_json::from_slice(record.arguments?).ok()?;
    let first = match &arguments {
        Value::Object(requests) => requests.get("gen_args_0")?.get("arg_0")?,
        Value::Array(requests) => match requests.first()? {
            Value::Array(args) => args.first()?,
            single => single,
        },
        _ => return None,
    };
    first.as_str().map(str::to_owned)
}

/// Python's `str.capitalize`: the first character upper-cased, the rest lower-cased.
fn python_capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

/// lm-eval's hellaswag `preprocess`: strip, `" [title]"` → `". "`, drop `[...]` spans, `"  "` → `" "`.
fn hellaswag_preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // re.sub("\\[.*?\\]", "", text): each `[` up to the nearest `]` goes.
    while let Some(open) = rest.find('[') {
        match rest[open..].find(']') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeSeed;

    use super::*;
    use crate::stages::ingest::records::RecordSeed;

    fn text(task: &str, line: &str) -> Result<String, String> {
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let record = RecordSeed { metrics: &[] }.deserialize(&mut deserializer).unwrap();
        query_text(task, &record, None)
    }

    #[test]
    fn each_family_rebuilds_the_reference_text() {
        let mmlu =
            r#"{"doc_id": 0, "doc": {"question": "Q?", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 1}}"#;
        assert_eq!(text("mmlu_anatomy", mmlu).unwrap(), "Q?\nA. a\nB. b\nC. c\nD. d");
        let arc = r#"{"doc_id": 0, "doc": {"question": "Why?", "choices": {"text": ["x"], "label": ["A"]}}}"#;
        assert_eq!(text("arc_challenge", arc).unwrap(), "Question:Why?\nAnswer:");
        let hellaswag = r#"{"doc_id": 0, "doc": {"activity_label": "Removing ice", "ctx_a": "A man [header] scrapes.", "ctx_b": "THEN he"}}"#;
        assert_eq!(text("hellaswag", hellaswag).unwrap(), "Removing ice: A man scrapes. Then he");
        let cmmlu = r#"{"doc_id": 0, "doc": {"Question": " 问题 ", "A": "1", "B": "2", "C": "3", "D": "4"}}"#;
        assert_eq!(text("cmmlu_anatomy", cmmlu).unwrap(), "问题\nA. 1\nB. 2\nC. 3\nD. 4\n答案：");
        let ceval = r#"{"doc_id": 0, "doc": {"question": "问", "A": "1", "B": "2", "C": "3", "D": "4"}}"#;
        assert_eq!(text("ceval-valid_law", ceval).unwrap(), "问\nA. 1\nB. 2\nC. 3\nD. 4答案：");
        let gsm8k = r#####"{"doc_id": 0, "doc": {"question": "How many?", "answer": "#### 3"}}"#####;
        assert_eq!(text("gsm8k", gsm8k).unwrap(), "How many?");
        let math = r#"{"doc_id": 0, "doc": {"problem": "Solve x."}}"#;
        assert_eq!(text("minerva_math_prealgebra", math).unwrap(), "Solve x.");
    }

    #[test]
    fn other_tasks_use_the_prompt_or_a_named_field() {
        let line = r#"{"doc_id": 0, "doc": {"premise": "P"}, "arguments": {"gen_args_0": {"arg_0": "Prompt text", "arg_1": " x"}}}"#;
        assert_eq!(text("copa", line).unwrap(), "Prompt text");
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let record = RecordSeed { metrics: &[] }.deserialize(&mut deserializer).unwrap();
        assert_eq!(query_text("copa", &record, Some("premise")).unwrap(), "P");
        let chat = r#"{"doc_id": 0, "doc": {}, "arguments": {"gen_args_0": {"arg_0": ["[{\"role\": \"user\"}]"]}}}"#;
        assert!(text("copa", chat).unwrap_err().contains("--text-field"));
        assert!(text("gsm8k", r#"{"doc_id": 0, "doc": {}}"#).unwrap_err().contains("`doc.question` is missing"));
    }
}
