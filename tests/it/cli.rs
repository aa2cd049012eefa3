//! What a user sees: the commands on small inputs, bad input, exit codes, and files that are
//! either whole or absent.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{direct_acc_predict, find, number, ok, read_csv, routerdc, routerdc_with_env, stderr, stdout};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

const GOOD: &str =
    r#"[{"question": "2+2?", "scores": {"a": 1.0, "b": 0.5}}, {"question": "3+3?", "scores": {"a": 0.0, "b": 0.75}}]"#;

/// Import `files` into a fresh `tables` folder; returns (output, tables folder).
fn import(dir: &Path, files: &[PathBuf], extra: &[&str]) -> (std::process::Output, PathBuf) {
    let tables = dir.join("tables");
    let mut args: Vec<String> = vec!["import".into(), "--out".into(), tables.display().to_string()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.extend(files.iter().map(|f| f.display().to_string()));
    (routerdc(&args), tables)
}

fn parquet_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn help_and_version_work_for_every_subcommand() {
    let version = routerdc(["--version"]);
    ok(&version);
    assert_eq!(stdout(&version).trim(), format!("routerdc {}", env!("CARGO_PKG_VERSION")));
    for command in ["import", "export", "report", "doctor", "run", "data"] {
        let help = routerdc([command, "--help"]);
        ok(&help);
        assert!(stdout(&help).contains("Usage: routerdc"), "{command}: {}", stdout(&help));
    }
}

#[test]
fn the_routerdc_json_fixture_reports_what_the_json_says() {
    let temp = tempfile::tempdir().unwrap();
    let sample = repo().join("tests/fixtures/routerdc_json");
    let files: Vec<PathBuf> = ["arc_easy_test", "gsm8k_test", "humaneval_test", "mmlu_test"]
        .iter()
        .map(|n| sample.join(format!("{n}.json")))
        .collect();
    let (output, tables) = import(temp.path(), &files, &[]);
    ok(&output);
    let out = temp.path().join("report");
    let report = routerdc([
        "report",
        "--tables",
        tables.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--group",
        "id=mmlu_test,gsm8k_test,humaneval_test",
    ]);
    ok(&report);
    assert!(stdout(&report).contains("## acc_predict (%)"), "{}", stdout(&report));
    assert_eq!(
        parquet_files(&out),
        ["acc_predict.png", "acc_predict.svg", "baselines.csv", "baselines.md", "baselines.parquet", "report.md"]
    );
    assert_eq!(fs::read_to_string(out.join("baselines.md")).unwrap(), stdout(&report));
    // report.md: the bar chart, then the same tables; no training curves without a checkpoint.
    let page = fs::read_to_string(out.join("report.md")).unwrap();
    assert!(page.contains("![acc_predict per dataset](acc_predict.png)"), "{page}");
    assert!(page.contains(&stdout(&report)), "{page}");
    assert!(!page.contains("training_curves"), "{page}");

    let rows = read_csv(&out.join("baselines.csv"));
    for column in ["scope", "dataset", "router", "llm", "n_queries", "acc", "acc_predict"] {
        assert!(rows[0].contains_key(column), "baselines.csv lacks `{column}`");
    }
    let svg = fs::read_to_string(out.join("acc_predict.svg")).unwrap();
    let bars: Vec<&str> = svg.split(['<', '>']).map(str::trim).collect();
    let mut group_sums = std::collections::BTreeMap::<String, f64>::new();
    for file in &files {
        let dataset = file.file_stem().unwrap().to_str().unwrap();
        let probability = dataset.starts_with("mmlu") || dataset.starts_with("arc");
        let expected = direct_acc_predict(file, probability);
        for (model, value) in &expected {
            let got = number(find(&rows, dataset, model), "acc_predict");
            assert!((got - value).abs() < 1e-12, "{dataset} {model}: {got} vs {value}");
            // The bar chart writes each value at the end of its bar.
            let label = format!("{:.1}", 100.0 * value);
            assert!(bars.contains(&label.as_str()), "acc_predict.svg lacks {dataset} {model} ({label})");
            if dataset != "arc_easy_test" {
                *group_sums.entry(model.clone()).or_default() += value / 3.0;
            }
        }
        let random = number(find(&rows, dataset, "random"), "acc_predict");
        let mean = expected.iter().map(|(_, v)| v).sum::<f64>() / expected.len() as f64;
        assert!((random - mean).abs() < 1e-12, "{dataset} random: {random} vs {mean}");
    }
    let (best_model, best_value) =
        group_sums.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(m, v)| (m.clone(), *v)).unwrap();
    let best = find(&rows, "id", "best_single");
    assert_eq!(best["llm"], best_model);
    assert!((number(best, "acc_predict") - best_value).abs() < 1e-12);
}

#[test]
fn malformed_json_names_file_line_and_column_and_writes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let good = write(temp.path(), "mmlu_a.json", GOOD);
    let bad = write(temp.path(), "mmlu_b.json", "[{\"question\": \"q\",\n  \"scores\": {\"a\": 1.0,, \"b\": 0}}]");
    let (output, tables) = import(temp.path(), &[good, bad.clone()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains(&format!("{}:2:", bad.display())), "{message}");
    assert!(message.contains("record 0"), "{message}");
    // The good first file was not written either: all inputs are checked before any output.
    assert!(parquet_files(&tables).is_empty(), "{:?}", parquet_files(&tables));
}

#[test]
fn bad_records_are_refused_with_exit_code_2() {
    let cases = [
        ("nan", r#"[{"question": "q", "scores": {"a": NaN, "b": 0}}]"#, "`NaN` is not a JSON number"),
        ("infinity", r#"[{"question": "q", "scores": {"a": 0, "b": -Infinity}}]"#, "`-Infinity`"),
        ("negative", r#"[{"question": "q", "scores": {"a": -0.5, "b": 0}}]"#, "outside [0, 1]"),
        ("above_one", r#"[{"question": "q", "scores": {"a": 1.5, "b": 0}}]"#, "outside [0, 1]"),
        (
            "order",
            r#"[{"question": "q", "scores": {"a": 1, "b": 0}}, {"question": "r", "scores": {"b": 0, "a": 1}}]"#,
            "record 1: its models [\"b\", \"a\"] differ from record 0's [\"a\", \"b\"]",
        ),
        (
            "missing_model",
            r#"[{"question": "q", "scores": {"a": 1, "b": 0}}, {"question": "r", "scores": {"a": 1}}]"#,
            "record 1",
        ),
        ("empty", "", "is empty"),
        ("empty_array", "[]", "is empty"),
        ("not_records", r#"{"question": "q"}"#, "an array of"),
        ("string_score", r#"[{"question": "q", "scores": {"a": "1.0"}}]"#, "expected f64"),
        ("truncated", r#"[{"question": "q", "scores": {"a": 1.0}}, {"question": "r", "sco"#, "truncated"),
    ];
    for (name, text, expected) in cases {
        let temp = tempfile::tempdir().unwrap();
        let file = write(temp.path(), &format!("mmlu_{name}.json"), text);
        let (output, tables) = import(temp.path(), &[file], &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {message}");
        assert!(message.contains(expected), "{name}: expected `{expected}` in:\n{message}");
        assert!(message.contains("hint:"), "{name}: no hint in:\n{message}");
        assert!(parquet_files(&tables).is_empty(), "{name}: wrote {:?}", parquet_files(&tables));
    }
}

#[test]
fn unknown_datasets_need_a_kind() {
    let temp = tempfile::tempdir().unwrap();
    let file = write(temp.path(), "squad.json", GOOD);
    let (output, _) = import(temp.path(), std::slice::from_ref(&file), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--kind squad=probability"), "{}", stderr(&output));

    let (output, tables) = import(temp.path(), std::slice::from_ref(&file), &["--kind", "squad=multi_attempt"]);
    ok(&output);
    assert_eq!(parquet_files(&tables), ["squad.parquet"]);
    let (output, _) = import(temp.path(), &[file], &["--kind", "squad=accuracy"]);
    assert_eq!(output.status.code(), Some(2), "clap rejects an unknown kind: {}", stderr(&output));
}

#[test]
fn report_refuses_tables_with_other_model_lists_and_writes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let first = write(temp.path(), "mmlu_x.json", GOOD);
    let second = write(temp.path(), "mmlu_y.json", r#"[{"question": "q", "scores": {"b": 1.0, "a": 0.5}}]"#);
    let (output, tables) = import(temp.path(), &[first, second], &[]);
    ok(&output);
    let out = temp.path().join("report");
    let report = routerdc(["report", "--tables", tables.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(report.status.code(), Some(2));
    let message = stderr(&report);
    assert!(message.contains("mmlu_x.parquet") && message.contains("mmlu_y.parquet"), "{message}");
    assert!(message.contains(r#"["a", "b"]"#) && message.contains(r#"["b", "a"]"#), "{message}");
    assert!(!out.exists(), "the report folder was created");
}

#[test]
fn report_on_a_folder_without_tables_says_what_to_do() {
    let temp = tempfile::tempdir().unwrap();
    let report = routerdc(["report", "--tables", temp.path().to_str().unwrap(), "--out", "unused"]);
    assert_eq!(report.status.code(), Some(2));
    assert!(stderr(&report).contains("routerdc import"), "{}", stderr(&report));
    let missing = routerdc(["report", "--tables", "/nonexistent/routerdc", "--out", "unused"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
}

/// The "MKL kernels" line of `routerdc doctor` under the given environment.
#[cfg(feature = "train")]
fn mkl_kernels(env: &[(&str, &std::path::Path)]) -> String {
    let text = stdout(&routerdc_with_env(["doctor"], env));
    let line = text.lines().find(|line| line.contains("MKL kernels")).unwrap_or_else(|| panic!("{text}"));
    line.to_owned()
}

#[cfg(all(feature = "train", target_arch = "x86_64"))]
#[test]
fn mkl_runs_the_kernels_the_processor_has_on_any_vendor() {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap();
    let has = |word: &str| cpuinfo.lines().any(|line| line.split_whitespace().any(|w| w == word));
    let line = mkl_kernels(&[]);
    assert!(line.starts_with("✓"), "{line}");
    assert_eq!(line.contains("AVX-512"), has("avx512f"), "{line}");
    if !has("GenuineIntel") {
        // MKL's own vendor test, restored: not Intel's, so not its AVX-512 kernels.
        let own = mkl_kernels(&[("ROUTERDC_MKL_INTEL_ONLY", std::path::Path::new("1"))]);
        assert!(own.starts_with("✓") && !own.contains("AVX-512"), "{own}");
        assert!(own.contains("MKL's own choice"), "{own}");
    }
}

#[test]
fn a_parquet_file_of_another_shape_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let tables = temp.path().join("tables");
    fs::create_dir_all(&tables).unwrap();
    fs::write(tables.join("junk.parquet"), b"PAR1 this is not parquet").unwrap();
    let report = routerdc(["report", "--tables", tables.to_str().unwrap(), "--out", "unused"]);
    assert_eq!(report.status.code(), Some(2));
    assert!(stderr(&report).contains("junk.parquet"), "{}", stderr(&report));
}

#[test]
fn doctor_reports_versions_and_a_missing_encoder_with_a_hint() {
    let empty = tempfile::tempdir().unwrap();
    let output = routerdc_with_env(["doctor"], &[("ROUTERDC_CACHE", empty.path()), ("ROUTERDC_ENCODER", empty.path())]);
    let text = stdout(&output);
    assert!(
        text.lines().any(|line| line.starts_with("✓ routerdc") && line.ends_with(env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("libtorch"), "{text}");
    assert!(text.contains("CPU threads"), "{text}");
    assert!(text.contains("✗ default encoder") && text.contains("hint: run `scripts/setup.sh`"), "{text}");
    assert_eq!(output.status.code(), Some(1));
}

#[cfg(feature = "train")]
#[test]
fn doctor_finds_libtorch_2_13() {
    let output = routerdc(["doctor"]);
    let text = stdout(&output);
    assert!(text.contains("✓ libtorch         2.13.0"), "{text}");
}

#[test]
fn routerdc_itself_does_not_link_libtorch() {
    // libtorch's start-up (about 0.6 s) belongs to routerdc-torch only; see build.rs.
    let Ok(output) = std::process::Command::new("readelf").args(["-d", env!("CARGO_BIN_EXE_routerdc")]).output() else {
        eprintln!("SKIPPED: readelf (binutils) is not installed");
        return;
    };
    let dynamic = String::from_utf8_lossy(&output.stdout);
    assert!(dynamic.contains("(NEEDED)"), "readelf printed no dynamic section:\n{dynamic}");
    assert!(!dynamic.contains("libtorch") && !dynamic.contains("libc10"), "{dynamic}");
}

/// `import --default-split` sets the split of files without a `_train`/`_test` suffix only.
#[test]
fn import_default_split_applies_to_files_without_a_suffix() {
    let temp = tempfile::tempdir().unwrap();
    let record = r#"[{"question": "q", "scores": {"a": 1.0, "b": 0.0}}]"#;
    let plain = write(temp.path(), "mmlu.json", record);
    let suffixed = write(temp.path(), "gsm8k_train.json", record);
    let splits = |extra: &[&str]| {
        let out = temp.path().join(format!("tables{}", extra.len()));
        let mut args = vec!["import", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend([plain.to_str().unwrap(), suffixed.to_str().unwrap()]);
        ok(&routerdc(&args));
        ["mmlu", "gsm8k_train"].map(|name| {
            let table = routerdc::io::read_table(&out.join(format!("{name}.parquet"))).unwrap().table;
            table.splits[0].map(|split| split.as_str())
        })
    };
    assert_eq!(splits(&[]), [None, Some("train")]);
    assert_eq!(splits(&["--default-split", "test"]), [Some("test"), Some("train")]);
}
