//! `routerdc ingest` on faithful harness outputs of every layout (tests/fixtures/harness, written
//! by tests/fixtures/make_harness_fixtures.py, which also computes the expected scores with the
//! reference's rules), and on each kind of bad input.

use std::fs;
use std::path::{Path, PathBuf};

use routerdc::table::{MetricKind, Split};

use crate::util::{find, number, ok, read_csv, routerdc, stderr};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ingest(out: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = vec!["ingest".into(), "--out".into(), out.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    routerdc(&all)
}

fn harness_args(extra: &[&str]) -> Vec<String> {
    let harness = fixtures().join("harness");
    let texts = format!("humaneval={}", harness.join("humaneval_problems.jsonl").display());
    let mut args = vec![harness.display().to_string(), "--texts".into(), texts];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

#[test]
fn every_layout_merges_into_the_reference_scores() {
    let temp = tempfile::tempdir().unwrap();
    let tables = temp.path().join("tables");
    let args = harness_args(&[]);
    let output = ingest(&tables, &args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&output);
    let log = stderr(&output);
    assert!(log.contains("took the newest run 2025-03-04T05-06-07.123456"), "{log}");
    assert!(log.contains("skipped") && log.contains("generations_humaneval.json"), "{log}");

    let expected: serde_json::Value =
        serde_json::from_slice(&fs::read(fixtures().join("harness_expected.json")).unwrap()).unwrap();
    let models: Vec<String> = serde_json::from_value(expected["models"].clone()).unwrap();
    for (task, want) in expected["tasks"].as_object().unwrap() {
        let loaded = routerdc::io::read_table(&tables.join(format!("{task}.parquet"))).unwrap();
        let table = loaded.table;
        assert_eq!(table.models, models, "{task}");
        let texts: Vec<String> = serde_json::from_value(want["texts"].clone()).unwrap();
        assert_eq!(table.texts, texts, "{task}");
        assert_eq!(table.query_ids, (0..texts.len()).map(|i| i.to_string()).collect::<Vec<_>>(), "{task}");
        for (index, model) in models.iter().enumerate() {
            let scores: Vec<f64> = serde_json::from_value(want["scores"][model].clone()).unwrap();
            for (row, expected) in scores.iter().enumerate() {
                let got = table.score_row(row)[index];
                assert!((got - expected).abs() <= 1e-15, "{task} {model} doc {row}: {got} vs {expected}");
            }
        }
        let kind = if ["gsm8k", "humaneval"].contains(&task.as_str()) {
            MetricKind::MultiAttempt
        } else {
            MetricKind::Probability
        };
        assert_eq!(table.kind, kind, "{task}");
    }

    // `report` works on the result unchanged, and its numbers are the expected ones.
    let report = temp.path().join("report");
    ok(&routerdc(["report", "--tables", tables.to_str().unwrap(), "--out", report.to_str().unwrap()]));
    let rows = read_csv(&report.join("baselines.csv"));
    for (task, want) in expected["tasks"].as_object().unwrap() {
        let probability = !["gsm8k", "humaneval"].contains(&task.as_str());
        for model in &models {
            let scores: Vec<f64> = serde_json::from_value(want["scores"][model].clone()).unwrap();
            let credit: f64 =
                scores.iter().map(|&s| if probability { f64::from(u8::from(s > 0.0)) } else { s }).sum::<f64>()
                    / scores.len() as f64;
            let got = number(find(&rows, task, model), "acc_predict");
            assert!((got - credit).abs() < 1e-12, "{task} {model}: {got} vs {credit}");
        }
    }
}

#[test]
fn runs_all_keeps_every_run_and_filters_can_be_chosen() {
    let temp = tempfile::tempdir().unwrap();
    let harness = fixtures().join("harness");
    let alpha = harness.join("lmeval-D");
    let tables = temp.path().join("all");
    ok(&ingest(&tables, &[alpha.to_str().unwrap(), "--runs", "all"]));
    let mmlu = routerdc::io::read_table(&tables.join("mmlu_anatomy.parquet")).unwrap().table;
    assert_eq!(mmlu.models, ["org/alpha-7b@2025-01-01T00-00-00.000001", "org/alpha-7b@2025-03-04T05-06-07.123456"]);
    assert!(mmlu.scores.chunks(2).all(|pair| pair[0] == 0.0), "the old run's acc is 0 everywhere");

    // gsm8k scoring ignores the filter (it reads the raw generations), so both filters give the
    // same scores; the summary says which filter was kept.
    for filter in ["strict-match", "flexible-extract"] {
        let out = temp.path().join(filter);
        let output = ingest(&out, &[alpha.to_str().unwrap(), "--filter", filter]);
        ok(&output);
        assert!(
            stderr(&output)
                .contains(&format!("| gsm8k | org/alpha-7b | sampled generations (`#### N`) | {filter} | 5 | 5 |")),
            "{}",
            stderr(&output)
        );
    }
    let missing = ingest(&temp.path().join("x"), &[alpha.to_str().unwrap(), "--filter", "maj@64"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn splits_are_recorded_and_reproducible() {
    let temp = tempfile::tempdir().unwrap();
    let args = harness_args(&["--split-ratio", "0.6", "--seed", "7"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&ingest(&temp.path().join("a"), &args));
    ok(&ingest(&temp.path().join("b"), &args));
    let a = routerdc::io::read_table(&temp.path().join("a/gsm8k.parquet")).unwrap().table;
    let b = routerdc::io::read_table(&temp.path().join("b/gsm8k.parquet")).unwrap().table;
    assert_eq!(a.splits, b.splits);
    assert_eq!(a.splits.iter().filter(|s| **s == Some(Split::Train)).count(), 3);

    // `report --split test` counts only the test rows of each table.
    let report = temp.path().join("report");
    ok(&routerdc([
        "report",
        "--tables",
        temp.path().join("a").to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
        "--split",
        "test",
    ]));
    let rows = read_csv(&report.join("baselines.csv"));
    let test_rows = a.splits.iter().filter(|s| **s == Some(Split::Test)).count();
    assert_eq!(number(find(&rows, "gsm8k", "oracle"), "n_queries") as usize, test_rows);
}

/// A tiny two-model mmlu task (one folder per model) whose files the bad-input tests edit.
fn two_models(dir: &Path, alpha: &str, beta: &str) -> PathBuf {
    let root = dir.join("runs");
    for (model, text) in [("alpha", alpha), ("beta", beta)] {
        fs::create_dir_all(root.join(model)).unwrap();
        fs::write(root.join(model).join("samples_mmlu_x_2025-01-01T00-00-00.000001.jsonl"), text).unwrap();
    }
    root
}

fn record(doc_id: u32, lls: &str, acc: &str) -> String {
    format!(
        r#"{{"doc_id": {doc_id}, "doc": {{"question": "Q{doc_id}", "choices": ["a", "b"], "answer": 0}}, "target": 0, "arguments": [], "resps": {lls}, "filtered_resps": [], "acc": {acc}}}"#
    )
}

fn good(doc_id: u32) -> String {
    record(doc_id, "[[[-1.0, true]], [[-2.0, false]]]", "1.0")
}

fn lines(records: &[String]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

#[test]
fn bad_inputs_are_errors_with_file_line_and_field() {
    let ok_file = lines(&[good(0), good(1)]);
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated last line", format!("{}{}", good(0) + "\n", &good(1)[..60]), "the last line is truncated"),
        (
            "LFS pointer",
            "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n".into(),
            "Git LFS pointer",
        ),
        ("empty file", String::new(), "is empty"),
        (
            "NaN token",
            lines(&[good(0), record(1, "[[[NaN, true]], [[-2.0, false]]]", "1.0")]),
            "field `resps`: `NaN` is not a JSON number",
        ),
        (
            "NaN metric in a one-record file",
            lines(&[record(0, "[[[-1.0, true]], [[-2.0, false]]]", "NaN")]),
            "field `acc`: `NaN` is not a JSON number",
        ),
        (
            "Infinity token",
            lines(&[good(0), record(1, "[[[-Infinity, true]], [[-2.0, false]]]", "1.0")]),
            "`-Infinity`",
        ),
        (
            "unparseable string number",
            lines(&[good(0), record(1, r#"[[["minus one", "True"]], [["-2.0", "False"]]]"#, "1.0")]),
            "field `resps[0][0][0]`",
        ),
        (
            "string boolean metric",
            lines(&[good(0), record(1, "[[[-1.0, true]], [[-2.0, false]]]", r#""yes""#)]),
            "field `acc` is \"yes\"",
        ),
        ("unknown layout", "{\"hello\": \"world\"}\n".into(), "unknown layout"),
        (
            "unmappable target",
            lines(&[good(0), good(1).replace(r#""target": 0"#, r#""target": ["a", "b"]"#)]),
            "names no single choice",
        ),
        ("duplicate doc_id", lines(&[good(0), good(0), good(1)]), "doc_id 0 appears twice"),
    ];
    for (name, text, expected) in cases {
        let temp = tempfile::tempdir().unwrap();
        let root = two_models(temp.path(), &ok_file, &text);
        let out = temp.path().join("tables");
        let output = ingest(&out, &[root.to_str().unwrap()]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {message}");
        assert!(message.contains(expected), "{name}: expected `{expected}` in\n{message}");
        assert!(message.contains("beta"), "{name}: the file is not named in\n{message}");
        assert!(!out.exists(), "{name}: wrote output");
    }
}

#[test]
fn numbers_and_booleans_written_as_strings_are_read() {
    let temp = tempfile::tempdir().unwrap();
    let stringy = lines(&[
        record(0, r#"[[["-1.0", "True"]], [["-2.0", "False"]]]"#, "1.0"),
        record(1, r#"[[["-1.0", "True"]], [["-2.0", "False"]]]"#, "1.0"),
    ]);
    let root = two_models(temp.path(), &lines(&[good(0), good(1)]), &stringy);
    let out = temp.path().join("tables");
    ok(&ingest(&out, &[root.to_str().unwrap()]));
    let table = routerdc::io::read_table(&out.join("mmlu_x.parquet")).unwrap().table;
    assert_eq!(table.score_row(0)[0], table.score_row(0)[1]);
}

#[test]
fn missing_questions_and_mismatched_answers_name_model_task_and_ids() {
    let temp = tempfile::tempdir().unwrap();
    let root = two_models(temp.path(), &lines(&[good(0), good(1), good(2)]), &lines(&[good(2), good(0)]));
    let out = temp.path().join("tables");
    let output = ingest(&out, &[root.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("task `mmlu_x`: model `beta` lacks 1 of the 3 questions (doc_id 1)"), "{message}");
    assert!(message.contains("--on-missing drop"), "{message}");

    let output = ingest(&out, &[root.to_str().unwrap(), "--on-missing", "drop"]);
    ok(&output);
    assert!(
        stderr(&output).contains("| mmlu_x | alpha | multiple choice (gated on `acc`) | – | 2 | 0 | 1 | 0 |"),
        "{}",
        stderr(&output)
    );
    let table = routerdc::io::read_table(&out.join("mmlu_x.parquet")).unwrap().table;
    assert_eq!(table.query_ids, ["0", "2"]);

    let other_target = lines(&[good(0), good(1).replace(r#""target": 0"#, r#""target": 1"#)]);
    let temp = tempfile::tempdir().unwrap();
    let root = two_models(temp.path(), &lines(&[good(0), good(1)]), &other_target);
    let output = ingest(&temp.path().join("t"), &[root.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("doc_id 1: `target` differs between models `alpha` and `beta`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn doc_hashes_are_checked_when_present() {
    let with_hash = |hash: &str| lines(&[good(0).replace("\"acc\"", &format!("\"doc_hash\": \"{hash}\", \"acc\""))]);
    let temp = tempfile::tempdir().unwrap();
    let root = two_models(temp.path(), &with_hash("aaa"), &with_hash("bbb"));
    let output = ingest(&temp.path().join("t"), &[root.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("`doc_hash` differs"), "{}", stderr(&output));
}

#[test]
fn samples_files_named_alone_take_their_model_from_the_results_beside_them() {
    // Two models' gsm8k runs copied into one folder (as a user gathering files would), each
    // samples file beside the results file of its own run; only the samples files are named.
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/sample/lm-eval");
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("pyFade");
    fs::create_dir(&folder).unwrap();
    let mut named = Vec::new();
    for (model, time) in
        [("demo__chat-8b", "2026-10-01T12-00-00.000000"), ("demo__code-7b", "2026-10-02T09-30-00.000000")]
    {
        let from = sample.join(model);
        fs::copy(from.join("results_2026-10-01T12-00-00.000000.json"), folder.join(format!("results_{time}.json")))
            .unwrap();
        let samples = folder.join(format!("samples_gsm8k_{time}.jsonl"));
        fs::copy(from.join("samples_gsm8k_2026-10-01T12-00-00.000000.jsonl"), &samples).unwrap();
        named.push(samples.display().to_string());
    }
    let out = work.path().join("tables");
    let args: Vec<&str> = named.iter().map(String::as_str).collect();
    let output = ingest(&out, &args);
    ok(&output);
    let table = routerdc::io::read_table(&out.join("gsm8k.parquet")).unwrap().table;
    assert_eq!(table.models, vec!["demo/chat-8b", "demo/code-7b"], "{}", stderr(&output));
}
