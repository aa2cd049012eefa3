//! Per-record scoring rules (`docs/method.md`, "Scoring rules"; the RouterDC reference's `convert_dataset_7_model.ipynb`).
//!
//! The rule comes from the record's shape, not the task name:
//! - multiple choice (`resps` holds one `[loglik, is_greedy]` per choice): the softmax of the
//!   log-likelihoods at the gold choice when the record's `acc` is 1 (hellaswag: `acc_norm`),
//!   else 0;
//! - sampled generation (one request with K generations and a target holding `#### N`): the
//!   fraction of generations whose `#### N` equals the target's, compared as strings;
//! - anything else: a per-sample metric (`--metric`, else `exact_match`, else `acc`).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::records::{Record, as_bool, as_f64, number_in_text};

/// How a record was scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    MultipleChoice { gate: &'static str },
    SampledGeneration,
    Metric(String),
}

impl Rule {
    pub fn describe(&self) -> String {
        match self {
            Rule::MultipleChoice { gate } => format!("multiple choice (gated on `{gate}`)"),
            Rule::SampledGeneration => "sampled generations (`#### N`)".to_owned(),
            Rule::Metric(name) => format!("per-sample metric `{name}`"),
        }
    }
}

/// A record's score and what identifies its answer across models.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub rule: Rule,
    pub score: f64,
    /// Generations or choices behind the score (1 for a per-sample metric).
    pub attempts: u32,
    /// The gold answer in a canonical form (a choice index, an extracted number, the target
    /// text), compared across models.
    pub target: String,
}

/// The metric keys a record must keep for these rules.
pub fn wanted_metrics(metric: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = ["acc", "acc_norm", "exact_match"].map(str::to_owned).to_vec();
    if let Some(metric) = metric.filter(|m| !names.iter().any(|n| n == m)) {
        names.push(metric.to_owned());
    }
    names
}

/// Score one record of `task`. Errors name the field at fault.
pub fn score_record(record: &Record<'_>, task: &str, metric: Option<&str>) -> Result<Scored, String> {
    let resps: Vec<Node<'_>> = match record.resps {
        Some(raw) => serde_json::from_str(raw).map_err(|e| format!("field `resps`: {e}"))?,
        None => Vec::new(),
    };
    let target: Option<Value> = match record.target {
        Some(raw) => Some(serde_json::from_str(raw).map_err(|e| format!("field `target`: {e}"))?),
        None => None,
    };
    if let Some(lls) = choice_logliks(&resps)? {
        let gate = if task.to_ascii_lowercase().starts_with("hellaswag") { "acc_norm" } else { "acc" };
        return multiple_choice(record, &lls, target.as_ref(), gate);
    }
    if let (Some(generations), Some(Value::String(target))) = (sampled_generations(&resps), target.as_ref())
        && let Some(gold) = extract_answer(target)
    {
        let correct = generations.iter().filter(|g| extract_answer(g) == Some(gold)).count();
        return Ok(Scored {
            rule: Rule::SampledGeneration,
            score: correct as f64 / generations.len() as f64,
            attempts: generations.len() as u32,
            target: gold.to_owned(),
        });
    }
    let name = match metric {
        Some(name) => name,
        None => ["exact_match", "acc"]
            .into_iter()
            .find(|name| record.metric(name).is_some())
            .ok_or("the record has no `exact_match` or `acc`; name its per-sample metric with `--metric`")?,
    };
    let value = record.metric(name).ok_or_else(|| format!("field `{name}` is missing"))?;
    let score = as_f64(value)
        .filter(|score| (0.0..=1.0).contains(score))
        .ok_or_else(|| format!("field `{name}` is {value}, not a per-sample score in [0, 1]"))?;
    Ok(Scored { rule: Rule::Metric(name.to_owned()), score, attempts: 1, target: canonical_target(target.as_ref()) })
}

/// A node of `resps`, read without copying its strings (they can be long generations).
#[derive(Debug)]
enum Node<'a> {
    List(Vec<Node<'a>>),
    Text(std::borrow::Cow<'a, str>),
    Number(f64),
    Bool(bool),
    Other,
}

impl Node<'_> {
    fn number(&self) -> Option<f64> {
        match self {
            Node::Number(x) => Some(*x),
            Node::Text(text) => number_in_text(text),
            Node::Bool(flag) => Some(f64::from(u8::from(*flag))),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Node<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> serde::de::Visitor<'de> for NodeVisitor {
            type Value = Node<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Node::Text(std::borrow::Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Node::Text(std::borrow::Cow::Owned(text.to_owned())))
            }

            fn visit_f64<E>(self, x: f64) -> Result<Self::Value, E> {
                Ok(Node::Number(x))
            }

            fn visit_i64<E>(self, x: i64) -> Result<Self::Value, E> {
                Ok(Node::Number(x as f64))
            }

            fn visit_u64<E>(self, x: u64) -> Result<Self::Value, E> {
                Ok(Node::Number(x as f64))
            }

            fn visit_bool<E>(self, flag: bool) -> Result<Self::Value, E> {
                Ok(Node::Bool(flag))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Node::Other)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::List(items))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Node::Other)
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// The log-likelihood of each choice when `resps` has the multiple-choice shape
/// (`[[[ll, is_greedy]], ...]`, two or more choices), else `None`.
fn choice_logliks(resps: &[Node<'_>]) -> Result<Option<Vec<f64>>, String> {
    if resps.len() < 2 {
        return Ok(None);
    }
    let mut lls = Vec::with_capacity(resps.len());
    for (index, choice) in resps.iter().enumerate() {
        let Node::List(repeats) = choice else { return Ok(None) };
        let Some(Node::List(pair)) = repeats.first() else { return Ok(None) };
        if pair.len() != 2 {
            return Ok(None);
        }
        let ll = pair[0].number().filter(|ll| !ll.is_nan()).ok_or_else(|| {
            let shown = match &pair[0] {
                Node::Text(text) => format!("{text:?}"),
                other => format!("{other:?}"),
            };
            format!("field `resps[{index}][0][0]` is {shown}, not a log-likelihood")
        })?;
        lls.push(ll);
    }
    Ok(Some(lls))
}

fn multiple_choice(
    record: &Record<'_>,
    lls: &[f64],
    target: Option<&Value>,
    gate: &'static str,
) -> Result<Scored, String> {
    let gold = gold_index(record, target, lls.len())?;
    let correct = record
        .metric(gate)
        .ok_or_else(|| format!("field `{gate}` is missing (multiple-choice records are gated on it)"))
        .and_then(|value| as_bool(value).ok_or_else(|| format!("field `{gate}` is {value}, not 0/1")))?;
    let score = if correct { softmax_at(lls, gold) } else { 0.0 };
    Ok(Scored { rule: Rule::MultipleChoice { gate }, score, attempts: lls.len() as u32, target: gold.to_string() })
}

/// `exp(ll[i]) / Σ exp(ll)`, computed as the reference does (numpy, in order), falling back to
/// the max-shifted form only where the direct one underflows or overflows.
fn softmax_at(lls: &[f64], index: usize) -> f64 {
    let sum: f64 = lls.iter().map(|ll| ll.exp()).sum();
    if sum > 0.0 && sum.is_finite() {
        return lls[index].exp() / sum;
    }
    let max = lls.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let shifted: f64 = lls.iter().map(|ll| (ll - max).exp()).sum();
    (lls[index] - max).exp() / shifted
}

/// The gold choice: an integer target, a digit string (`str(target)` from lm-eval 0.4.4), or the
/// text of one of the choices (copa-style targets).
fn gold_index(record: &Record<'_>, target: Option<&Value>, n_choices: usize) -> Result<usize, String> {
    let target = target.ok_or("field `target` is missing")?;
    let index = match target {
        Value::Number(number) => number.as_u64().map(|i| i as usize),
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        Value::String(text) => choice_texts(record)?.iter().position(|choice| choice.trim() == text.trim()),
        _ => None,
    };
    match index {
        Some(index) if index < n_choices => Ok(index),
        Some(index) => Err(format!("field `target` is choice {index} but the record has {n_choices} choices")),
        None => Err(format!("field `target` is {target}, which names no single choice")),
    }
}

/// The continuation of each loglikelihood request (`arg_1`), from either `arguments` layout.
fn choice_texts(record: &Record<'_>) -> Result<Vec<String>, String> {
    let raw = record.arguments.ok_or("field `arguments` is missing, so a text target cannot be matched")?;
    let arguments: Value = serde_json::from_slice(raw).map_err(|e| format!("field `arguments`: {e}"))?;
    let continuation = |request: &Value| -> Option<String> {
        match request {
            Value::Array(args) => args.get(1)?.as_str().map(str::to_owned),
            Value::Object(args) => args.get("arg_1")?.as_str().map(str::to_owned),
            _ => None,
        }
    };
    let texts: Option<Vec<String>> = match &arguments {
        Value::Array(requests) => requests.iter().map(continuation).collect(),
        Value::Object(requests) => {
            let mut keyed: Vec<(usize, &Value)> = requests
                .iter()
                .filter_map(|(key, value)| Some((key.strip_prefix("gen_args_")?.parse().ok()?, value)))
                .collect();
            keyed.sort_by_key(|(index, _)| *index);
            keyed.into_iter().map(|(_, request)| continuation(request)).collect()
        }
        _ => None,
    };
    texts.ok_or_else(|| "field `arguments` does not list the choices' continuations".to_owned())
}

/// The K generations of a single-request record, when its `resps` is `[[g_1, ..., g_K]]`.
fn sampled_generations<'n>(resps: &'n [Node<'_>]) -> Option<Vec<&'n str>> {
    let [Node::List(generations)] = resps else { return None };
    generations
        .iter()
        .map(|g| match g {
            Node::Text(text) => Some(text.as_ref()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .filter(|g| !g.is_empty())
}

/// The first `#### N` answer in `text` (the reference's `#### (\-?[0-9\.\,]+)`).
pub fn extract_answer(text: &str) -> Option<&str> {
    static ANSWER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"#### (\-?[0-9\.\,]+)").expect("the answer pattern is a valid regex"));
    ANSWER.captures(text).and_then(|captures| captures.get(1)).map(|m| m.as_str())
}

/// A target in one form whatever the harness version wrote: strings as they are, numbers as
/// integers where integral, lists as Python's `str()` would print them (lm-eval 0.4.4+).
pub fn canonical_target(target: Option<&Value>) -> String {
    match target {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => match number.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => number.to_string(),
        },
        Some(Value::Array(items)) => {
            let inner: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(text) => format!("'{text}'"),
                    other => canonical_target(Some(other)),
                })
                .collect();
            format!("[{}]", inner.join(", "))
        }
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeSeed;

    use super::*;
    use crate::stages::ingest::records::RecordSeed;

    fn score(line: &str, task: &str) -> Result<Scored, String> {
        let metrics = wanted_metrics(None);
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let record = RecordSeed { metrics: &metrics }.deserialize(&mut deserializer).unwrap();
        score_record(&record, task, None)
    }

    #[test]
    fn multiple_choice_scores_the_gold_probability_when_acc() {
        // softmax(-1, -2, -3, -4) at 0 = e^-1 / (e^-1 + e^-2 + e^-3 + e^-4)
        let expected = (-1f64).exp() / [-1f64, -2.0, -3.0, -4.0].iter().map(|x| x.exp()).sum::<f64>();
        let line = r#"{"doc_id": 0, "target": 0, "resps": [[[-1, true]], [[-2, false]], [[-3, false]], [[-4, false]]], "acc": 1}"#;
        let scored = score(line, "mmlu_anatomy").unwrap();
        assert_eq!((scored.score, scored.target.as_str(), scored.attempts), (expected, "0", 4));
        let wrong = line.replace("\"acc\": 1", "\"acc\": 0");
        assert_eq!(score(&wrong, "mmlu_anatomy").unwrap().score, 0.0);
    }

    #[test]
    fn stringified_values_and_text_targets_work() {
        // lm-eval 0.4.4+: strings for every leaf; copa-style target text matched to `arg_1`.
        let line = r#"{"doc_id": 1, "target": " water flowed.", "arguments": {"gen_args_0": {"arg_0": "c", "arg_1": "  the toilet filled."},
            "gen_args_1": {"arg_0": "c", "arg_1": "  water flowed."}}, "resps": [[["-3.0", "False"]], [["-1.0", "True"]]], "acc": 1.0}"#;
        let scored = score(line, "copa").unwrap();
        assert_eq!(scored.target, "1");
        assert_eq!(scored.score, (-1f64).exp() / ((-3f64).exp() + (-1f64).exp()));
    }

    #[test]
    fn hellaswag_is_gated_on_acc_norm() {
        let line =
            r#"{"doc_id": 0, "target": "1", "resps": [[["-1", "True"]], [["-2", "False"]]], "acc": 0, "acc_norm": 1}"#;
        let scored = score(line, "hellaswag").unwrap();
        assert!(scored.score > 0.0 && scored.rule == Rule::MultipleChoice { gate: "acc_norm" });
        assert_eq!(score(line, "arc_easy").unwrap().score, 0.0);
    }

    #[test]
    fn unmappable_targets_are_errors_naming_the_field() {
        let list = r#"{"doc_id": 0, "target": ["A", "B"], "resps": [[[-1, true]], [[-2, false]]], "acc": 1}"#;
        assert!(score(list, "wmdp").unwrap_err().contains("field `target`"));
        let out_of_range = r#"{"doc_id": 0, "target": 5, "resps": [[[-1, true]], [[-2, false]]], "acc": 1}"#;
        assert!(score(out_of_range, "arc").unwrap_err().contains("2 choices"));
        let no_acc = r#"{"doc_id": 0, "target": 0, "resps": [[[-1, true]], [[-2, false]]]}"#;
        assert!(score(no_acc, "arc").unwrap_err().contains("field `acc`"));
    }

    #[test]
    fn sampled_generations_compare_extracted_answers_as_strings() {
        let line = r#####"{"doc_id": 0, "target": "so 3+4 = 7\n#### 7", "filter": "strict-match",
            "resps": [["#### 7", "The answer is 7", "#### 7.", "x #### 7 and #### 8", "#### 7,"]], "exact_match": 1.0}"#####;
        let scored = score(line, "gsm8k").unwrap();
        // "#### 7" and "x #### 7 and #### 8" match; "7." and "7," differ as strings; no answer in one.
        assert_eq!((scored.score, scored.attempts, scored.target.as_str()), (2.0 / 5.0, 5, "7"));
        assert_eq!(extract_answer("#### -1,234.5 dollars"), Some("-1,234.5"));
    }

    #[test]
    fn other_generations_use_their_per_sample_metric() {
        let line = r#"{"doc_id": 0, "target": "\\frac{1}{2}", "resps": [["answer"]], "exact_match": 1}"#;
        let scored = score(line, "minerva_math_prealgebra").unwrap();
        assert_eq!((scored.score, scored.rule.clone()), (1.0, Rule::Metric("exact_match".into())));
        let pair = r#"{"doc_id": 0, "target": "x", "resps": [["y"]], "f1": ["x", "y"]}"#;
        assert!(score(pair, "squad").unwrap_err().contains("--metric"));
    }

    #[test]
    fn targets_have_one_canonical_form_across_versions() {
        assert_eq!(canonical_target(Some(&serde_json::json!(1))), "1");
        assert_eq!(canonical_target(Some(&serde_json::json!("1"))), "1");
        assert_eq!(canonical_target(Some(&serde_json::json!(["A", "B"]))), "['A', 'B']");
    }
}
