//! Hostile and broken inputs (made by `tests/fixtures/make_hostile.py`): each is bad input —
//! exit 2 and a message naming the file — in bounded memory, never an abort, a panic or a write
//! outside `--out`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::util::{ok, python, routerdc, stderr};

/// The hostile files, made once per test run (needs the venv's pandas and torch).
fn hostile() -> Option<&'static Path> {
    static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    DIR.get_or_init(|| {
        let python = python()?;
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_hostile.py");
        let output = Command::new(python).arg(script).arg(dir.path()).output().unwrap();
        assert!(output.status.success(), "make_hostile.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
        Some(dir)
    })
    .as_ref()
    .map(tempfile::TempDir::path)
}

/// Data memory (heap and private mappings, `ulimit -d`) allowed to each command below: far below
/// what the unbounded cases reached (2.4 GB and more). (An address-space cap would not do:
/// libtorch maps its CUDA libraries, gigabytes of address space, even on a CPU.)
const DATA_KIB: u64 = 1_000_000;

/// Run `program args` with its data memory capped: a parser without a budget hits the cap and
/// aborts, which the assertions catch.
fn capped(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -d {DATA_KIB} && exec \"$0\" \"$@\""))
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        let mut input = input;
        input.write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Bad input: exit 2, the file named, no panic or abort.
fn assert_bad_input(output: &Output, file: &Path, what: &str) {
    let said = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{what}: expected exit 2, got {:?}:\n{said}", output.status);
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(said.contains(&*name), "{what}: the message does not name `{name}`:\n{said}");
    for sign in ["panicked", "has overflowed its stack", "memory allocation", "attempt to"] {
        assert!(!said.contains(sign), "{what}: {said}");
    }
}

#[test]
fn hostile_pickles_and_csvs_are_bad_input_in_bounded_memory() {
    let Some(dir) = hostile() else { return };
    let routerdc = env!("CARGO_BIN_EXE_routerdc");
    for name in ["range_overflow.pkl", "range_min.pkl", "block_shape.pkl", "nested_tuples.pkl", "truncated.csv"] {
        let out = tempfile::tempdir().unwrap();
        let file = dir.join(name);
        let output =
            capped(routerdc, &["convert", "--out", out.path().to_str().unwrap(), file.to_str().unwrap()], None);
        assert_bad_input(&output, &file, name);
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "{name}: something was written");
    }
}

#[test]
fn a_protocol_0_pickle_is_read_as_a_pickle() {
    let Some(dir) = hostile() else { return };
    let out = tempfile::tempdir().unwrap();
    let output =
        routerdc(["convert", "--out", out.path().to_str().unwrap(), dir.join("protocol0.pkl").to_str().unwrap()]);
    // Read as a pickle (protocol 0 spells `cls.__new__` as `copy_reg._reconstructor`), never
    // parsed as a CSV.
    ok(&output);
    let table = routerdc::io::read_table(&out.path().join("mmlu-anatomy.parquet")).unwrap().table;
    assert_eq!(table.models, vec!["model-a", "model-b"]);
    assert_eq!(table.n_queries(), 4);
}

#[test]
fn names_from_data_never_leave_out() {
    let Some(dir) = hostile() else { return };
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("a").join("b").join("out");
    for name in ["escape_relative.csv", "escape_absolute.csv"] {
        let file = dir.join(name);
        let output = routerdc(["convert", "--out", out.to_str().unwrap(), file.to_str().unwrap()]);
        assert_bad_input(&output, &file, name);
        assert!(stderr(&output).contains("eval_name"), "{}", stderr(&output));
    }
    assert!(!work.path().join("a").join("escaped.parquet").exists());
    let absolute: Vec<PathBuf> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().contains("routerdc-escaped-"))
        .collect();
    assert!(absolute.is_empty(), "wrote {absolute:?}");

    // A table whose `dataset` column was edited to a path: refused by every reader.
    let tables = work.path().join("tables");
    std::fs::create_dir_all(&tables).unwrap();
    let table = routerdc::table::ScoredTable {
        dataset: "../../evil".into(),
        kind: routerdc::table::MetricKind::Probability,
        models: vec!["a".into(), "b".into()],
        query_ids: vec!["q0".into()],
        texts: vec!["x".into()],
        splits: vec![None],
        cluster_ids: vec![None],
        scores: vec![1.0, 0.0],
        costs: None,
    };
    routerdc::io::write_parquet(&mut table.to_frame().unwrap(), &tables.join("evil.parquet")).unwrap();
    let exported = work.path().join("x").join("y").join("json");
    let output = routerdc(["export", "--tables", tables.to_str().unwrap(), "--out", exported.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("evil.parquet"), "{}", stderr(&output));
    assert!(!work.path().join("x").join("evil.json").exists() && !work.path().join("evil.json").exists());
    let report = work.path().join("report");
    let output = routerdc(["report", "--tables", tables.to_str().unwrap(), "--out", report.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// An encoder folder with the tiny BERT's config and tokenizer and `weights` as its
/// `pytorch_model.bin`.
fn encoder_with_weights(weights: &Path) -> Option<tempfile::TempDir> {
    let tiny = crate::encoder::tiny()?.join("bert");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::copy(weights, dir.path().join("pytorch_model.bin")).unwrap();
    Some(dir)
}

#[test]
fn hostile_state_dicts_are_bad_input_in_bounded_memory() {
    let Some(dir) = hostile() else { return };
    for name in ["stride0.bin", "shared_views.bin", "nested_params.bin"] {
        let Some(encoder) = encoder_with_weights(&dir.join(name)) else { return };
        let output = capped(
            env!("CARGO_BIN_EXE_routerdc-torch"),
            &["hidden", "--encoder", encoder.path().to_str().unwrap()],
            Some(b"[\"a question\"]"),
        );
        assert_bad_input(&output, &encoder.path().join("pytorch_model.bin"), name);
    }
}

#[test]
fn outputs_get_the_usual_file_mode() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("mmlu.json");
    std::fs::write(&file, r#"[{"question": "q", "scores": {"a": 1.0, "b": 0.0}}]"#).unwrap();
    let out = work.path().join("tables");
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_routerdc"))
        .args(["import", "--out", out.to_str().unwrap(), file.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&output);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(out.join("mmlu.parquet")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "mode {mode:o}");
}

#[test]
fn a_folder_in_the_way_leaves_every_output_as_it_was() {
    let work = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in ["arc_challenge", "mmlu"] {
        let file = work.path().join(format!("{name}.json"));
        std::fs::write(&file, r#"[{"question": "q", "scores": {"a": 1.0, "b": 0.0}}]"#).unwrap();
        files.push(file.to_str().unwrap().to_owned());
    }
    let out = work.path().join("tables");
    let mut args = vec!["import".to_owned(), "--out".into(), out.to_str().unwrap().to_owned()];
    args.extend(files.iter().cloned());
    ok(&routerdc(&args));
    let before = std::fs::read(out.join("arc_challenge.parquet")).unwrap();
    // The second table's file cannot be replaced: the first must not be replaced either.
    std::fs::remove_file(out.join("mmlu.parquet")).unwrap();
    std::fs::create_dir(out.join("mmlu.parquet")).unwrap();
    std::fs::write(&files[0], r#"[{"question": "changed", "scores": {"a": 0.0, "b": 1.0}}]"#).unwrap();
    let output = routerdc(&args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("mmlu.parquet"), "{}", stderr(&output));
    assert_eq!(std::fs::read(out.join("arc_challenge.parquet")).unwrap(), before, "a partial output was committed");
    let left: Vec<String> =
        std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|name| !name.starts_with(".routerdc")), "staging left behind: {left:?}");
}
