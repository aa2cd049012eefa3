//! Encoders against HF transformers (tiny random models made in the venv), `embed` and its
//! cache, `cluster`, and the errors for bad encoder directories and tables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{ok, python, routerdc_with_env, stderr, stdout};

/// Tiny encoders and HF's outputs for them (tests/fixtures/make_tiny_encoders.py), made once.
pub fn tiny() -> Option<&'static Path> {
    static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    DIR.get_or_init(|| {
        let python = python()?;
        let default = routerdc::hf::default_encoder().expect("scripts/setup.sh installs the default encoder");
        let dir = tempfile::tempdir().expect("a temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_tiny_encoders.py");
        let output = Command::new(python).arg(script).arg(dir.path()).arg(default).output().expect("python runs");
        assert!(output.status.success(), "make_tiny_encoders.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
        Some(dir)
    })
    .as_ref()
    .map(tempfile::TempDir::path)
}

fn expected(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap()
}

/// `routerdc-torch hidden` on `texts`: (ids, hidden [B][L][H], first [B][H]).
fn hidden(encoder: &Path, texts: &[&str], max_length: u64) -> Value {
    hidden_in(encoder, texts, max_length, "none")
}

/// `hidden` with the Linear layers in `quantize` (`none` or `int8`).
fn hidden_in(encoder: &Path, texts: &[&str], max_length: u64, quantize: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_routerdc-torch"))
        .args(["hidden", "--encoder"])
        .arg(encoder)
        .args(["--max-length", &max_length.to_string(), "--quantize", quantize])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(serde_json::to_string(texts).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "hidden failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn floats(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Largest |ours − HF| over the real (unpadded) tokens of rows `rows` of HF's batch.
fn worst_difference(ours: &Value, hf: &Value, ids: &Value, rows: &[usize], our_rows: &[usize]) -> f64 {
    differences(ours, hf, ids, rows, our_rows).into_iter().fold(0f64, f64::max)
}

/// |ours − HF| for every value of the real (unpadded) tokens of rows `rows` of HF's batch.
fn differences(ours: &Value, hf: &Value, ids: &Value, rows: &[usize], our_rows: &[usize]) -> Vec<f64> {
    let mut all = Vec::new();
    for (&row, &our_row) in rows.iter().zip(our_rows) {
        for token in 0..ids[row].as_array().unwrap().len() {
            let (a, b) = (floats(&ours[our_row][token]), floats(&hf[row][token]));
            assert_eq!(a.len(), b.len());
            all.extend(a.iter().zip(&b).map(|(x, y)| (x - y).abs()));
        }
    }
    all
}

#[test]
fn tiny_bert_and_deberta_match_hf_transformers_with_and_without_padding() {
    let Some(dir) = tiny() else { return };
    let expected = expected(dir);
    let max_length = expected["max_length"].as_u64().unwrap();
    for name in ["bert", "bert-bin", "deberta", "deberta-plain"] {
        let case = &expected[name];
        let texts: Vec<&str> = case["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let ours = hidden(&dir.join(name), &texts, max_length);
        // Token ids: HF's fast tokenizer (for `deberta`, the one transformers builds from spm.model).
        assert_eq!(ours["ids"], case["ids"], "{name}: token ids differ from HF's");
        let longest = case["ids"].as_array().unwrap().iter().map(|ids| ids.as_array().unwrap().len()).max().unwrap();
        assert_eq!(longest as u64, max_length, "{name}: the long text is cut to max_length");
        // As one padded batch.
        let rows: Vec<usize> = (0..texts.len()).collect();
        let padded = worst_difference(&ours["hidden"], &case["hidden"], &case["ids"], &rows, &rows);
        assert!(padded < 1e-4, "{name}: padded batch differs from HF by {padded}");
        // `embed`'s path (last layer for the first token only) gives HF's first-token state.
        for row in 0..texts.len() {
            let (a, b) = (floats(&ours["embedded"][row]), floats(&case["hidden"][row][0]));
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max);
            assert!(worst < 1e-4, "{name}: embedded text {row} differs from HF's first token by {worst}");
        }
        // Each text alone (no padding at all) equals HF's padded-batch row.
        for row in [0, texts.len() - 1, 2] {
            let alone = hidden(&dir.join(name), &[texts[row]], max_length);
            let difference = worst_difference(&alone["hidden"], &case["hidden"], &case["ids"], &[row], &[0]);
            assert!(difference < 1e-4, "{name}: text {row} alone differs from HF by {difference}");
        }
    }
}

#[test]
fn int8_encoders_match_pytorch_quantize_dynamic() {
    let Some(dir) = tiny() else { return };
    let expected = expected(dir);
    let max_length = expected["max_length"].as_u64().unwrap();
    for name in ["bert", "deberta", "deberta-plain"] {
        let case = &expected[name];
        let texts: Vec<&str> = case["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let ours = hidden_in(&dir.join(name), &texts, max_length, "int8");
        let rows: Vec<usize> = (0..texts.len()).collect();
        // The same int8 kernels on the same batch (padding rows included: their values are part
        // of each Linear input's quantization range): equal to float rounding, and far from float32.
        let to_pytorch = differences(&ours["hidden"], &case["hidden_int8"], &case["ids"], &rows, &rows);
        let to_float = differences(&ours["hidden"], &case["hidden"], &case["ids"], &rows, &rows);
        let worst = to_pytorch.iter().copied().fold(0f64, f64::max);
        let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
        assert!(worst < 1e-5, "{name}: int8 differs from PyTorch's quantize_dynamic by up to {worst}");
        assert!(
            mean(&to_float) > 100.0 * mean(&to_pytorch),
            "{name}: int8 is as close to float32 ({}) as to PyTorch's int8 ({})",
            mean(&to_float),
            mean(&to_pytorch)
        );
    }
}

#[test]
fn left_truncation_keeps_the_end_of_a_long_query() {
    let Some(dir) = tiny() else { return };
    let text = (0..200).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
    let left = hidden(&dir.join("bert"), &[&text], 16);
    let ids: Vec<u64> = left["ids"][0].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 16);
    // [CLS] ... [SEP] around the last tokens: the final word's pieces come right before [SEP].
    let whole = hidden(&dir.join("bert"), &["word199"], 512);
    let tail: Vec<u64> = whole["ids"][0].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let tail = &tail[1..tail.len() - 1];
    assert_eq!(&ids[15 - tail.len()..15], tail);
}

/// RouterDC JSON tables written from `(dataset, texts)`, imported into `<dir>/tables`.
fn tables(dir: &Path, datasets: &[(&str, Vec<String>)]) -> PathBuf {
    let mut files = Vec::new();
    for (dataset, texts) in datasets {
        let records: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| serde_json::json!({"question": text, "scores": {"m1": (i % 2) as f64, "m2": ((i + 1) % 2) as f64}}))
            .collect();
        let path = dir.join(format!("{dataset}.json"));
        std::fs::write(&path, serde_json::to_vec(&records).unwrap()).unwrap();
        files.push(path);
    }
    let tables = dir.join("tables");
    let mut args = vec!["import".to_owned(), "--out".into(), tables.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    ok(&routerdc_with_env(&args, &[]));
    tables
}

fn sample_texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} question number {i}: what is {i} plus {}?", i * 3)).collect()
}

fn embeddings_of(path: &Path) -> (Vec<String>, Vec<Vec<f32>>) {
    routerdc::stages::embed::read_embeddings(path).unwrap()
}

#[test]
fn embed_matches_the_encoder_and_reuses_its_cache() {
    let Some(dir) = tiny() else { return };
    let temp = tempfile::tempdir().unwrap();
    let mut alpha = sample_texts("alpha", 12);
    alpha.push(alpha[0].clone()); // a repeated text is embedded once
    let tables = tables(temp.path(), &[("mmlu_train", alpha.clone()), ("gsm8k_train", sample_texts("beta", 7))]);
    let cache = temp.path().join("cache");
    let out = temp.path().join("emb");
    let encoder = dir.join("bert");
    let args = |out: &Path| {
        vec![
            "embed".to_owned(),
            "--tables".into(),
            tables.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--encoder".into(),
            encoder.display().to_string(),
            "--batch-size".into(),
            "4".into(),
        ]
    };
    let first = routerdc_with_env(args(&out), &[("ROUTERDC_CACHE", &cache)]);
    ok(&first);
    assert!(stderr(&first).contains("embedded 20 texts (19 distinct, 0 from the cache)"), "{}", stderr(&first));
    let (ids, vectors) = embeddings_of(&out.join("mmlu_train.parquet"));
    assert_eq!(ids.len(), 13);
    assert_eq!(vectors[0], vectors[12]);
    // Each vector is the first-token state of that text embedded alone.
    let alone = hidden(&encoder, &[alpha[5].as_str()], 512);
    let reference = floats(&alone["first"][0]);
    let worst = vectors[5].iter().zip(&reference).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "batched embedding differs from the text alone by {worst}");
    // A second run reads every vector from the cache and writes the same files.
    let again = temp.path().join("emb2");
    let second = routerdc_with_env(args(&again), &[("ROUTERDC_CACHE", &cache)]);
    ok(&second);
    assert!(
        stderr(&second).contains("20 texts (19 distinct): every vector from the embedding cache"),
        "{}",
        stderr(&second)
    );
    assert_eq!(embeddings_of(&again.join("mmlu_train.parquet")), embeddings_of(&out.join("mmlu_train.parquet")));
    assert_eq!(embeddings_of(&again.join("gsm8k_train.parquet")), embeddings_of(&out.join("gsm8k_train.parquet")));
    // int8 vectors (here in batches capped by tokens) have cache entries of their own (the
    // float32 ones are not reused), lie close to the float32 ones, and are not them.
    let int8 = temp.path().join("emb-int8");
    let mut int8_args = args(&int8);
    int8_args.extend(["--quantize".into(), "int8".into(), "--batch-tokens".into(), "40".into()]);
    let quantized = routerdc_with_env(int8_args, &[("ROUTERDC_CACHE", &cache)]);
    ok(&quantized);
    assert!(stderr(&quantized).contains("(19 distinct, 0 from the cache)"), "{}", stderr(&quantized));
    let (_, float) = embeddings_of(&out.join("mmlu_train.parquet"));
    let (_, int8) = embeddings_of(&int8.join("mmlu_train.parquet"));
    for (a, b) in float.iter().zip(&int8) {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cosine = dot / (norm(a) * norm(b));
        assert!(cosine > 0.95, "int8 vector far from float32: cosine {cosine}");
        assert_ne!(a, b, "int8 gave the float32 vector");
    }
}

#[test]
fn cluster_is_deterministic_and_agrees_with_precomputed_embeddings() {
    let Some(dir) = tiny() else { return };
    let temp = tempfile::tempdir().unwrap();
    let tables = tables(
        temp.path(),
        &[("mmlu_train", sample_texts("alpha", 30)), ("gsm8k_train", sample_texts("北京 beta", 30))],
    );
    let cache = temp.path().join("cache");
    let encoder = dir.join("bert").display().to_string();
    let run = |out: &str, extra: &[&str]| {
        let mut args: Vec<String> =
            ["cluster", "--tables", &tables.display().to_string(), "--out", out, "--encoder", &encoder, "-k", "3"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let output = routerdc_with_env(&args, &[("ROUTERDC_CACHE", &cache)]);
        ok(&output);
        output
    };
    let out1 = temp.path().join("c1").display().to_string();
    let report = stdout(&run(&out1, &[]));
    assert!(report.contains("| mmlu_train |") && report.contains("fitted on 60 rows"), "{report}");
    let ids = |dir: &str| -> Vec<Option<i64>> {
        ["mmlu_train", "gsm8k_train"]
            .iter()
            .flat_map(|t| {
                routerdc::io::read_table(&Path::new(dir).join(format!("{t}.parquet"))).unwrap().table.cluster_ids
            })
            .collect()
    };
    let first = ids(&out1);
    assert!(first.iter().all(|id| matches!(id, Some(0..=2))));
    assert!((0..3).all(|k| first.contains(&Some(k))), "every cluster is used: {first:?}");
    let out2 = temp.path().join("c2").display().to_string();
    run(&out2, &[]);
    assert_eq!(ids(&out2), first, "same inputs and seed, same ids");
    // From `routerdc embed`'s files: the same ids.
    let emb = temp.path().join("emb").display().to_string();
    ok(&routerdc_with_env(
        ["embed", "--tables", &tables.display().to_string(), "--out", &emb, "--encoder", &encoder],
        &[("ROUTERDC_CACHE", &cache)],
    ));
    let out3 = temp.path().join("c3").display().to_string();
    run(&out3, &["--embeddings", &emb]);
    assert_eq!(ids(&out3), first);
    let sizes = std::fs::read_to_string(Path::new(&out1).join("cluster_report/clusters.csv")).unwrap();
    assert!(sizes.starts_with("dataset,cluster_id,queries,train_queries"), "{sizes}");
    // PCA first still labels every row.
    let out4 = temp.path().join("c4").display().to_string();
    run(&out4, &["--reduce", "pca", "--dims", "2"]);
    assert!(ids(&out4).iter().all(|id| matches!(id, Some(0..=2))));
}

fn fails_with(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "expected exit 2:\n{}", stderr(output));
    for needle in needles {
        assert!(stderr(output).contains(needle), "stderr lacks `{needle}`:\n{}", stderr(output));
    }
}

#[test]
fn bad_encoders_and_tables_are_usage_errors_naming_the_problem() {
    let Some(dir) = tiny() else { return };
    let temp = tempfile::tempdir().unwrap();
    let tables = tables(temp.path(), &[("mmlu_train", sample_texts("alpha", 4))]);
    let embed_tables = |tables: &Path, encoder: &Path| {
        routerdc_with_env(
            [
                "embed",
                "--tables",
                &tables.display().to_string(),
                "--out",
                &temp.path().join("o").display().to_string(),
                "--encoder",
                &encoder.display().to_string(),
                "--no-cache",
            ],
            &[],
        )
    };
    let embed = |encoder: &Path| embed_tables(&tables, encoder);
    let copy = |name: &str| {
        let target = temp.path().join(name);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(dir.join("bert")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
        target
    };
    let edit_config = |target: &Path, from: &str, to: &str| {
        let config = std::fs::read_to_string(target.join("config.json")).unwrap();
        assert!(config.contains(from), "{config}");
        std::fs::write(target.join("config.json"), config.replace(from, to)).unwrap();
    };

    let missing = copy("missing");
    std::fs::remove_file(missing.join("model.safetensors")).unwrap();
    fails_with(&embed(&missing), &["missing", "no weights", "model.safetensors or pytorch_model.bin"]);

    let roberta = copy("roberta");
    edit_config(&roberta, "\"model_type\": \"bert\"", "\"model_type\": \"roberta\"");
    fails_with(&embed(&roberta), &["config.json", "`model_type` is \"roberta\""]);

    let sizes = copy("sizes");
    edit_config(&sizes, "\"intermediate_size\": 48", "\"intermediate_size\": 64");
    fails_with(
        &embed(&sizes),
        &["model.safetensors", "encoder.layer.0.intermediate.dense.bias", "shape [48]", "implies [64]"],
    );

    fails_with(&embed(&temp.path().join("no-such-model")), &["no-such-model", "neither a directory nor a hub id"]);

    // An empty query, and a parquet file without a text column.
    let empty = temp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty_tables = self::tables(&empty, &[("mmlu_train", vec!["a question".into(), "   ".into()])]);
    fails_with(&embed_tables(&empty_tables, &dir.join("bert")), &["mmlu_train.parquet", "empty text"]);
    let no_text = temp.path().join("no-text");
    std::fs::create_dir_all(&no_text).unwrap();
    let mut frame = polars::prelude::df!("dataset" => ["x"], "query_id" => ["0"], "metric_kind" => ["probability"], "score:m" => [1.0]).unwrap();
    routerdc::io::write_parquet(&mut frame, &no_text.join("x.parquet")).unwrap();
    fails_with(&embed_tables(&no_text, &dir.join("bert")), &["x.parquet", "text"]);
}
