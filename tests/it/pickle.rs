//! The non-executing pickle reader on DataFrames written by real pandas (the venv's, through
//! `ROUTERDC_PYTHON`, which `scripts/setup.sh` sets), protocols 2 to 5.

use std::path::PathBuf;
use std::process::Command;

use routerdc::io::pickle::pandas::{Budget, ColumnData, read_frame};
use routerdc::io::pickle::vm::parse;

use crate::util::python;

#[test]
fn dataframes_of_every_protocol_read_back_exactly() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_pickles.py");
    let status = Command::new(python).arg(script).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    let names: Vec<String> = serde_json::from_value(expected["columns"].clone()).unwrap();
    for protocol in 2..=5 {
        let bytes = std::fs::read(dir.path().join(format!("frame_p{protocol}.pkl"))).unwrap();
        let pickle = parse(&bytes).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        let frame = read_frame(&pickle.root, &mut Budget::for_input(bytes.len(), 4))
            .unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        let got: Vec<&String> = frame.columns.iter().map(|(name, _)| name).collect();
        assert_eq!(got, names.iter().collect::<Vec<_>>(), "protocol {protocol}");
        for (name, column) in &frame.columns {
            let want = expected["values"][name].as_array().unwrap();
            let as_json: Vec<serde_json::Value> = match column {
                ColumnData::Float(v) => {
                    v.iter().map(|x| if x.is_nan() { serde_json::Value::Null } else { (*x).into() }).collect()
                }
                ColumnData::Int(v) => v.iter().map(|&x| x.into()).collect(),
                ColumnData::Bool(v) => v.iter().map(|&x| x.into()).collect(),
                ColumnData::Text(v) => {
                    v.iter().map(|x| x.clone().map_or(serde_json::Value::Null, Into::into)).collect()
                }
            };
            assert_eq!(&as_json, want, "protocol {protocol}, column `{name}` (pandas {})", expected["pandas"]);
        }
    }
}

#[test]
fn a_pickle_that_calls_anything_else_is_refused() {
    // A DataFrame-shaped pickle whose manager is `os.system`: parsed, never run, and refused.
    let data =
        b"\x80\x02cpandas.core.frame\nDataFrame\n)\x81}(X\x04\x00\x00\x00_mgrcos\nsystem\nX\x02\x00\x00\x00id\x85Rub.";
    let pickle = parse(data).unwrap();
    let error = read_frame(&pickle.root, &mut Budget::for_input(data.len(), 4)).unwrap_err();
    assert!(error.contains("`os.system`"), "{error}");
}
