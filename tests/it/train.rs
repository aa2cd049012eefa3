//! The trainer: losses and gradients against a PyTorch transcription of the losses in docs/method.md, a tiny
//! end-to-end run, checkpoints, `route`, `report --checkpoint`, and bad settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::encoder::tiny;
use crate::util::{ok, python, read_csv, routerdc_with_env, stderr, stdout};
use routerdc::routing::{choose_llms, choose_pairs, rng};

/// A small deterministic generator for test data (values in [-1, 1)).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

fn run_json(mut command: Command, input: &Value) -> Value {
    use std::io::Write as _;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn flat(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

#[test]
fn losses_and_gradients_equal_the_pytorch_transcription_of_the_spec() {
    let Some(python) = python() else { return };
    let (b, t, d, h_neg) = (12usize, 5usize, 8usize, 3usize);
    for (seed, similarity) in [(1u64, "cosine"), (2, "inner"), (3, "cosine")] {
        let mut lcg = Lcg(seed);
        let h: Vec<Vec<f64>> = (0..b).map(|_| (0..d).map(|_| lcg.next()).collect()).collect();
        let k: Vec<Vec<f64>> = (0..t).map(|_| (0..d).map(|_| lcg.next() * 0.78).collect()).collect();
        // Scores with ties, zeros and values above 0.5 among the lowest.
        let levels = [0.0, 0.0, 0.3, 0.6, 0.9, 1.0];
        let targets: Vec<Vec<f64>> =
            (0..b).map(|_| (0..t).map(|_| levels[((lcg.next() + 1.0) * 3.0) as usize % 6]).collect()).collect();
        let rows: Vec<&[f64]> = targets.iter().map(Vec::as_slice).collect();
        let llm = choose_llms(&rows, 2, 3);
        let groups: Vec<i64> = (0..b).map(|_| ((lcg.next() + 1.0) * 1.5) as i64).collect();
        let pairs = choose_pairs(&groups, h_neg, false, &mut rng(seed));
        assert!(!pairs.anchors.is_empty());
        let case = json!({
            "h": h, "K": k, "temperature": if seed == 3 { 0.5 } else { 1.0 }, "similarity": similarity,
            "top_k": 2, "last_k": 3, "H": h_neg,
            "positives": llm.positives, "positive_mask": llm.positive_mask,
            "negatives": llm.negatives, "negative_excluded": llm.negative_excluded,
            "anchors": pairs.anchors, "pair_positives": pairs.positives, "pair_negatives": pairs.negatives,
            "cluster_weight": 1.0, "orth_weight": 0.5,
        });
        let mut reference = Command::new(&python);
        reference.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loss_reference.py"));
        let theirs = run_json(reference, &case);
        let mut ours_command = Command::new(env!("CARGO_BIN_EXE_routerdc-torch"));
        ours_command.arg("losses");
        let ours = run_json(ours_command, &case);
        for key in ["sample_llm", "sample_sample", "orth", "total", "grad_h", "grad_K"] {
            let (a, b) = (flat(&ours[key]), flat(&theirs[key]));
            assert_eq!(a.len(), b.len(), "{key}");
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-6, "{similarity}, seed {seed}: {key} differs by {worst}: {a:?} vs {b:?}");
        }
        assert!(flat(&theirs["grad_K"]).iter().any(|g| g.abs() > 1e-4), "the case exercises the gradients");
    }
}

/// Two training tables where the best LLM follows the query's topic, with cluster ids.
fn topic_tables(dir: &Path) -> std::path::PathBuf {
    let topics = [("algebra", [1.0, 0.0, 0.0]), ("history", [0.0, 1.0, 0.0]), ("poetry", [0.0, 0.0, 1.0])];
    let mut files = Vec::new();
    for (name, offset) in [("mmlu_train", 0usize), ("gsm8k_train", 1)] {
        let records: Vec<Value> = (0..24)
            .map(|i| {
                let (topic, scores) = topics[(i + offset) % 3];
                json!({
                    "question": format!("A question about {topic}, number {i}: {topic} {topic}?"),
                    "scores": {"llm-a": scores[0], "llm-b": scores[1], "llm-c": scores[2]},
                    "cluster_id": (i + offset) % 3,
                })
            })
            .collect();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&records).unwrap()).unwrap();
        files.push(path.display().to_string());
    }
    let tables = dir.join("tables");
    let mut args = vec!["import".to_owned(), "--out".into(), tables.display().to_string()];
    args.extend(files);
    ok(&routerdc_with_env(&args, &[]));
    tables
}

/// A temporary folder with the topic tables (their folder as an argument) and the tiny BERT
/// encoder's folder, or `None` when the tiny encoders are not built (the test is skipped).
fn topic_setup() -> Option<(tempfile::TempDir, String, String)> {
    let encoder = tiny()?.join("bert").display().to_string();
    let temp = tempfile::tempdir().unwrap();
    let tables = topic_tables(temp.path()).display().to_string();
    Some((temp, tables, encoder))
}

/// A copy of the encoder folder `shared` in `dir/encoder`, for a test that changes its files.
fn copy_encoder(shared: &str, dir: &Path) -> PathBuf {
    let copy = dir.join("encoder");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(shared).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    copy
}

/// `routerdc train --train TABLES --out OUT --encoder ENCODER`, then `extra`.
fn train(tables: &str, out: &Path, encoder: &str, extra: &[&str]) -> Output {
    let out = out.display().to_string();
    let mut args = vec!["train", "--train", tables, "--out", &out, "--encoder", encoder];
    args.extend_from_slice(extra);
    routerdc_with_env(args, &[])
}

/// The tiny runs' settings: small batches, each table once per epoch, one positive, two negatives.
const SMALL: [&str; 10] =
    ["--batch-size", "12", "--samples-per-table", "24", "--learning-rate", "0.005", "--top-k", "1", "--last-k", "2"];

fn with_small<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    SMALL.iter().copied().chain(extra.iter().copied()).collect()
}

/// The `loss` column of a run's `train_log.parquet`.
fn logged_losses(out: &Path) -> Vec<f64> {
    let log = routerdc::io::read_parquet(&out.join("train_log.parquet")).unwrap();
    log.column("loss").unwrap().f64().unwrap().into_no_null_iter().collect()
}

/// RouterDC JSON `records` written to `<dir>/<name>.json` and imported into `<dir>/tables`.
fn import_records(dir: &Path, name: &str, records: &Value) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, records.to_string()).unwrap();
    let tables = dir.join("tables").display().to_string();
    ok(&routerdc_with_env(["import", "--out", &tables, &file.display().to_string()], &[]));
    tables
}

fn other_models() -> Value {
    json!([{"question": "q", "scores": {"llm-x": 1.0, "llm-y": 0.0, "llm-z": 0.0}}])
}

/// `report --checkpoint OUT/best.safetensors` on `tables` into `dir/report`: the router's two
/// dataset rows, whose acc_predict must equal best.json's validation scores.
fn report_matches_best_json(dir: &Path, tables: &str, out: &Path, sidecar: &Value) -> Vec<crate::util::CsvRow> {
    let report_dir = dir.join("report");
    let report = routerdc_with_env(
        [
            "report",
            "--tables",
            tables,
            "--checkpoint",
            &out.join("best.safetensors").display().to_string(),
            "--out",
            &report_dir.display().to_string(),
        ],
        &[],
    );
    ok(&report);
    let rows: Vec<_> = read_csv(&report_dir.join("baselines.csv"))
        .into_iter()
        .filter(|r| r["router"] == "routerdc" && r["scope"] == "dataset")
        .collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&report));
    for row in &rows {
        let dataset = &row["dataset"];
        let expected = sidecar["validation"].as_array().unwrap().iter().find(|v| v[0] == json!(dataset)).unwrap()[1]
            .as_f64()
            .unwrap();
        let got: f64 = row["acc_predict"].parse().unwrap();
        assert!((got - expected).abs() < 1e-12, "{dataset}: report {got} vs best.json {expected}");
    }
    rows
}

#[test]
fn an_evaluation_sample_chooses_the_step_and_best_json_holds_the_full_sets() {
    let Some((temp, tables_arg, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    let run = train(
        &tables_arg,
        &out,
        &encoder,
        &with_small(&["--test", &tables_arg, "--steps", "20", "--eval-steps", "5", "--eval-sample", "12"]),
    );
    ok(&run);
    assert!(stderr(&run).contains("on the evaluation sample"), "{}", stderr(&run));
    assert!(stderr(&run).contains("full sets"), "{}", stderr(&run));
    // The test tables are routed once, at the end: no evaluation during the run scores them.
    let log_text = stderr(&run);
    let sampled_lines: Vec<&str> =
        log_text.lines().filter(|line| line.contains(" s on the evaluation sample)")).collect();
    assert_eq!(sampled_lines.len(), 4, "{log_text}");
    assert!(sampled_lines.iter().all(|line| !line.contains("test")), "{sampled_lines:?}");
    // Every evaluation's time is logged at its step, and only there.
    let log = routerdc::io::read_parquet(&out.join("train_log.parquet")).unwrap();
    let names = log.get_column_names();
    assert!(names.iter().any(|name| name.starts_with("val:")), "{names:?}");
    assert!(!names.iter().any(|name| name.starts_with("test:")), "{names:?}");
    let steps: Vec<i64> = log.column("step").unwrap().i64().unwrap().into_no_null_iter().collect();
    let eval_seconds: Vec<Option<f64>> = log.column("eval_seconds").unwrap().f64().unwrap().iter().collect();
    let sampled: Vec<Option<f64>> = log.column("val_average").unwrap().f64().unwrap().iter().collect();
    for (index, step) in steps.iter().enumerate() {
        assert_eq!(eval_seconds[index].is_some(), step % 5 == 0, "step {step}: {:?}", eval_seconds[index]);
        assert!(eval_seconds[index].is_none_or(|seconds| seconds >= 0.0));
    }
    // The best step is the first with the best sampled validation average ...
    let sidecar: Value = serde_json::from_slice(&std::fs::read(out.join("best.json")).unwrap()).unwrap();
    let mut best: Option<(i64, f64)> = None;
    for (step, average) in steps.iter().zip(&sampled) {
        if let Some(average) = average
            && best.is_none_or(|(_, value)| *average > value)
        {
            best = Some((*step, *average));
        }
    }
    assert_eq!(sidecar["step"].as_i64(), best.map(|(step, _)| step), "{sidecar}");
    // ... and best.json's numbers are the checkpoint's on every row: `report` agrees.
    let rows = report_matches_best_json(temp.path(), &tables_arg, &out, &sidecar);
    assert!(rows.iter().all(|row| row["n_queries"] == "24"), "every row, not the sample");
}

#[test]
fn a_held_out_share_validates_and_best_json_names_its_rows() {
    let Some((temp, tables_arg, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    ok(&train(
        &tables_arg,
        &out,
        &encoder,
        &with_small(&["--steps", "20", "--eval-steps", "5", "--validation-ratio", "0.25"]),
    ));
    let sidecar: Value = serde_json::from_slice(&std::fs::read(out.join("best.json")).unwrap()).unwrap();
    let held_out = sidecar["held_out"].as_array().unwrap();
    assert_eq!(held_out.len(), 2, "{sidecar}");
    // The checkpoint's routes of the full tables, scored on the held-out rows alone, give
    // best.json's validation numbers.
    let routes = temp.path().join("routes");
    let checkpoint = out.join("best.safetensors").display().to_string();
    ok(&routerdc_with_env(
        ["route", "--checkpoint", &checkpoint, "--tables", &tables_arg, "--out", routes.to_str().unwrap()],
        &[],
    ));
    for loaded in routerdc::io::read_tables(Path::new(&tables_arg)).unwrap() {
        let table = &loaded.table;
        let entry = held_out.iter().find(|entry| entry[0] == json!(table.dataset)).unwrap();
        let ids: Vec<&str> = entry[1].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
        assert_eq!(ids.len(), 6, "a quarter of 24 rows");
        let routed = routerdc::io::read_parquet(&routes.join(format!("{}.parquet", table.dataset))).unwrap();
        let query_ids: Vec<&str> =
            routed.column("query_id").unwrap().str().unwrap().iter().map(Option::unwrap).collect();
        let llms: Vec<&str> = routed.column("llm").unwrap().str().unwrap().iter().map(Option::unwrap).collect();
        let mut credit = 0.0;
        for id in &ids {
            let row = table.query_ids.iter().position(|q| q == id).unwrap();
            let llm = llms[query_ids.iter().position(|q| q == id).unwrap()];
            let choice = table.models.iter().position(|m| m == llm).unwrap();
            credit += table.kind.credit(table.score_row(row)[choice]);
        }
        let expected = sidecar["validation"].as_array().unwrap().iter().find(|v| v[0] == json!(table.dataset)).unwrap()
            [1]
        .as_f64()
        .unwrap();
        let got = credit / ids.len() as f64;
        assert!((got - expected).abs() < 1e-12, "{}: held-out rows {got} vs best.json {expected}", table.dataset);
    }
    // The same seed holds out the same rows; a kNN router has no use for the ratio.
    let again = temp.path().join("again");
    ok(&train(&tables_arg, &again, &encoder, &with_small(&["--steps", "5", "--validation-ratio", "0.25"])));
    let second: Value = serde_json::from_slice(&std::fs::read(again.join("best.json")).unwrap()).unwrap();
    assert_eq!(second["held_out"], sidecar["held_out"]);
    let knn = train(&tables_arg, &temp.path().join("knn"), &encoder, &["--router", "knn", "--validation-ratio", "0.2"]);
    assert_eq!(knn.status.code(), Some(2), "{}", stderr(&knn));
    assert!(stderr(&knn).contains("validation_ratio"), "{}", stderr(&knn));
}

#[test]
fn tune_tries_the_grid_logs_every_trial_and_keeps_the_validation_winner() {
    let Some((temp, tables_arg, encoder)) = topic_setup() else { return };
    let out = temp.path().join("tune");
    let out_arg = out.display().to_string();
    let mut args = vec!["tune", "--train", &tables_arg, "--out", &out_arg, "--encoder", &encoder];
    args.extend(with_small(&[
        "--freeze-encoder",
        "--steps",
        "10",
        "--eval-steps",
        "5",
        "--try-learning-rate",
        "0.005,0.05",
        "--try-temperature",
        "1,0.1",
    ]));
    let run = routerdc_with_env(args, &[]);
    ok(&run);
    assert!(stderr(&run).contains("tried 4 settings"), "{}", stderr(&run));
    let trials = routerdc::io::read_parquet(&out.join("trials.parquet")).unwrap();
    assert_eq!(trials.height(), 4);
    let rates: Vec<f64> = trials.column("learning_rate").unwrap().f64().unwrap().into_no_null_iter().collect();
    let taus: Vec<f64> = trials.column("temperature").unwrap().f64().unwrap().into_no_null_iter().collect();
    assert_eq!(rates, vec![0.005, 0.005, 0.05, 0.05]);
    assert_eq!(taus, vec![1.0, 0.1, 1.0, 0.1]);
    // Each row is its trial's best.json; the kept checkpoint is the first best on validation,
    // its weights and step those of that trial.
    let validation: Vec<f64> =
        trials.column("validation_average").unwrap().f64().unwrap().into_no_null_iter().collect();
    let mut winner = 0;
    for (index, value) in validation.iter().enumerate() {
        let sidecar: Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("trial-{:03}/best.json", index + 1))).unwrap())
                .unwrap();
        assert_eq!(sidecar["validation_average"].as_f64().unwrap(), *value);
        assert_eq!(sidecar["settings"]["validation_ratio"], json!(0.1), "tune validates on held-out rows");
        if *value > validation[winner] {
            winner = index;
        }
    }
    let kept: Value = serde_json::from_slice(&std::fs::read(out.join("best.json")).unwrap()).unwrap();
    assert_eq!(kept["validation_average"].as_f64().unwrap(), validation[winner]);
    assert_eq!(kept["settings"]["learning_rate"], json!(rates[winner]));
    // The LLM embeddings, not searched, train at each trial's learning rate.
    let llm_rates: Vec<f64> = trials.column("llm_learning_rate").unwrap().f64().unwrap().into_no_null_iter().collect();
    assert_eq!(llm_rates, rates);
    assert_eq!(kept["settings"]["llm_learning_rate"], json!(rates[winner]));
    assert_eq!(
        std::fs::read(out.join("best.safetensors")).unwrap(),
        std::fs::read(out.join(format!("trial-{:03}/best.safetensors", winner + 1))).unwrap()
    );
    // The kept pair is a checkpoint `route` loads (its weight hash checked).
    let routes = temp.path().join("routes");
    ok(&routerdc_with_env(
        [
            "route",
            "--checkpoint",
            &out.join("best.safetensors").display().to_string(),
            "--tables",
            &tables_arg,
            "--out",
            routes.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(routes.join("mmlu_train.parquet").is_file());
}

#[test]
fn a_tiny_router_trains_routes_and_reports() {
    let Some((temp, tables_arg, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    let run = train(
        &tables_arg,
        &out,
        &encoder,
        &with_small(&["--test", &tables_arg, "--steps", "40", "--eval-steps", "10"]),
    );
    ok(&run);
    // The loss falls, and the router beats random routing on its own data.
    let losses = logged_losses(&out);
    assert_eq!(losses.len(), 40);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    assert!(mean(&losses[30..]) < mean(&losses[..10]), "loss did not fall: {losses:?}");
    let sidecar: Value = serde_json::from_slice(&std::fs::read(out.join("best.json")).unwrap()).unwrap();
    let validation = sidecar["validation_average"].as_f64().unwrap();
    assert!(validation > 0.5, "a random router gets 1/3 here; the trained one got {validation}");
    assert_eq!(sidecar["models"], json!(["llm-a", "llm-b", "llm-c"]));

    // `report --checkpoint` puts the router's rows beside the baselines, equal to best.json's.
    report_matches_best_json(temp.path(), &tables_arg, &out, &sidecar);

    // A checkpoint used on tables of another model list: exit 2, both lists named.
    let other = temp.path().join("other");
    let other_tables = import_records(&other, "mmlu_test", &other_models());
    let checkpoint = out.join("best.safetensors").display().to_string();
    let mismatch = routerdc_with_env(
        [
            "report",
            "--tables",
            &other_tables,
            "--checkpoint",
            &checkpoint,
            "--out",
            &other.join("r").display().to_string(),
        ],
        &[],
    );
    assert_eq!(mismatch.status.code(), Some(2), "{}", stderr(&mismatch));
    assert!(stderr(&mismatch).contains("llm-x") && stderr(&mismatch).contains("llm-a"), "{}", stderr(&mismatch));
    assert!(!other.join("r").join("baselines.csv").exists(), "nothing written on error");

    // `route` on stdin: one JSON object per line, probabilities summing to 1.
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_routerdc"))
        .args(["route", "--checkpoint", &out.join("best.safetensors").display().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"A question about algebra: algebra?\nA question about poetry: poetry?\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let probs: f64 = line["probs"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        assert!((probs - 1.0).abs() < 1e-9);
        assert!(["llm-a", "llm-b", "llm-c"].contains(&line["llm"].as_str().unwrap()));
    }
}

#[test]
fn bf16_mixed_precision_trains_close_to_float32() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let run = |name: &str, extra: &[&str]| -> Vec<f64> {
        let out = temp.path().join(name);
        let mut settings = with_small(&["--steps", "4", "--eval-steps", "4"]);
        settings.extend_from_slice(extra);
        ok(&train(&tables, &out, &encoder, &settings));
        logged_losses(&out)
    };
    let (full, mixed) = (run("f32", &[]), run("bf16", &["--bf16"]));
    for (a, b) in full.iter().zip(&mixed) {
        assert!(b.is_finite() && (a - b).abs() < 0.05 * a.abs().max(1.0), "f32 {a} vs bf16 {b}");
    }
    assert_ne!(full, mixed, "--bf16 changes the arithmetic");
}

#[test]
fn bad_training_settings_are_usage_errors() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let out = temp.path().join("o");
    let train = |extra: &[&str], tables: &str| {
        let mut settings = vec!["--steps", "1"];
        settings.extend_from_slice(extra);
        train(tables, &out, &encoder, &settings)
    };
    let output = train(&["--top-k", "2", "--last-k", "2"], &tables);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("top_k (2) + last_k (2)"), "{}", stderr(&output));
    // Every row of these tables is a training row: a test split selects nothing.
    let output = train(&["--top-k", "1", "--last-k", "1", "--train-split", "test"], &tables);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("has rows whose split is `test`"), "{}", stderr(&output));
    let output = train(&["--top-k", "1", "--last-k", "1", "--llm-learning-rate=-0.01"], &tables);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("llm_learning_rate"), "{}", stderr(&output));

    // A table without cluster ids while the cluster loss is on.
    let records = json!([{"question": "q one", "scores": {"llm-a": 1.0, "llm-b": 0.0, "llm-c": 0.0}}]);
    let plain_tables = import_records(&temp.path().join("plain"), "mmlu_train", &records);
    let output = train(&["--top-k", "1", "--last-k", "1"], &plain_tables);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("mmlu_train.parquet") && stderr(&output).contains("no cluster id"),
        "{}",
        stderr(&output)
    );

    // Different model lists between the training and test tables.
    let other_tables = import_records(&temp.path().join("other"), "mmlu_test", &other_models());
    let output = train(&["--test", &other_tables, "--top-k", "1", "--last-k", "1"], &tables);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("llm-x"), "{}", stderr(&output));
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let run = |out: &Path, steps: &str, extra: &[&str]| {
        let mut settings = with_small(&["--steps", steps, "--eval-steps", "5", "--task-weight", "0.5"]);
        settings.extend_from_slice(extra);
        let output = train(&tables, out, &encoder, &settings);
        ok(&output);
        output
    };
    let whole = temp.path().join("whole");
    run(&whole, "10", &[]);
    let parts = temp.path().join("parts");
    run(&parts, "5", &[]);
    // Saved as a build before `--llm-learning-rate` saved it (K at the learning rate): resumable.
    let last_json = parts.join("last.json");
    let mut saved: Value = serde_json::from_slice(&std::fs::read(&last_json).unwrap()).unwrap();
    assert_eq!(saved["settings"]["llm_learning_rate"], saved["settings"]["learning_rate"]);
    saved["settings"].as_object_mut().unwrap().remove("llm_learning_rate");
    std::fs::write(&last_json, serde_json::to_vec_pretty(&saved).unwrap()).unwrap();
    let resumed = run(&parts, "10", &["--resume"]);
    assert!(stderr(&resumed).contains("resuming after step 5"), "{}", stderr(&resumed));
    let tensors = |dir: &Path| -> Vec<(String, Vec<f32>)> {
        let mut all: Vec<(String, Vec<f32>)> =
            routerdc::io::read_bytes(&dir.join("last.safetensors")).map(|bytes| safetensors_f32(&bytes)).unwrap();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let (a, b) = (tensors(&whole), tensors(&parts));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|(name, _)| name.starts_with("optimizer.m.")), "the optimizer state is saved");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let worst = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{name} differs by {worst} after resuming");
    }
    assert_eq!(logged_losses(&whole).len(), 10);
    for (x, y) in logged_losses(&whole).iter().zip(logged_losses(&parts)) {
        assert!((x - y).abs() < 1e-6, "logged losses differ: {x} vs {y}");
    }
    // Other settings than --steps are refused on resume.
    let output = train(&tables, &parts, &encoder, &with_small(&["--steps", "12", "--resume", "--seed", "7"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("only --steps may change"), "{}", stderr(&output));
}

/// The float32 tensors of a safetensors file, by name (a minimal reader for the test).
fn safetensors_f32(bytes: &[u8]) -> Vec<(String, Vec<f32>)> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, info)| *name != "__metadata__" && info["dtype"] == "F32")
        .map(|(name, info)| {
            let offsets = info["data_offsets"].as_array().unwrap();
            let (start, end) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
            let values = data[start..end].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (name.clone(), values)
        })
        .collect()
}

#[test]
fn adamw_steps_equal_torch_optim_adamw() {
    let Some(python) = python() else { return };
    let mut lcg = Lcg(11);
    let mut matrix = |rows: usize, cols: usize, scale: f64| -> Vec<Vec<f64>> {
        (0..rows).map(|_| (0..cols).map(|_| lcg.next() * scale).collect()).collect()
    };
    let params = json!({"w": matrix(3, 4, 1.0), "k": matrix(2, 2, 0.78)});
    // Gradients of different sizes step to step, one exactly zero.
    let mut grads: Vec<Value> =
        (0..6).map(|step| json!({"w": matrix(3, 4, 0.1 * (step + 1) as f64), "k": matrix(2, 2, 2.0)})).collect();
    grads[3]["k"] = json!([[0.0, 0.0], [0.0, 0.0]]);
    // The last case gives K a learning rate of its own (`--llm-learning-rate`; torch: a group).
    for (lr, weight_decay, own_lr) in
        [(0.01, 0.01, json!({})), (5e-5, 0.0, json!({})), (0.1, 0.5, json!({})), (5e-5, 0.01, json!({"k": 0.05}))]
    {
        let case = json!({"params": params, "grads": grads, "lr": lr, "weight_decay": weight_decay, "own_lr": own_lr});
        let mut reference = Command::new(&python);
        reference.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adamw_reference.py"));
        let theirs = run_json(reference, &case);
        let mut ours_command = Command::new(env!("CARGO_BIN_EXE_routerdc-torch"));
        ours_command.arg("adamw");
        let ours = run_json(ours_command, &case);
        assert_eq!(ours.as_array().map(Vec::len), Some(6));
        for step in 0..6 {
            for name in ["w", "k"] {
                let (a, b) = (flat(&ours[step][name]), flat(&theirs[step][name]));
                let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-6, "lr {lr}, wd {weight_decay}, step {step}: `{name}` differs by {worst}");
            }
        }
        // The parameters moved: the comparison is not between two unchanged copies.
        let moved = flat(&ours[5]["w"]).iter().zip(flat(&params["w"])).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(moved > 1e-5, "lr {lr}: the parameters did not move ({moved})");
        // K at its own rate of 0.05 moves by about 0.05 a step, far more than at 5e-5.
        if own_lr.get("k").is_some() {
            let moved =
                flat(&ours[0]["k"]).iter().zip(flat(&params["k"])).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(moved > 0.01, "K did not move at its own rate ({moved})");
        }
    }
}

#[test]
fn a_failed_checkpoint_write_exits_1_and_keeps_the_previous_checkpoint() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    let settings = with_small(&["--steps", "2", "--eval-steps", "2"]);
    ok(&train(&tables, &out, &encoder, &settings));
    let before = (std::fs::read(out.join("best.safetensors")).unwrap(), std::fs::read(out.join("best.json")).unwrap());
    // A folder where the weights' temporary file goes: saving fails there.
    std::fs::create_dir(out.join("best.partial.safetensors")).unwrap();
    let mut again = settings.clone();
    again.extend(["--seed", "7"]);
    let output = train(&tables, &out, &encoder, &again);
    assert_eq!(output.status.code(), Some(1), "failed work, not bad input: {}", stderr(&output));
    assert!(stderr(&output).contains("best.safetensors"), "the error names the checkpoint: {}", stderr(&output));
    let after = (std::fs::read(out.join("best.safetensors")).unwrap(), std::fs::read(out.join("best.json")).unwrap());
    assert!(before == after, "the previous checkpoint was changed");
}

/// `routerdc route --checkpoint CHECKPOINT` on one query line.
fn route_line(checkpoint: &Path) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_routerdc"))
        .args(["route", "--checkpoint", checkpoint.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"A question about poetry?\n").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn checkpoint_pairs_are_read_as_one_unit() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    ok(&train(&tables, &out, &encoder, &with_small(&["--steps", "2", "--eval-steps", "1"])));
    let best = out.join("best.safetensors");
    let routed = route_line(&best);
    ok(&routed);
    // Probabilities in the router's model order, as README says.
    let line = stdout(&routed);
    let (a, b, c) =
        (line.find("\"llm-a\":").unwrap(), line.find("\"llm-b\":").unwrap(), line.find("\"llm-c\":").unwrap());
    assert!(a < b && b < c, "{line}");

    // Killed between the two renames of a save: the new weights are in place, the sidecar is
    // still the old one, whose weights are kept as `best.prev.safetensors`.
    std::fs::rename(&best, out.join("best.prev.safetensors")).unwrap();
    std::fs::copy(out.join("last.safetensors"), &best).unwrap();
    let repaired = route_line(&best);
    ok(&repaired);
    assert_eq!(stdout(&repaired), line, "the pair the sidecar names is the one used");
    // Without the previous weights the pair is torn: refused.
    std::fs::remove_file(out.join("best.prev.safetensors")).unwrap();
    let torn = route_line(&best);
    assert_eq!(torn.status.code(), Some(2), "{}", stderr(&torn));
    assert!(stderr(&torn).contains("best.safetensors") && stderr(&torn).contains("best.json"), "{}", stderr(&torn));
}

#[test]
fn a_checkpoint_finds_its_encoder_elsewhere_and_refuses_another() {
    let Some((temp, tables, shared)) = topic_setup() else { return };
    // A copy of the tiny encoder, whose tokenizer this test changes.
    let encoder = copy_encoder(&shared, temp.path()).display().to_string();
    let out = temp.path().join("run");
    ok(&train(&tables, &out, &encoder, &with_small(&["--steps", "1", "--eval-steps", "1"])));
    let best = out.join("best.safetensors");
    let routed = route_line(&best);
    ok(&routed);
    // On another machine the recorded folder is not there: the encoder is found by the
    // `--encoder` it was trained with, and its files' hashes match.
    let mut sidecar: Value = serde_json::from_slice(&std::fs::read(out.join("best.json")).unwrap()).unwrap();
    assert!(sidecar["encoder_blake3"]["tokenizer"].is_string(), "{sidecar}");
    sidecar["encoder_dir"] = json!("/nonexistent/machine/that/trained/it");
    std::fs::write(out.join("best.json"), sidecar.to_string()).unwrap();
    let moved = route_line(&best);
    ok(&moved);
    assert_eq!(stdout(&moved), stdout(&routed));
    // An encoder whose tokenizer differs from the one trained with is refused.
    let tokenizer = Path::new(&encoder).join("tokenizer.json");
    let mut text = std::fs::read(&tokenizer).unwrap();
    text.extend_from_slice(b"\n");
    std::fs::write(&tokenizer, text).unwrap();
    let refused = route_line(&best);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("not the one the router was trained with")
            && stderr(&refused).contains("tokenizer.json"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_checkpoint_with_nan_weights_is_refused() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    ok(&train(&tables, &out, &encoder, &with_small(&["--steps", "1", "--eval-steps", "1"])));
    let best = out.join("best.safetensors");
    // Overwrite K (`embeddings.weight`) with NaN in the safetensors file, and record the new
    // file's hash in best.json as a save would.
    let mut bytes = std::fs::read(&best).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let offsets = &header["embeddings.weight"]["data_offsets"];
    let (start, end) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
    for chunk in bytes[8 + header_len + start..8 + header_len + end].chunks_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&best, &bytes).unwrap();
    let mut sidecar: Value = serde_json::from_slice(&std::fs::read(out.join("best.json")).unwrap()).unwrap();
    sidecar["weights_blake3"] = json!(blake3::hash(&bytes).to_hex().to_string());
    std::fs::write(out.join("best.json"), sidecar.to_string()).unwrap();
    let output = route_line(&best);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("NaN") && stderr(&output).contains("embeddings.weight"), "{}", stderr(&output));
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`: the fields after the last `)`.
            let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

#[test]
fn killing_routerdc_ends_its_libtorch_child() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    let mut args = vec!["train", "--train", &tables, "--out", out.to_str().unwrap(), "--encoder", &encoder];
    args.extend(with_small(&["--steps", "1000000", "--eval-steps", "1000000"]));
    let mut parent = Command::new(env!("CARGO_BIN_EXE_routerdc"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (at most 60 s) for `routerdc-torch` to start.
    let started = std::time::Instant::now();
    let child = loop {
        if let Some(&pid) = children_of(parent.id()).first() {
            break pid;
        }
        assert!(started.elapsed().as_secs() < 60, "routerdc-torch did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    parent.kill().unwrap();
    parent.wait().unwrap();
    // The child goes too (at most 20 s); it is killed here if it did not, so no test leaks it.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
    };
    let waited = std::time::Instant::now();
    while alive(child) && waited.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let survived = alive(child);
    if survived {
        let _ = Command::new("kill").args(["-9", &child.to_string()]).status();
    }
    assert!(!survived, "routerdc-torch (pid {child}) outlived its killed parent");
}

#[test]
fn a_non_utf8_out_folder_is_refused_before_training() {
    use std::os::unix::ffi::OsStrExt as _;
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let out = temp.path().join(std::ffi::OsStr::from_bytes(b"run-\xff"));
    let output = Command::new(env!("CARGO_BIN_EXE_routerdc"))
        .args(["train", "--train", &tables, "--encoder", &encoder, "--out"])
        .arg(&out)
        .args(with_small(&["--steps", "1"]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("`out`"), "{}", stderr(&output));
    assert!(!out.exists(), "the folder was made before the settings were checked");
}

#[test]
fn route_names_the_line_of_a_query_that_is_not_utf8() {
    use std::io::Write as _;
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let out = temp.path().join("run");
    ok(&train(&tables, &out, &encoder, &with_small(&["--steps", "1", "--eval-steps", "1"])));
    let mut child = Command::new(env!("CARGO_BIN_EXE_routerdc"))
        .args(["route", "--checkpoint", out.join("best.safetensors").to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a fine question\nnot \xff fine\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("<stdin>:2"), "{}", stderr(&output));
}

#[test]
fn an_unreadable_cache_shard_is_skipped_and_reported_once() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    let cache = temp.path().join("cache");
    let embed = |out: &str| {
        let out = temp.path().join(out).display().to_string();
        routerdc_with_env(
            ["embed", "--tables", &tables, "--out", &out, "--encoder", &encoder],
            &[("ROUTERDC_CACHE", &cache)],
        )
    };
    ok(&embed("first"));
    let shards = cache.join("embeddings");
    let key = std::fs::read_dir(&shards).unwrap().next().unwrap().unwrap().path();
    std::fs::write(key.join("00000000000000000000000000000000-1.parquet"), b"").unwrap();
    let second = embed("second");
    ok(&second);
    assert!(stderr(&second).contains("skipped the unreadable embedding cache shard"), "{}", stderr(&second));
    assert_eq!(
        std::fs::read(temp.path().join("first/mmlu_train.parquet")).unwrap(),
        std::fs::read(temp.path().join("second/mmlu_train.parquet")).unwrap()
    );
    let third = embed("third");
    ok(&third);
    assert!(!stderr(&third).contains("skipped"), "reported again: {}", stderr(&third));
}

/// `routerdc report --tables TABLES --checkpoint C... --out OUT`.
fn report_with(tables: &str, checkpoints: &[&Path], out: &Path) -> Output {
    let mut args = vec!["report".to_owned(), "--tables".into(), tables.to_owned()];
    for checkpoint in checkpoints {
        args.extend(["--checkpoint".to_owned(), checkpoint.display().to_string()]);
    }
    args.extend(["--out".to_owned(), out.display().to_string()]);
    routerdc_with_env(&args, &[])
}

#[test]
fn knn_cluster_and_mlp_routers_train_route_report_and_refuse_bad_files() {
    // Planted neighbours: each topic's questions are best answered by one LLM, with the
    // default (real) encoder, so that questions of a topic are each other's nearest neighbours.
    let temp = tempfile::tempdir().unwrap();
    let topics = crate::util::TOPIC_QUESTIONS;
    // Training: every question; test: each topic's first question reworded slightly, so that
    // its nearest training queries are its own topic's.
    let records = |test: bool| -> Value {
        let mut out = Vec::new();
        for (best, questions) in &topics {
            for (i, question) in questions.iter().enumerate().filter(|(i, _)| !test || *i == 0) {
                let question =
                    if test { format!("Please tell me: {}", question.to_lowercase()) } else { (*question).to_owned() };
                let scores: serde_json::Map<String, Value> = ["llm-a", "llm-b", "llm-c"]
                    .iter()
                    .map(|m| ((*m).to_owned(), json!(if m == best { 1.0 } else { 0.0 })))
                    .collect();
                out.push(json!({"question": format!("{question} ({i})"), "scores": scores}));
            }
        }
        Value::Array(out)
    };
    let train_tables = import_records(&temp.path().join("train"), "mmlu_train", &records(false));
    let test_tables = import_records(&temp.path().join("test"), "mmlu_test", &records(true));
    let out = temp.path().join("knn");
    ok(&routerdc_with_env(
        [
            "train",
            "--router",
            "knn",
            "--train",
            &train_tables,
            "--test",
            &test_tables,
            "--out",
            out.to_str().unwrap(),
            "--k",
            "1,2,12",
        ],
        &[],
    ));
    let file: Value = serde_json::from_slice(&std::fs::read(out.join("router.json")).unwrap()).unwrap();
    assert_eq!(file["kind"], "knn");
    assert_ne!(file["k"], json!(12), "k = 12 mixes every topic, which leave-one-out sees: {file}");

    // Each held-out question goes to its topic's LLM.
    let report_dir = temp.path().join("report");
    let report = report_with(&test_tables, &[&out], &report_dir);
    ok(&report);
    let rows = read_csv(&report_dir.join("baselines.csv"));
    let knn = rows.iter().find(|r| r["router"] == "knn" && r["scope"] == "dataset").expect("a knn row");
    assert_eq!(knn["acc_predict"], "1.0", "{}", stdout(&report));
    assert!(stdout(&report).contains("## Verdict"));

    // The cluster router on the same data: three centroids, one per topic.
    let clustered = temp.path().join("cluster");
    ok(&routerdc_with_env(
        [
            "train",
            "--router",
            "cluster",
            "--clusters",
            "3",
            "--train",
            &train_tables,
            "--out",
            clustered.to_str().unwrap(),
        ],
        &[],
    ));
    let cluster_report = temp.path().join("cluster_report");
    ok(&report_with(&test_tables, &[&clustered], &cluster_report));
    let rows = read_csv(&cluster_report.join("baselines.csv"));
    let row = rows.iter().find(|r| r["router"] == "cluster" && r["scope"] == "dataset").expect("a cluster row");
    assert_eq!(row["acc_predict"], "1.0", "each topic is its own cluster");
    // Both routers in one report, each compared with the baselines.
    let both = temp.path().join("both_report");
    let report = report_with(&test_tables, &[&out, &clustered], &both);
    ok(&report);
    let rows = read_csv(&both.join("baselines.csv"));
    let alone = read_csv(&cluster_report.join("baselines.csv"));
    for router in ["knn", "cluster"] {
        let group = rows.iter().find(|r| r["router"] == router && r["scope"] == "group").expect("a group row");
        assert!(!group["vs_best_single"].is_empty(), "{router}: no comparison in {group:?}");
        let number = |column: &str| group[column].parse::<f64>().unwrap();
        assert!(
            number("acc_predict_low") <= number("acc_predict") && number("acc_predict") <= number("acc_predict_high"),
            "{router}: the interval holds the average: {group:?}"
        );
        if router == "cluster" {
            // The interval does not depend on the other routers in the report.
            let by_itself = alone.iter().find(|r| r["router"] == router && r["scope"] == "group").unwrap();
            assert_eq!(group["vs_best_single_low"], by_itself["vs_best_single_low"]);
        }
        assert!(stdout(&report).contains(&format!("| all | {router} | best_single |")), "{}", stdout(&report));
    }
    let routed = route_line(&clustered);
    ok(&routed);
    assert!(stdout(&routed).contains("\"scores\""), "{}", stdout(&routed));
    // `NAME=PATH` names a router's rows; a name an LLM or a baseline has is refused.
    let named = temp.path().join("named_report");
    let near = PathBuf::from(format!("near={}", out.display()));
    ok(&report_with(&test_tables, &[&near], &named));
    let rows = read_csv(&named.join("baselines.csv"));
    assert!(rows.iter().any(|r| r["router"] == "near" && r["scope"] == "group"), "{rows:?}");
    for taken in ["oracle", "llm-b"] {
        let clash = PathBuf::from(format!("{taken}={}", out.display()));
        let refused = report_with(&test_tables, &[&clash], &temp.path().join("clash"));
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(stderr(&refused).contains("would be mistaken"), "{}", stderr(&refused));
    }

    // The MLP router (linear here) learns the same three topics from nine of the questions,
    // three held out to choose its epoch.
    let mlp = temp.path().join("mlp");
    let trained = routerdc_with_env(
        [
            "train",
            "--router",
            "mlp",
            "--hidden",
            "0",
            "--learning-rate",
            "0.05",
            "--validation-ratio",
            "0.25",
            "--train",
            &train_tables,
            "--test",
            &test_tables,
            "--out",
            mlp.to_str().unwrap(),
        ],
        &[],
    );
    ok(&trained);
    assert!(stderr(&trained).contains("(3 held out)"), "{}", stderr(&trained));
    let mlp_report = temp.path().join("mlp_report");
    ok(&report_with(&test_tables, &[&mlp], &mlp_report));
    let rows = read_csv(&mlp_report.join("baselines.csv"));
    let row = rows.iter().find(|r| r["router"] == "mlp" && r["scope"] == "dataset").expect("an mlp row");
    assert_eq!(row["acc_predict"], "1.0", "{row:?}");
    let routed = route_line(&mlp);
    ok(&routed);
    assert!(stdout(&routed).contains("\"scores\""), "{}", stdout(&routed));
    // A file that is not safetensors, and weights with two outputs for three LLMs, are refused
    // naming the file.
    let weights = mlp.join("mlp.safetensors");
    std::fs::copy(out.join("knn.parquet"), &weights).unwrap();
    let refused = route_line(&mlp);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("mlp.safetensors"), "{}", stderr(&refused));
    let header = br#"{"layers.0.weight":{"dtype":"F32","shape":[2,384],"data_offsets":[0,3072]},"layers.0.bias":{"dtype":"F32","shape":[2],"data_offsets":[3072,3080]}}"#;
    let mut two_outputs = (header.len() as u64).to_le_bytes().to_vec();
    two_outputs.extend_from_slice(header);
    two_outputs.extend(std::iter::repeat_n(0u8, 3080));
    std::fs::write(&weights, two_outputs).unwrap();
    let refused = route_line(&mlp);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("2 outputs for 3 LLMs"), "{}", stderr(&refused));

    // A router whose encoder has other hashes than the one found now is refused.
    let mut edited = file.clone();
    edited["encoder_key"] = json!("0123456789abcdef0123456789abcdef");
    std::fs::write(out.join("router.json"), edited.to_string()).unwrap();
    let refused = route_line(&out);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("not the one the router was trained with"), "{}", stderr(&refused));
}

#[test]
fn a_batch_encoded_in_passes_trains_as_one_pass() {
    let Some((temp, tables, shared)) = topic_setup() else { return };
    // 4 steps of batches of 12 with `--batch-tokens` 0 (one pass, padded to the batch's longest
    // query) or 20 (a pass per query).
    let losses = |encoder: &str, tokens: &str, name: &str| {
        let out = temp.path().join(format!("run-{name}-{tokens}"));
        let extra = ["--steps", "4", "--eval-steps", "4", "--batch-tokens", tokens];
        ok(&train(&tables, &out, encoder, &with_small(&extra)));
        logged_losses(&out)
    };
    // With the tiny encoder's own dropout the passes draw other masks than one pass, so the
    // losses differ: `--batch-tokens` reaches the trainer.
    assert_ne!(losses(&shared, "0", "dropout"), losses(&shared, "20", "dropout"), "--batch-tokens changed nothing");
    // Without dropout the passes compute the one-pass h, up to float rounding, and the losses
    // must follow (gradients included, through the later steps).
    let encoder = copy_encoder(&shared, temp.path());
    let mut config: Value = serde_json::from_slice(&std::fs::read(encoder.join("config.json")).unwrap()).unwrap();
    config["hidden_dropout_prob"] = json!(0.0);
    config["attention_probs_dropout_prob"] = json!(0.0);
    std::fs::write(encoder.join("config.json"), config.to_string()).unwrap();
    let encoder = encoder.display().to_string();
    let (one, passes) = (losses(&encoder, "0", "plain"), losses(&encoder, "20", "plain"));
    assert_eq!(one.len(), 4);
    for (step, (a, b)) in one.iter().zip(&passes).enumerate() {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "step {}: one pass {a}, passes {b}", step + 1);
    }
    // The weights move between steps, so the later steps' equality checks the gradients too.
    assert!(one.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-4), "{one:?}");
}

#[test]
fn workers_share_a_steps_passes_and_train_as_one_thread_does() {
    let Some((temp, tables, encoder)) = topic_setup() else { return };
    // A pass per query (`--batch-tokens 20`), dropout on, an evaluation every 2 steps: one pass
    // at a time on this thread, or the passes shared out between 2 or 3 workers.
    let run = |workers: &str, name: &str| {
        let out = temp.path().join(format!("run-{name}"));
        let extra = ["--steps", "6", "--eval-steps", "2", "--batch-tokens", "20", "--workers", workers];
        ok(&train(&tables, &out, &encoder, &with_small(&extra)));
        let log = routerdc::io::read_parquet(&out.join("train_log.parquet")).unwrap();
        let validation: Vec<f64> = log.column("val_average").unwrap().f64().unwrap().iter().flatten().collect();
        (logged_losses(&out), validation)
    };
    let (here, here_validation) = run("1", "one");
    assert_eq!(here.len(), 6);
    assert_eq!(here_validation.len(), 3);
    assert!(here.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-4), "the weights did not move: {here:?}");
    for workers in ["2", "3"] {
        let (losses, validation) = run(workers, workers);
        // The same masks (each pass seeds its own) and the same gradients, up to the order in
        // which the workers' shares are added: the later steps check the backward passes.
        for (step, (a, b)) in here.iter().zip(&losses).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "step {}, {workers} workers: {b}, one thread: {a}",
                step + 1
            );
        }
        assert_eq!(validation, here_validation, "{workers} workers evaluated otherwise");
    }
    // Workers repeat themselves exactly.
    assert_eq!(run("2", "2-again").0, run("2", "2-once-more").0);
}
