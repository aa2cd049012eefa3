//! The RouterDC paper's released data (`$ROUTERDC_DATA`): the report reproduces the published
//! numbers, and import → export gives the files back.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{direct_acc_predict, find, number, ok, read_csv, reference_data, routerdc};

const ID: &str = "mmlu_test,gsm8k-test,cmmlu_test,arc_challenge_test,humaneval_test";
const OOD: &str = "MATH_prealgebra,mbpp";

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Import `files` into `out` and return the tables folder.
fn import(out: &Path, files: &[PathBuf]) -> PathBuf {
    let tables = out.join("tables");
    let mut args = vec!["import".to_owned(), "--out".into(), tables.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    ok(&routerdc(&args));
    tables
}

#[test]
fn report_reproduces_the_papers_published_numbers() {
    let Some(data) = reference_data() else { return };
    let temp = tempfile::tempdir().unwrap();
    let tests: Vec<PathBuf> = json_files(&data.join("split2_model7"))
        .into_iter()
        .filter(|f| !f.to_str().unwrap().contains("train"))
        .collect();
    let tables = import(temp.path(), &tests);
    let out = temp.path().join("report");
    let group_id = format!("id={ID}");
    let group_ood = format!("ood={OOD}");
    ok(&routerdc([
        "report",
        "--tables",
        tables.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--group",
        &group_id,
        "--group",
        &group_ood,
    ]));
    let rows = read_csv(&out.join("baselines.csv"));
    let percent = |dataset: &str, router: &str| {
        (100.0 * number(find(&rows, dataset, router), "acc_predict") * 100.0).round() / 100.0
    };

    // Published in the RouterDC paper (Table 1 and its text), quoted by the issues.
    assert_eq!(percent("mmlu_test", "mistralai/Mistral-7B-v0.1"), 62.14);
    assert_eq!(percent("gsm8k-test", "cognitivecomputations/dolphin-2.9-llama3-8b"), 69.81);
    assert_eq!(percent("humaneval_test", "oracle"), 66.94);
    let best = find(&rows, "id", "best_single");
    assert_eq!(best["llm"], "cognitivecomputations/dolphin-2.9-llama3-8b");
    assert_eq!(percent("id", "best_single"), 54.56);

    // Every (dataset, LLM) cell against a direct computation from the JSON.
    for file in &tests {
        let dataset = file.file_stem().unwrap().to_str().unwrap();
        let probability = !["gsm8k", "humaneval", "mbpp"].iter().any(|family| dataset.starts_with(family));
        for (model, expected) in direct_acc_predict(file, probability) {
            let got = number(find(&rows, dataset, &model), "acc_predict");
            assert!((got - expected).abs() < 1e-12, "{dataset} {model}: {got} vs {expected}");
        }
    }
}

/// Compare two JSON documents as values, numbers as f64 (so `0` equals `0.0`, as in Python).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

#[test]
fn import_then_export_gives_the_released_files_back() {
    let Some(data) = reference_data() else { return };
    for folder in ["split2_model7", "split2_model7_cluster"] {
        let temp = tempfile::tempdir().unwrap();
        let files = json_files(&data.join(folder));
        let tables = import(temp.path(), &files);
        let exported = temp.path().join("json");
        ok(&routerdc(["export", "--tables", tables.to_str().unwrap(), "--out", exported.to_str().unwrap()]));
        let mut byte_identical = 0;
        for file in &files {
            let original = fs::read(file).unwrap();
            let back = fs::read(exported.join(file.file_name().unwrap())).unwrap();
            let (a, b): (serde_json::Value, serde_json::Value) =
                (serde_json::from_slice(&original).unwrap(), serde_json::from_slice(&back).unwrap());
            assert!(same_json(&a, &b), "{}: the export differs in value", file.display());
            // Byte for byte too, unless the source wrote some scores as integers (`0` for `0.0`).
            let has_integer_scores = a
                .as_array()
                .unwrap()
                .iter()
                .any(|record| record["scores"].as_object().unwrap().values().any(|v| v.is_i64() || v.is_u64()));
            if !has_integer_scores {
                assert!(original == back, "{}: the export differs in bytes", file.display());
                byte_identical += 1;
            }
        }
        assert!(byte_identical >= 2, "{folder}: only {byte_identical} files were compared byte for byte");
    }
}

#[test]
fn task_best_on_the_papers_data_is_the_training_rows_best_llm() {
    let Some(data) = reference_data() else { return };
    let temp = tempfile::tempdir().unwrap();
    let files = json_files(&data.join("split2_model7"));
    let tables = import(temp.path(), &files);
    let out = temp.path().join("report");
    let (group_id, group_ood) = (format!("id={ID}"), format!("ood={OOD}"));
    // The `_train` tables sit beside the `_test` ones: each test table's task_best comes from them.
    let train_tables = "mmlu_train,gsm8k-train,cmmlu_train,arc_challenge_train,humaneval_train";
    let group_train = format!("train={train_tables}");
    let args = ["report", "--tables", tables.to_str().unwrap(), "--out", out.to_str().unwrap()];
    ok(&routerdc(args.iter().copied().chain(["--group", &group_id, "--group", &group_ood, "--group", &group_train])));
    let rows = read_csv(&out.join("baselines.csv"));
    for test in ID.split(',') {
        let train = data.join("split2_model7").join(format!("{}.json", test.replace("test", "train")));
        let probability = !["gsm8k", "humaneval"].iter().any(|family| test.starts_with(family));
        // The training file's best LLM (first in model order on ties), by a direct computation.
        let on_train = direct_acc_predict(&train, probability);
        let best = on_train.iter().fold(&on_train[0], |best, row| if row.1 > best.1 { row } else { best });
        let row = find(&rows, test, "task_best");
        assert_eq!(row["llm"], best.0, "{test}");
        let expected = direct_acc_predict(&data.join("split2_model7").join(format!("{test}.json")), probability)
            .into_iter()
            .find(|(model, _)| *model == best.0)
            .unwrap()
            .1;
        assert!((number(row, "acc_predict") - expected).abs() < 1e-12, "{test}");
    }
    // The figure: a per-task router reaches 58.67 in distribution; no task_best out of
    // distribution (MATH_prealgebra and mbpp have no training rows).
    let id = (100.0 * number(find(&rows, "id", "task_best"), "acc_predict") * 100.0).round() / 100.0;
    assert_eq!(id, 58.67);
    assert!(!rows.iter().any(|row| row["dataset"] == "ood" && row["router"] == "task_best"));
}
