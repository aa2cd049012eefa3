//! Cost operating points: a router's recorded training costs, the routing-time penalty
//! (`route --cost-rate`, `report --route-cost-rate`: the same choices), the λ sweep in
//! `cost_quality.*`, and the usage errors.

use std::path::Path;
use std::process::Output;

use routerdc::table::{MetricKind, ScoredTable};

use crate::util::{ok, read_csv, routerdc_with_env, stderr};

/// Three topics, each answered best by one LLM; the LLMs cost 1.0, 0.5 and 0.1 per query.
fn topic_table(dataset: &str, reworded: bool) -> ScoredTable {
    let topics = [
        ["How do I solve a quadratic equation?", "What is the derivative of x squared?", "Factor x^2 - 1."],
        [
            "Who was the first emperor of Rome?",
            "When did the Second World War end?",
            "What caused the French Revolution?",
        ],
        ["Write a haiku about autumn leaves.", "Compose a sonnet about the sea.", "Give me a limerick about a cat."],
    ];
    let (mut texts, mut scores, mut costs) = (Vec::new(), Vec::new(), Vec::new());
    for (best, questions) in topics.iter().enumerate() {
        for question in questions {
            texts.push(if reworded {
                format!("Please tell me: {}", question.to_lowercase())
            } else {
                (*question).into()
            });
            scores.extend((0..3).map(|llm| if llm == best { 1.0 } else { 0.0 }));
            costs.extend([1.0, 0.5, 0.1]);
        }
    }
    let n = texts.len();
    ScoredTable {
        dataset: dataset.into(),
        kind: MetricKind::MultiAttempt,
        models: vec!["llm-a".into(), "llm-b".into(), "llm-c".into()],
        query_ids: (0..n).map(|i| format!("q{i}")).collect(),
        texts,
        splits: vec![None; n],
        cluster_ids: vec![None; n],
        scores,
        costs: Some(costs),
    }
}

fn routerdc(args: &[&str]) -> Output {
    routerdc_with_env(args.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>(), &[])
}

/// The `llm` column of `route --tables`'s file.
fn routed_llms(dir: &Path, dataset: &str) -> Vec<String> {
    let frame = routerdc::io::read_parquet(&dir.join(format!("{dataset}.parquet"))).unwrap();
    frame.column("llm").unwrap().str().unwrap().iter().map(|v| v.unwrap().to_owned()).collect()
}

#[test]
fn a_cost_penalty_chooses_the_same_in_route_and_report() {
    let temp = tempfile::tempdir().unwrap();
    let (train, test) = (temp.path().join("train"), temp.path().join("test"));
    routerdc::io::write_table(&topic_table("topics_train", false), &train).unwrap();
    routerdc::io::write_table(&topic_table("topics_test", true), &test).unwrap();
    let knn = temp.path().join("knn");
    let s = |path: &Path| path.display().to_string();
    ok(&routerdc(&["train", "--router", "knn", "--k", "2", "--train", &s(&train), "--out", &s(&knn)]));
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(knn.join("router.json")).unwrap()).unwrap();
    let costs: Vec<f64> = serde_json::from_value(file["costs"].clone()).unwrap();
    for (cost, want) in costs.iter().zip([1.0, 0.5, 0.1]) {
        assert!((cost - want).abs() < 1e-12, "the training rows' mean costs: {costs:?}");
    }

    // `route` and `report` of the kNN router on the test tables into `temp/<out>`, with `extra`.
    let (knn_arg, test_arg) = (s(&knn), s(&test));
    let route_into = |out: &str, extra: &[&str]| {
        let out = s(&temp.path().join(out));
        let mut args = vec!["route", "--checkpoint", &knn_arg, "--tables", &test_arg, "--out", &out];
        args.extend_from_slice(extra);
        routerdc(&args)
    };
    let report_into = |out: &str, extra: &[&str]| {
        let out = s(&temp.path().join(out));
        let mut args = vec!["report", "--tables", &test_arg, "--checkpoint", &knn_arg, "--out", &out];
        args.extend_from_slice(extra);
        routerdc(&args)
    };

    // Each test query's two nearest training queries are its topic's: its scores are 1 for its
    // topic's LLM and 0 for the others, less λ × (1.0, 0.5, 0.1).
    let route = |rate: &str, out: &str| {
        ok(&route_into(out, &["--cost-rate", rate]));
        routed_llms(&temp.path().join(out), "topics_test")
    };
    let own = route("0", "r0");
    assert_eq!(own, ["llm-a", "llm-a", "llm-a", "llm-b", "llm-b", "llm-b", "llm-c", "llm-c", "llm-c"]);
    // λ = 1: (0, −0.5, −0.1) and (−1, 0.5, −0.1): each topic keeps its LLM.
    assert_eq!(route("1", "r1"), own);
    // λ = 2: (−1, −1, −0.2) sends llm-a's topic to llm-c; (−2, 0, −0.2) keeps llm-b.
    assert_eq!(route("2", "r2"), ["llm-c", "llm-c", "llm-c", "llm-b", "llm-b", "llm-b", "llm-c", "llm-c", "llm-c"]);
    // λ = 3: llm-b's topic too (1 − 1.5 < −0.3).
    assert!(route("3", "r3").iter().all(|llm| llm == "llm-c"));

    // The report charges the same λ and so routes the same: at λ = 3 the kNN rows are llm-c's.
    let report = |rate: &str, out: &str| {
        ok(&report_into(out, &["--route-cost-rate", rate]));
        read_csv(&temp.path().join(out).join("baselines.csv"))
    };
    let rows = report("3", "report3");
    let row = |router: &str| rows.iter().find(|r| r["router"] == router && r["scope"] == "dataset").unwrap().clone();
    assert_eq!(
        (row("knn")["acc_predict"].clone(), row("knn")["cost"].clone()),
        (row("llm-c")["acc_predict"].clone(), row("llm-c")["cost"].clone())
    );

    // The λ sweep: from the router's own choices (λ = 0) to llm-c for every query, with its AIQ.
    let report_dir = temp.path().join("report3");
    let points = read_csv(&report_dir.join("cost_quality.csv"));
    let sweep: Vec<_> = points.iter().filter(|r| r["router"] == "knn" && !r["lambda"].is_empty()).collect();
    let first = sweep.iter().find(|r| r["lambda"] == "0.0").expect("a point at λ = 0");
    let number = |row: &crate::util::CsvRow, column: &str| row[column].parse::<f64>().unwrap();
    assert!((number(first, "cost") - 1.6 / 3.0).abs() < 1e-12 && number(first, "quality") == 1.0, "{first:?}");
    let last = sweep.last().unwrap();
    assert!((number(last, "quality") - 1.0 / 3.0).abs() < 1e-12, "all on llm-c, one topic of three right: {last:?}");
    let aiq = points.iter().find(|r| r["router"] == "knn" && r["lambda"].is_empty()).expect("the kNN AIQ row");
    let zero = points.iter().find(|r| r["router"] == "zero_router").unwrap();
    assert!(number(aiq, "aiq_paper") > number(zero, "aiq_paper"), "{aiq:?} {zero:?}");
    let markdown = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(markdown.contains("| topics_test | knn |"), "{markdown}");

    // Calibration to a budget between the operating points: λ = 0 costs 1.6/3 per query, past
    // λ = 10/9 llm-a's topic moves to llm-c (cost 0.7/3), past λ = 2.5 every query does (0.1).
    // A budget of 0.3 keeps the middle point: λ in (10/9, 2.5], and `route` then charges it.
    let calibrated = routerdc(&["calibrate", "--router", &s(&knn), "--tables", &s(&test), "--budget", "0.3"]);
    ok(&calibrated);
    let calibration: serde_json::Value =
        serde_json::from_slice(&std::fs::read(knn.join("calibration.json")).unwrap()).unwrap();
    let lambda = calibration["lambda"].as_f64().unwrap();
    assert!(lambda > 10.0 / 9.0 && lambda <= 2.5, "{calibration}");
    assert!((calibration["reached"]["cost"].as_f64().unwrap() - 0.7 / 3.0).abs() < 1e-12, "{calibration}");
    assert_eq!(calibration["target"], serde_json::json!({"budget": 0.3}));
    let charged = temp.path().join("calibrated");
    ok(&route_into("calibrated", &[]));
    assert_eq!(
        routed_llms(&charged, "topics_test"),
        ["llm-c", "llm-c", "llm-c", "llm-b", "llm-b", "llm-b", "llm-c", "llm-c", "llm-c"]
    );
    let calibrated_report = temp.path().join("calibrated_report");
    ok(&report_into("calibrated_report", &[]));
    let markdown = std::fs::read_to_string(calibrated_report.join("report.md")).unwrap();
    assert!(
        markdown.contains("### Calibrated operating points") && markdown.contains("| knn | budget 0.3 |"),
        "{markdown}"
    );
    for (flag, value, says) in [
        ("--budget", "-1", "budget"),
        ("--quality", "1.5", "quality"),
        ("--budget", "0.05", "below the least mean cost"),
    ] {
        let refused = routerdc(&["calibrate", "--router", &s(&knn), "--tables", &s(&test), &format!("{flag}={value}")]);
        assert_eq!(refused.status.code(), Some(2), "{flag} {value}: {}", stderr(&refused));
        assert!(stderr(&refused).contains(says), "{flag} {value}: {}", stderr(&refused));
    }
    std::fs::remove_file(knn.join("calibration.json")).unwrap();
    // A calibration kept elsewhere (`--out`, as a pipeline's calibrate stage writes it) is
    // charged when named: `route --calibration FILE`, `report --calibration NAME=FILE`.
    let elsewhere = temp.path().join("elsewhere");
    ok(&routerdc(&[
        "calibrate",
        "--router",
        &s(&knn),
        "--tables",
        &s(&test),
        "--budget",
        "0.3",
        "--out",
        &s(&elsewhere),
    ]));
    let file = elsewhere.join("calibration.json");
    assert!(!knn.join("calibration.json").exists());
    let charged_elsewhere = temp.path().join("charged_elsewhere");
    ok(&route_into("charged_elsewhere", &["--calibration", &s(&file)]));
    assert_eq!(routed_llms(&charged_elsewhere, "topics_test"), routed_llms(&charged, "topics_test"));
    let named_report = temp.path().join("named_calibration");
    let given = format!("knn={}", file.display());
    ok(&report_into("named_calibration", &["--calibration", &given]));
    let markdown = std::fs::read_to_string(named_report.join("report.md")).unwrap();
    assert!(markdown.contains("| knn | budget 0.3 |"), "{markdown}");
    let stray = format!("nope={}", file.display());
    let refused = report_into("z", &["--calibration", &stray]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("names no router"), "{}", stderr(&refused));

    // Usage errors name the flag: a negative rate, and a rate on a router without costs.
    let refused = route_into("x", &["--cost-rate=-1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("cost_rate") || stderr(&refused).contains("cost-rate"), "{}", stderr(&refused));
    let mut free = topic_table("topics_train", false);
    free.costs = None;
    let free_dir = temp.path().join("free");
    routerdc::io::write_table(&free, &free_dir).unwrap();
    let free_knn = temp.path().join("free_knn");
    ok(&routerdc(&["train", "--router", "knn", "--k", "2", "--train", &s(&free_dir), "--out", &s(&free_knn)]));
    let refused = routerdc(&[
        "report",
        "--tables",
        &s(&test),
        "--checkpoint",
        &s(&free_knn),
        "--route-cost-rate",
        "1",
        "--out",
        &s(&temp.path().join("y")),
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("without costs"), "{}", stderr(&refused));
}
