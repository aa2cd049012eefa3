//! Finding harness outputs and telling what each file is, by content, never by extension
//! (lm-eval 0.4.0–0.4.2 write JSON arrays into `.jsonl` files).
//!
//! Every `*.json` / `*.jsonl` file under the inputs is one of: lm-eval samples (JSONL, or one
//! JSON array), an lm-eval results file, a bigcode per-sample pass log, a bigcode metrics file
//! (`evaluation_results.json`), or bigcode generations/references (not scores: skipped). Anything
//! else is an error that names the file.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::error::{Error, Result};

/// What a file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum FileKind {
    /// lm-eval per-sample records: one object per line, or one JSON array (0.4.0–0.4.2).
    LmEvalSamples { array: bool },
    /// lm-eval `results*.json`.
    LmEvalResults(Value),
    /// bigcode per-sample pass log `{task?: {problem: [[id, {passed}], ...]}}`.
    BigcodeLog(Value),
    /// bigcode `evaluation_results.json`: `{task: {pass@k}, config: {model, ...}}`.
    BigcodeMetrics(Value),
    /// bigcode generations or references: lists of strings, not scores.
    BigcodeOther,
}

/// Every `*.json` / `*.jsonl` file under `inputs` (folders walked recursively), sorted.
pub fn walk(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let metadata = std::fs::metadata(input).map_err(|source| Error::Read { path: input.clone(), source })?;
        if metadata.is_dir() {
            walk_dir(input, &mut files)?;
        } else {
            files.push(input.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk_dir(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    for entry in entries {
        let path = entry.map_err(|source| Error::Read { path: dir.to_path_buf(), source })?.path();
        if path.is_dir() {
            walk_dir(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "json" || ext == "jsonl") {
            files.push(path);
        }
    }
    Ok(())
}

fn layout_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Layout { path: path.to_path_buf(), message: message.into() }
}

/// Tell what the file at `path` holds, reading no more of a samples file than its first line
/// (samples files can be gigabytes; the parse reads them later).
pub fn classify_path(path: &Path) -> Result<FileKind> {
    use std::io::{BufRead, BufReader, Read};
    let read_error = |source| Error::Read { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut reader = BufReader::new(file);
    let mut prefix = Vec::new();
    reader.by_ref().take(64 * 1024).read_to_end(&mut prefix).map_err(read_error)?;
    if !prefix.contains(&b'\n') {
        reader.read_until(b'\n', &mut prefix).map_err(read_error)?;
    }
    let whole = reader.fill_buf().map_err(read_error)?.is_empty();
    if let Some(kind) = classify(path, &prefix, whole)? {
        return Ok(kind);
    }
    let bytes = crate::io::read_bytes(path)?;
    Ok(classify(path, &bytes, true)?.expect("a whole file is always classified"))
}

/// Tell what `bytes` hold; `None` when they are only a prefix and the whole file is needed.
pub fn classify(path: &Path, bytes: &[u8], whole: bool) -> Result<Option<FileKind>> {
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let Some(start) = text.iter().position(|b| !b.is_ascii_whitespace()) else {
        return if whole { Err(Error::EmptyFile { path: path.to_path_buf() }) } else { Ok(None) };
    };
    let text = &text[start..];
    if text.starts_with(b"version https://git-lfs") {
        return Err(layout_error(path, "it is a Git LFS pointer, not the data; run `git lfs pull` to fetch the file"));
    }
    match text[0] {
        b'[' => match text[1..].iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(Some(FileKind::LmEvalSamples { array: true })),
            Some(b'[' | b'"') => Ok(Some(FileKind::BigcodeOther)),
            Some(b']') => Err(Error::EmptyFile { path: path.to_path_buf() }),
            None if !whole => Ok(None),
            _ => Err(layout_error(path, "it is a JSON array of neither sample records nor bigcode generations")),
        },
        b'{' => {
            let first_line = text.split(|&b| b == b'\n').next().unwrap_or(text);
            let rest_is_blank = text[first_line.len()..].iter().all(u8::is_ascii_whitespace);
            if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(first_line) {
                if object.contains_key("doc_id") {
                    return Ok(Some(FileKind::LmEvalSamples { array: false }));
                }
                if !rest_is_blank || !whole {
                    return Err(layout_error(path, "its lines are JSON objects without `doc_id`, not sample records"));
                }
            }
            if !whole {
                return Ok(None);
            }
            let value: Value = serde_json::from_slice(text).map_err(|error| Error::Json {
                path: path.to_path_buf(),
                line: error.line(),
                column: error.column(),
                message: crate::io::json::describe_error(text, &error),
            })?;
            classify_object(path, value).map(Some)
        }
        _ => Err(layout_error(path, "it is not JSON (it starts with neither `[` nor `{`)")),
    }
}

fn classify_object(path: &Path, value: Value) -> Result<FileKind> {
    let Value::Object(object) = &value else { unreachable!("the caller checked for `{{`") };
    if object.contains_key("results") && (object.contains_key("config") || object.contains_key("versions")) {
        return Ok(FileKind::LmEvalResults(value));
    }
    if object.contains_key("config")
        && object
            .iter()
            .any(|(key, v)| key != "config" && v.as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("pass@"))))
    {
        return Ok(FileKind::BigcodeMetrics(value));
    }
    let is_problem_map = |map: &serde_json::Map<String, Value>| {
        !map.is_empty() && map.iter().all(|(key, v)| key.parse::<u64>().is_ok() && v.is_array())
    };
    if is_problem_map(object) || object.values().all(|v| v.as_object().is_some_and(is_problem_map)) {
        return Ok(FileKind::BigcodeLog(value));
    }
    let keys: Vec<&String> = object.keys().take(5).collect();
    Err(layout_error(
        path,
        format!(
            "unknown layout: a JSON object with keys {keys:?} is neither an lm-eval results file nor a bigcode log"
        ),
    ))
}

/// The `<date_id>` of an lm-eval 0.4.3+ file name (`samples_gsm8k_2025-04-30T18-24-41.082644.jsonl`).
pub fn date_id(file_name: &str) -> Option<&str> {
    static DATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.jsonl?$")
            .expect("the date pattern is a valid regex")
    });
    DATE.captures(file_name).and_then(|captures| captures.get(1)).map(|m| m.as_str())
}

/// The task of a `samples_<task>_<date_id>.jsonl` file.
pub fn samples_task(file_name: &str) -> Option<&str> {
    let date = date_id(file_name)?;
    let rest = file_name.strip_prefix("samples_")?;
    rest.strip_suffix(&format!("_{date}.jsonl")).or_else(|| rest.strip_suffix(&format!("_{date}.json")))
}

/// The model named by an lm-eval `model_args` string: the value of the first of `peft=`,
/// `delta=`, `pretrained=`, `model=`, `path=`, `engine=`, up to the next comma (lm-eval's rule).
pub fn model_from_args(model_args: &str) -> Option<String> {
    ["peft=", "delta=", "pretrained=", "model=", "path=", "engine="].iter().find_map(|prefix| {
        let args = model_args.split(',').map(str::trim);
        args.clone().find_map(|arg| arg.strip_prefix(prefix)).map(str::to_owned)
    })
}

/// How lm-eval 0.4.0–0.4.2 (`/` and `=` → `__`) and the pre-0.4 dev branch (`/` → `__`) turned
/// `model_args` into a file-name prefix.
pub fn model_args_prefixes(model_args: &str) -> [String; 2] {
    [model_args.replace(['/', '='], "__"), model_args.replace('/', "__")]
}

/// Task families whose names end an lm-eval 0.4.0–0.4.2 samples file name, for files that have
/// no results file beside them to tell the model_args prefix.
pub const KNOWN_TASK_PREFIXES: [&str; 14] = [
    "mmlu",
    "cmmlu",
    "ceval",
    "arc_challenge",
    "arc_easy",
    "hellaswag",
    "gsm8k",
    "minerva_math",
    "hendrycks_math",
    "winogrande",
    "piqa",
    "copa",
    "truthfulqa",
    "boolq",
];

/// The task of a pre-0.4.3 samples file `<model_args prefix>_<task>.jsonl`, given the prefixes
/// that the results files beside it allow (or none).
pub fn legacy_task(stem: &str, prefixes: &[String]) -> Option<String> {
    for prefix in prefixes {
        if let Some(task) = stem.strip_prefix(prefix.as_str()).and_then(|rest| rest.strip_prefix('_')) {
            return Some(task.to_owned());
        }
    }
    // Without a results file: the task starts after the last `_` that begins a known family
    // name followed by `_` or the end (model names may contain family words).
    let positions = stem.match_indices('_').map(|(i, _)| i + 1);
    positions
        .filter(|&start| {
            let rest = &stem[start..];
            KNOWN_TASK_PREFIXES
                .iter()
                .any(|family| rest.strip_prefix(family).is_some_and(|tail| tail.is_empty() || tail.starts_with('_')))
        })
        .max()
        .map(|start| stem[start..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Result<FileKind> {
        classify(Path::new("f.jsonl"), text.as_bytes(), true).map(|kind| kind.expect("whole files are classified"))
    }

    #[test]
    fn files_are_told_apart_by_content() {
        assert_eq!(kind("{\"doc_id\": 0}\n{\"doc_id\": 1}\n").unwrap(), FileKind::LmEvalSamples { array: false });
        assert_eq!(kind("[\n  {\n    \"doc_id\": 0\n  }\n]").unwrap(), FileKind::LmEvalSamples { array: true });
        assert_eq!(kind("[[\"def f(): pass\"]]").unwrap(), FileKind::BigcodeOther);
        assert!(matches!(kind("{\"results\": {}, \"config\": {}}").unwrap(), FileKind::LmEvalResults(_)));
        assert!(matches!(
            kind("{\"humaneval\": {\"pass@1\": 0.5}, \"config\": {\"model\": \"m\"}}").unwrap(),
            FileKind::BigcodeMetrics(_)
        ));
        let log = "{\"humaneval\": {\"0\": [[0, {\"task_id\": 0, \"passed\": true}]]}}";
        assert!(matches!(kind(log).unwrap(), FileKind::BigcodeLog(_)));
        assert!(matches!(kind("{\"1\": [[0, {\"passed\": false}]]}").unwrap(), FileKind::BigcodeLog(_)));
    }

    #[test]
    fn stubs_empty_and_unknown_files_are_errors() {
        let lfs = kind("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n").unwrap_err();
        assert!(lfs.to_string().contains("Git LFS pointer"), "{lfs}");
        assert!(matches!(kind(" \n").unwrap_err(), Error::EmptyFile { .. }));
        assert!(matches!(kind("[]").unwrap_err(), Error::EmptyFile { .. }));
        assert!(kind("{\"a\": 1}\n{\"a\": 2}").unwrap_err().to_string().contains("without `doc_id`"));
        assert!(kind("{\"unrelated\": true}").unwrap_err().to_string().contains("unknown layout"));
        assert!(kind("<html>").unwrap_err().to_string().contains("not JSON"));
    }

    #[test]
    fn names_give_task_date_and_model() {
        let name = "samples_mmlu_pro_plus_health_2025-04-30T18-24-41.082644.jsonl";
        assert_eq!(date_id(name), Some("2025-04-30T18-24-41.082644"));
        assert_eq!(samples_task(name), Some("mmlu_pro_plus_health"));
        assert_eq!(
            model_from_args("pretrained=meta-llama/Llama-3.1-8B,dtype=float16"),
            Some("meta-llama/Llama-3.1-8B".into())
        );
        let args = "pretrained=/data/home/org/Model-7B,dtype=float16";
        let [b, a] = model_args_prefixes(args);
        assert_eq!(b, "pretrained____data__home__org__Model-7B,dtype__float16");
        assert_eq!(a, "pretrained=__data__home__org__Model-7B,dtype=float16");
        assert_eq!(legacy_task(&format!("{b}_arc_challenge"), std::slice::from_ref(&b)), Some("arc_challenge".into()));
        assert_eq!(legacy_task("pretrained=EleutherAI__pythia-2.8b_winogrande", &[]), Some("winogrande".into()));
        assert_eq!(
            legacy_task("pretrained____x__my_model_mmlu_high_school_physics", &[]),
            Some("mmlu_high_school_physics".into())
        );
        assert_eq!(legacy_task("pretrained____org__copa_tuned_gsm8k", &[]), Some("gsm8k".into()));
        assert_eq!(legacy_task("pretrained____org__model", &[]), None);
    }
}
