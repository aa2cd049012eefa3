//! `routerdc run`: the shipped pipelines, skipping unchanged stages, failed stages keeping the
//! previous outputs, the pipeline-file errors; `routerdc data fetch`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{ok, reference_data, stderr};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `routerdc` in `dir` with `env` added.
fn routerdc_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_routerdc"));
    command.current_dir(dir).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the routerdc binary runs")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// The stage names a run reported as skipped (`✓ <stage> unchanged ...: skipped`).
fn skipped(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|line| line.ends_with(": skipped"))
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

fn ran(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|line| line.starts_with("✓ ") && line.contains(" done in "))
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// The quickstart's stages as runs name them; a train stage's folder is `train-<name>`.
const STAGES: [&str; 7] = ["ingest", "cluster", "train.routerdc", "train.knn", "train.cluster", "train.mlp", "report"];

fn stage_dir(out: &Path, stage: &str) -> PathBuf {
    out.join(stage.replace('.', "-"))
}

/// README's main job, with fewer training steps: every stage runs and writes its manifest and
/// config, `report.md` embeds its figures, a second run skips every stage, a changed input
/// reruns what depends on it, and a failing stage leaves the previous outputs in place.
#[test]
fn the_quickstart_pipeline_runs_skips_and_recovers() {
    let work = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("datasets/sample"), &work.path().join("datasets/sample"));
    let pipeline = repo().join("pipelines/quickstart.toml");
    let pipeline = pipeline.to_str().unwrap();
    let fewer = ["--set", "train.steps=60", "--set", "train.eval-steps=30"];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", pipeline];
        args.extend_from_slice(&fewer);
        args.extend_from_slice(extra);
        routerdc_in(work.path(), &args, &[])
    };

    let first = run(&[]);
    ok(&first);
    assert_eq!(ran(&first), STAGES, "{}", stderr(&first));
    let out = work.path().join("outputs/quickstart");
    for stage in STAGES {
        let dir = stage_dir(&out, stage);
        let manifest = manifest(&dir);
        assert_eq!(manifest["routerdc_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(manifest["stage"], stage);
        assert!(manifest["seconds"].as_f64().unwrap() >= 0.0);
        // Every recorded hash is the content's.
        for file in manifest["inputs"].as_array().unwrap() {
            let path = PathBuf::from(file["path"].as_str().unwrap());
            let path = if path.is_absolute() { path } else { work.path().join(path) };
            let bytes = fs::read(&path).unwrap();
            assert_eq!(file["blake3"], blake3::hash(&bytes).to_hex().as_str(), "{}", path.display());
        }
        for file in manifest["outputs"].as_array().unwrap() {
            let bytes = fs::read(dir.join(file["path"].as_str().unwrap())).unwrap();
            assert_eq!(file["blake3"], blake3::hash(&bytes).to_hex().as_str());
        }
        let config: toml::Table = toml::from_str(&fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
        let kind = stage.split('.').next().unwrap();
        assert!(config.contains_key(kind), "config.toml of {stage}");
    }
    let inputs: Vec<String> = manifest(&out.join("ingest"))["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(inputs.iter().any(|p| p.ends_with("problems/mbpp.jsonl")), "{inputs:?}");
    assert!(inputs.iter().any(|p| p.contains("samples_gsm8k_")), "{inputs:?}");
    let train: toml::Table =
        toml::from_str(&fs::read_to_string(out.join("train-routerdc/config.toml")).unwrap()).unwrap();
    assert_eq!(train["train"]["steps"].as_integer(), Some(60), "--set overrides the file");
    assert_eq!(train["train"]["freeze-encoder"].as_bool(), Some(true));
    assert_eq!(train["train"]["negatives"].as_integer(), Some(3), "defaults are recorded");
    let knn: toml::Table = toml::from_str(&fs::read_to_string(out.join("train-knn/config.toml")).unwrap()).unwrap();
    assert_eq!(knn["train"]["router"].as_str(), Some("knn"));
    assert_eq!(knn["train"]["steps"].as_integer(), Some(60), "`--set train.KEY` sets every train stage");

    let report = out.join("report");
    let markdown = fs::read_to_string(report.join("report.md")).unwrap();
    for figure in ["acc_predict.png", "training_curves.png"] {
        assert!(markdown.contains(&format!("]({figure})")), "report.md embeds {figure}:\n{markdown}");
        let png = fs::read(report.join(figure)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{figure}");
    }
    let bars = fs::read_to_string(report.join("acc_predict.svg")).unwrap();
    for label in [
        "routerdc",
        "knn",
        "mlp",
        "oracle",
        "task_best",
        "best_single",
        "demo/code-7b",
        "mmlu_high_school_geography",
        "avg bigcode",
    ] {
        assert!(bars.contains(label), "acc_predict.svg lacks {label}");
    }
    // Every router is reported and judged against both baselines, in the order trained.
    for router in ["routerdc", "knn", "cluster", "mlp"] {
        assert!(markdown.contains(&format!("| {router} |")), "{markdown}");
        assert!(markdown.contains(&format!("| lm-eval | {router} | task_best |")), "{markdown}");
    }
    // Training evaluated the test split's rows (`test-split`), which the report reports (`split`):
    // the checkpoint's test scores are the report's router rows.
    let best: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("train-routerdc/best.json")).unwrap()).unwrap();
    let rows = crate::util::read_csv(&report.join("baselines.csv"));
    let tested = best["test"].as_array().unwrap();
    assert_eq!(tested.len(), 7);
    for pair in tested {
        let (dataset, value) = (pair[0].as_str().unwrap(), pair[1].as_f64().unwrap());
        let row = rows.iter().find(|r| r["dataset"] == dataset && r["router"] == "routerdc").unwrap();
        let reported: f64 = row["acc_predict"].parse().unwrap();
        assert!((reported - value).abs() < 1e-12, "{dataset}: report {reported} vs best.json {value}");
        let n: usize = row["n_queries"].parse().unwrap();
        assert!(n < 20, "{dataset}: {n} test queries, a 30% split of at most 60");
    }
    assert!(markdown.contains("avg lm-eval"), "{markdown}");

    let second = run(&[]);
    ok(&second);
    assert_eq!(skipped(&second), STAGES, "{}", stderr(&second));
    assert!(ran(&second).is_empty());

    // A changed question text reaches the tables: everything after it runs again.
    let problems = work.path().join("datasets/sample/problems/mbpp.jsonl");
    let text = fs::read_to_string(&problems).unwrap().replacen("Write a function", "Write a Python function", 1);
    fs::write(&problems, text).unwrap();
    let third = run(&[]);
    ok(&third);
    assert_eq!(ran(&third), STAGES, "{}", stderr(&third));

    // A stage that fails keeps the previous outputs where they were.
    let trained = out.join("train-routerdc");
    let before = manifest(&trained);
    let failed = run(&["--from", "train", "--set", "train.routerdc.top-k=9"]);
    assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
    assert!(stderr(&failed).contains("stage `train.routerdc` failed"), "{}", stderr(&failed));
    assert!(out.join("train-routerdc.failed").is_dir());
    assert_eq!(manifest(&trained)["fingerprint"], before["fingerprint"]);
    for file in before["outputs"].as_array().unwrap() {
        let bytes = fs::read(trained.join(file["path"].as_str().unwrap())).unwrap();
        assert_eq!(file["blake3"], blake3::hash(&bytes).to_hex().as_str());
    }
    let after = run(&[]);
    ok(&after);
    assert_eq!(skipped(&after), STAGES, "the kept outputs still count: {}", stderr(&after));
}

fn write_pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("p.toml");
    fs::write(&path, text).unwrap();
    path
}

/// Mistakes in a pipeline file are exit code 2 with the file, the key and what to do.
#[test]
fn pipeline_file_mistakes_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("x.json"), "[]").unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "[import]\ninputs = [\"x.json\"]\nbogus = 1\n",
            &["unknown key `bogus` in [import]", "p.toml", "default-split"],
        ),
        (
            "[import]\ninputs = [\"x.json\"]\ndefault_split = \"test\"\n",
            &["unknown key `default_split`", "`default-split`"],
        ),
        ("[import]\ninputs = [\"x.json\"]\nout = \"elsewhere\"\n", &["`out` in [import] is set by `routerdc run`"]),
        ("[import]\ninputs = [\"${ROUTERDC_TEST_UNSET}/x.json\"]\n", &["${ROUTERDC_TEST_UNSET}", "not set"]),
        ("[import]\ninputs = [\"x.json\"]\n[train]\nsteps = \"many\"\n", &["[train]", "many", "--steps"]),
        ("[train]\nsteps = 5\n", &["no stage makes the tables", "[ingest]"]),
        ("[import]\ninputs = [\"x.json\"]\n[trian]\nsteps = 5\n", &["unknown key `trian`"]),
        ("[import]\ninputs = [\"nothing-*.json\"]\n", &["matches no file"]),
        ("[import]\ninputs = [\"missing.json\"]\n", &["`missing.json` does not exist", "the folder you run in"]),
        ("[import]\ninputs = [\"x.json\"]\n[train]\nfreeze-encoder = 1\n", &["is a switch"]),
        ("[import]\ninputs = [\"x.json\"]\n[[train]]\nsteps = 5\n", &["[[train]] number 1 has no `name`"]),
        (
            "[import]\ninputs = [\"x.json\"]\n[[train]]\nname = \"a\"\n[[train]]\nname = \"a\"\n",
            &["two [[train]] stages are named `a`"],
        ),
        ("[import]\ninputs = [\"x.json\"]\n[[train]]\nname = \"../up\"\n", &["cannot name a folder"]),
        (
            "[import]\ninputs = [\"x.json\"]\n[[train]]\nname = \"a\"\n[[calibrate]]\nname = \"b\"\nbudget = 1\n",
            &["[[calibrate]] `b` names no [[train]] stage"],
        ),
        ("[import\n", &["p.toml", "line 1"]),
    ];
    for (text, expected) in cases {
        let file = write_pipeline(dir.path(), text);
        let output = routerdc_in(dir.path(), &["run", file.to_str().unwrap(), "--dry-run"], &[]);
        assert_eq!(output.status.code(), Some(2), "{text}: {}", stderr(&output));
        for part in *expected {
            assert!(stderr(&output).contains(part), "{text}: expected `{part}` in\n{}", stderr(&output));
        }
        assert!(!dir.path().join("outputs").exists(), "nothing is written for a bad file");
    }
    let file = write_pipeline(dir.path(), "[import]\ninputs = [\"x.json\"]\n");
    let output = routerdc_in(dir.path(), &["run", file.to_str().unwrap(), "--set", "train.steps=3"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("declares no [train] stage"), "{}", stderr(&output));
    let output = routerdc_in(dir.path(), &["run", file.to_str().unwrap(), "--only", "train"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no [train] stage"), "{}", stderr(&output));
}

/// The shipped pipelines for the paper's data resolve: every key is a flag, every path exists.
#[test]
fn the_paper_and_routerbench_pipelines_resolve() {
    let Some(data) = reference_data() else { return };
    let data = data.to_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    for (name, stages) in [
        (
            "routerdc-paper",
            &["import", "cluster", "train.routerdc", "train.knn", "train.cluster", "train.mlp", "report"][..],
        ),
        (
            "routerbench",
            &[
                "convert",
                "cluster",
                "train.routerdc",
                "train.knn",
                "train.cluster",
                "train.mlp",
                "calibrate.routerdc",
                "calibrate.knn",
                "calibrate.cluster",
                "calibrate.mlp",
                "report",
            ][..],
        ),
    ] {
        let file = repo().join(format!("pipelines/{name}.toml"));
        let output = routerdc_in(
            work.path(),
            &["run", file.to_str().unwrap(), "--dry-run"],
            &[("ROUTERDC_DATA", &data), ("HF_HUB_CACHE", work.path().to_str().unwrap())],
        );
        ok(&output);
        let planned: Vec<String> = stderr(&output)
            .lines()
            .filter(|line| line.contains(" would run: "))
            .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        assert_eq!(planned, stages, "{}", stderr(&output));
        if name == "routerdc-paper" {
            // mdeberta-v3-base is not in this (empty) HF cache: the default encoder, said so.
            assert!(stderr(&output).contains("`microsoft/mdeberta-v3-base` not found; using `default`"));
        } else {
            assert!(stderr(&output).contains("routerbench_zs/mbpp_train.csv"), "the glob expands");
        }
        assert!(!work.path().join("outputs").exists(), "--dry-run writes nothing");
    }
}

/// `data fetch` from a mirror (here a file:// copy): every file checked, a second run
/// downloads nothing, a corrupted mirror and an unreachable host are clear errors.
#[test]
fn data_fetch_checks_every_file() {
    let Some(data) = reference_data() else { return };
    let data = fs::canonicalize(data).unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("data");
    let url = format!("file://{}", data.display());
    let fetch = |url: &str, out: &Path| {
        routerdc_in(work.path(), &["data", "fetch", "--out", out.to_str().unwrap()], &[("ROUTERDC_DATA_URL", url)])
    };
    let first = fetch(&url, &out);
    ok(&first);
    assert!(stderr(&first).contains("23 downloaded, 0 already there"), "{}", stderr(&first));
    assert_eq!(
        fs::read(out.join("split2_model7/mbpp.json")).unwrap(),
        fs::read(data.join("split2_model7/mbpp.json")).unwrap()
    );
    let second = fetch(&url, &out);
    ok(&second);
    assert!(stderr(&second).contains("0 downloaded, 23 already there"), "{}", stderr(&second));

    let mirror = work.path().join("mirror");
    copy_tree(&data, &mirror);
    let bad = mirror.join("split2_model7/mbpp.json");
    let mut bytes = fs::read(&bad).unwrap();
    bytes[100] ^= 1;
    fs::write(&bad, bytes).unwrap();
    let fresh = work.path().join("fresh");
    let corrupted = fetch(&format!("file://{}", mirror.display()), &fresh);
    assert_eq!(corrupted.status.code(), Some(2), "{}", stderr(&corrupted));
    assert!(stderr(&corrupted).contains("is not the pinned file"), "{}", stderr(&corrupted));
    assert!(!fresh.join("split2_model7/mbpp.json").exists(), "a bad download is not kept");

    let offline = fetch("http://127.0.0.1:9", &fresh);
    assert_eq!(offline.status.code(), Some(2));
    assert!(stderr(&offline).contains("cannot download"), "{}", stderr(&offline));
    assert!(stderr(&offline).contains("offline"), "{}", stderr(&offline));
}
