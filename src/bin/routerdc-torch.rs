//! `routerdc-torch`: the libtorch side of routerdc. `routerdc` runs it for what needs libtorch,
//! and links no libtorch itself, so that its other commands start without loading libtorch
//! (whose static initialisers take about 0.6 s). All code that calls libtorch lives here.
//!
//! `routerdc-torch doctor` prints the libtorch checks of `routerdc doctor` as JSON lines.

use std::process::ExitCode;

use routerdc::doctor::Check;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("doctor") => {
            for check in libtorch_checks() {
                match serde_json::to_string(&check) {
                    Ok(line) => println!("{line}"),
                    Err(error) => eprintln!("routerdc-torch: {error}"),
                }
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("routerdc-torch is run by routerdc; see `routerdc --help`");
            ExitCode::from(2)
        }
    }
}

/// libtorch's version and a computation with it, CUDA and its devices, threads.
fn libtorch_checks() -> Vec<Check> {
    let mut checks = Vec::new();
    let machine_threads = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
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
    checks
}

/// GPU names from `nvidia-smi -L` (libtorch's C API has no device-name call); empty if absent.
fn gpu_names() -> Vec<String> {
    let Ok(output) = std::process::Command::new("nvidia-smi").arg("-L").output() else { return Vec::new() };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            line.split_once(": ").map(|(_, rest)| rest.split(" (UUID").next().unwrap_or(rest).to_owned())
        })
        .collect()
}
