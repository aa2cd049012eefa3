//! `routerdc convert` on RouterBench-shaped CSV and pandas pickles written by real pandas (the
//! venv's, through `ROUTERDC_PYTHON`), on the paper's RouterBench CSV split, and on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{find, number, ok, python, read_csv, reference_data, routerdc, stderr};

fn find_in<'a>(rows: &'a [crate::util::CsvRow], dataset: &str, router: &str) -> &'a crate::util::CsvRow {
    rows.iter()
        .find(|r| r["dataset"] == dataset && r["router"] == router)
        .unwrap_or_else(|| panic!("no {dataset} {router}"))
}

fn make_frames(python: &Path, dir: &Path) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_routerbench.py");
    assert!(Command::new(python).arg(script).arg(dir).status().unwrap().success());
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap()
}

fn convert(out: &Path, inputs: &[&Path]) -> std::process::Output {
    let mut args = vec!["convert".to_owned(), "--out".into(), out.display().to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    routerdc(&args)
}

#[test]
fn csv_and_every_pickle_protocol_give_identical_tables() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let expected = make_frames(&python, dir.path());
    let from_csv = dir.path().join("csv");
    let output = convert(&from_csv, &[&dir.path().join("routerbench.csv")]);
    ok(&output);
    assert!(
        stderr(&output).contains("read 12 rows: dropped 1 with a missing quality value, saw 1 repeated sample ids"),
        "{}",
        stderr(&output)
    );
    let tables = ["grade-school-math", "mmlu-anatomy"];
    let read = |dir: &Path, name: &str| routerdc::io::read_table(&dir.join(format!("{name}.parquet"))).unwrap().table;
    for protocol in 2..=5 {
        let from_pickle = dir.path().join(format!("p{protocol}"));
        ok(&convert(&from_pickle, &[&dir.path().join(format!("routerbench_p{protocol}.pkl"))]));
        for name in tables {
            assert_eq!(read(&from_pickle, name), read(&from_csv, name), "protocol {protocol}, table {name}");
        }
    }
    let mmlu = read(&from_csv, "mmlu-anatomy");
    assert_eq!(mmlu.query_ids[4..6], ["mmlu-anatomy.val.4", "mmlu-anatomy.val.4#2"]);
    assert_eq!(mmlu.texts[0], "Question 0: it's \"quoted\"\nÉtape 0 → answer?\n");
    assert_eq!(mmlu.models, ["gpt-4-1106-preview", "mistralai/mistral-7b-chat", "claude-v2"]);

    // The report's quality and cost per LLM are the means pandas computes over the kept rows.
    let report = dir.path().join("report");
    ok(&routerdc(["report", "--tables", from_csv.to_str().unwrap(), "--out", report.to_str().unwrap()]));
    let rows = read_csv(&report.join("baselines.csv"));
    // Tables with costs also get the cost-quality analysis: each LLM's point and flags, and one
    // zero-router row with AIQ in both forms per table.
    let points = read_csv(&report.join("cost_quality.csv"));
    for table in expected["tables"].as_object().unwrap().keys() {
        let zero = find_in(&points, table, "zero_router");
        let (paper, code) = (number(zero, "aiq_paper"), number(zero, "aiq_code"));
        assert!((0.0..=1.0).contains(&paper) && (0.0..=1.0).contains(&code), "{table}: {paper} {code}");
        let llm = find_in(&points, table, "claude-v2");
        assert!((number(llm, "quality") - number(find(&rows, table, "claude-v2"), "acc_predict")).abs() < 1e-15);
        assert!(points.iter().any(|p| p["dataset"] == *table && p["pareto"] == "true"), "{table}: no Pareto LLM");
        // The cost-quality figure, as SVG (every model, both oracles, the hull) and PNG.
        let svg = std::fs::read_to_string(report.join(format!("cost_quality_{table}.svg"))).unwrap();
        for label in
            ["gpt-4-1106-preview", "mistralai/mistral-7b-chat", "claude-v2", "oracle", "oracle_strict", "zero router"]
        {
            assert!(svg.contains(label), "{table}: the figure lacks `{label}`");
        }
        assert!(svg.contains("<polyline"), "{table}: the figure has no hull line");
        let png = std::fs::read(report.join(format!("cost_quality_{table}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{table}: not a drawn PNG");
    }
    for (table, models) in expected["tables"].as_object().unwrap() {
        for (model, want) in models.as_object().unwrap() {
            let row = find(&rows, table, model);
            assert!((number(row, "acc_predict") - want["quality"].as_f64().unwrap()).abs() < 1e-12, "{table} {model}");
            assert!((number(row, "cost") - want["cost"].as_f64().unwrap()).abs() < 1e-15, "{table} {model}");
        }
    }
}

#[test]
fn the_papers_routerbench_split_converts_with_its_costs() {
    let Some(data) = reference_data() else { return };
    let Some(python) = python() else { return };
    let csv = data.join("routerbench_zs/arc_challenge_test.csv");
    let temp = tempfile::tempdir().unwrap();
    let output = convert(temp.path(), &[&csv]);
    ok(&output);
    // Independent count with Python's csv module.
    let script = r#"
import csv, sys, json
csv.field_size_limit(10**9)
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
models = [c for c in rows[0] if c and "|" not in c and c not in ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")]
kept = [r for r in rows if all(r[m] != "" for m in models)]
ids = [r["sample_id"] for r in rows]
print(json.dumps({"rows": len(rows), "kept": len(kept), "repeats": len(ids) - len(set(ids)),
                  "cost": {m: sum(float(r[m + "|total_cost"]) for r in kept) / len(kept) for m in models}}))
"#;
    let out = Command::new(python).arg("-c").arg(script).arg(&csv).output().unwrap();
    let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = stderr(&output);
    let dropped = want["rows"].as_u64().unwrap() - want["kept"].as_u64().unwrap();
    assert!(message.contains(&format!("read {} rows: dropped {dropped} with", want["rows"])), "{message}");
    assert!(message.contains(&format!("saw {} repeated", want["repeats"])), "{message}");
    let table = routerdc::io::read_table(&temp.path().join("arc-challenge.parquet")).unwrap().table;
    assert_eq!(table.n_queries() as u64, want["kept"].as_u64().unwrap());
    assert!(table.splits.iter().all(|s| *s == Some(routerdc::table::Split::Test)));
    let costs = table.costs.as_ref().unwrap();
    for (index, model) in table.models.iter().enumerate() {
        let mean = (0..table.n_queries()).map(|row| costs[row * table.n_models() + index]).sum::<f64>()
            / table.n_queries() as f64;
        assert!((mean - want["cost"][model].as_f64().unwrap()).abs() < 1e-15, "{model}");
    }
}

#[test]
fn bad_routerbench_files_are_refused_and_nothing_is_written() {
    let header = "sample_id,prompt,eval_name,m1,m1|total_cost,m2,m2|total_cost\n";
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "no cost column",
            b"sample_id,prompt,eval_name,m1,m1|total_cost,m2\na,\"['q']\",mmlu,1,0.1,0\n".to_vec(),
            "model `m2` has no `m2|total_cost` column",
        ),
        (
            "text quality",
            format!("{header}a,\"['q']\",mmlu,yes,0.1,0,0.2\n").into_bytes(),
            "column `m1` holds `yes`, not a number",
        ),
        ("quality above 1", format!("{header}a,\"['q']\",mmlu,3,0.1,0,0.2\n").into_bytes(), "outside [0, 1]"),
        ("truncated pickle", b"\x80\x04\x95".to_vec(), "not a readable pickle"),
        ("empty", Vec::new(), "is empty"),
    ];
    for (name, text, expected) in cases {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("input.csv");
        std::fs::write(&file, &text).unwrap();
        let out = temp.path().join("tables");
        let output = convert(&out, &[&file]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {message}");
        assert!(message.contains(expected), "{name}: expected `{expected}` in\n{message}");
        assert!(!out.exists(), "{name}: wrote output");
    }
    // A pickle naming any other global (here `os.system`) is parsed, never run, and refused.
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("evil.pkl");
    std::fs::write(
        &file,
        b"\x80\x02cpandas.core.frame\nDataFrame\n)\x81}(X\x04\x00\x00\x00_mgrcos\nsystem\nX\x02\x00\x00\x00id\x85Rub.",
    )
    .unwrap();
    let output = convert(&temp.path().join("tables"), &[&file]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("`os.system`"), "{}", stderr(&output));
}
