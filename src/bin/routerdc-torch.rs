//! `routerdc-torch`: the libtorch side of routerdc. `routerdc` runs it for what needs libtorch,
//! and links no libtorch itself, so that its other commands start without loading libtorch
//! (whose static initialisers take about 0.6 s). All code that calls libtorch lives here.
//!
//! It takes `routerdc`'s command line: `routerdc embed ...` runs `routerdc-torch embed ...`.
//! Besides, `routerdc-torch doctor` prints the libtorch checks of `routerdc doctor` as JSON
//! lines, and `routerdc-torch hidden` (for the parity tests) prints an encoder's hidden states.
//!
//! Why a second binary: torch-sys's C++ shim is linked into any binary whose linked code objects
//! call tch, and the linker takes whole codegen units from the library's rlib; so the libtorch
//! code lives in `src/torch/`, compiled only into this binary.

use std::process::ExitCode;

use clap::Parser;
use routerdc::cli::{Cli, Command};
use routerdc::doctor::Check;

#[path = "../torch/mod.rs"]
mod torch;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("hidden") => match hidden() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => routerdc::report_error(&error),
        },
        Some("losses") => match losses() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => routerdc::report_error(&error),
        },
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
            let cli = Cli::parse();
            let result = match &cli.command {
                Command::Embed(config) => torch::embed::run_embed(config, cli.quiet),
                Command::Cluster(config) => torch::embed::run_cluster(config, cli.quiet),
                Command::Train(config) => torch::train::run_train(config, cli.quiet),
                Command::Route(config) => torch::train::run_route(config, cli.quiet),
                _ => {
                    eprintln!("routerdc-torch runs only what needs libtorch; use `routerdc` for this command");
                    return ExitCode::from(2);
                }
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => routerdc::report_error(&error),
            }
        }
    }
}

/// `hidden --encoder DIR [--max-length N] [--truncation left|right]`: a JSON array of texts on
/// stdin; prints `{"ids": [[..]], "hidden": [[[..]]], "first": [[..]], "mean": [[..]],
/// "embedded": [[..]]}` for the texts as one right-padded batch, on the CPU in float32
/// (`embedded` is `embed`'s first-token path, which computes the last layer for that token only).
fn hidden() -> routerdc::Result<()> {
    use routerdc::encoder::Pooling;
    use routerdc::encoder::tokenize::TruncationSide;
    let args: Vec<String> = std::env::args().skip(2).collect();
    let value = |flag: &str| args.iter().position(|arg| arg == flag).and_then(|i| args.get(i + 1)).cloned();
    let files = routerdc::encoder::resolve(value("--encoder").as_deref())?;
    let max_length = value("--max-length").and_then(|n| n.parse().ok()).unwrap_or(512);
    let side =
        if value("--truncation").as_deref() == Some("right") { TruncationSide::Right } else { TruncationSide::Left };
    let encoder = torch::encoder::Encoder::load(files, tch::Device::Cpu, max_length, side)?;
    let texts: Vec<String> = serde_json::from_reader(std::io::stdin())
        .map_err(|error| routerdc::Error::input(format!("stdin: {error}"), "pass a JSON array of strings"))?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = encoder.tokenizer.encode(&texts)?;
    let batch: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let (input, mask) = torch::encoder::pad_batch(&batch, encoder.config.pad_token_id, tch::Device::Cpu);
    let hidden = tch::no_grad(|| encoder.network.forward(&input, &mask, false));
    let to_json = |tensor: &tch::Tensor| -> serde_json::Value {
        let shape = tensor.size();
        let flat = Vec::<f32>::try_from(&tensor.contiguous().view(-1)).unwrap_or_default();
        let inner: usize = shape[1..].iter().product::<i64>() as usize;
        let rows: Vec<serde_json::Value> = flat
            .chunks(inner.max(1))
            .map(|row| {
                if shape.len() == 3 {
                    serde_json::json!(row.chunks(shape[2] as usize).collect::<Vec<_>>())
                } else {
                    serde_json::json!(row)
                }
            })
            .collect();
        serde_json::Value::Array(rows)
    };
    let first = torch::encoder::pool(&hidden, &mask, Pooling::First);
    let mean = torch::encoder::pool(&hidden, &mask, Pooling::Mean);
    // What `embed` computes: the last layer only for the first token.
    let embedded = tch::no_grad(|| encoder.network.embed(&input, &mask, Pooling::First, false));
    let out = serde_json::json!({
        "ids": ids, "hidden": to_json(&hidden), "first": to_json(&first), "mean": to_json(&mean),
        "embedded": to_json(&embedded),
    });
    println!("{out}");
    Ok(())
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

/// `losses` (for the loss parity test): the case of `tests/fixtures/loss_reference.py` on stdin;
/// prints routerdc's loss terms, total and gradients with respect to h and K.
fn losses() -> routerdc::Result<()> {
    use routerdc::stages::train::{LlmChoice, PairChoice, Similarity};
    use tch::{Kind, Tensor};
    let case: serde_json::Value = serde_json::from_reader(std::io::stdin())
        .map_err(|error| routerdc::Error::input(format!("stdin: {error}"), ""))?;
    let matrix = |key: &str| -> Tensor {
        let rows: Vec<Vec<f32>> = serde_json::from_value(case[key].clone()).unwrap_or_default();
        let (n, d) = (rows.len() as i64, rows.first().map_or(0, Vec::len) as i64);
        Tensor::from_slice(&rows.concat()).view([n, d])
    };
    let ints = |key: &str| -> Vec<i64> { serde_json::from_value(case[key].clone()).unwrap_or_default() };
    let number = |key: &str| case[key].as_f64().unwrap_or(0.0);
    let h = matrix("h").set_requires_grad(true);
    let k = matrix("K").set_requires_grad(true);
    let similarity = if case["similarity"] == "inner" { Similarity::Inner } else { Similarity::Cosine };
    let temperature = number("temperature");
    let logits = match similarity {
        Similarity::Cosine => torch::router::cosine_matrix(&h, &k),
        Similarity::Inner => h.matmul(&k.tr()),
    } / temperature;
    let choice = LlmChoice {
        positives: ints("positives"),
        positive_mask: serde_json::from_value(case["positive_mask"].clone()).unwrap_or_default(),
        negatives: ints("negatives"),
        negative_excluded: serde_json::from_value(case["negative_excluded"].clone()).unwrap_or_default(),
    };
    let pairs =
        PairChoice { anchors: ints("anchors"), positives: ints("pair_positives"), negatives: ints("pair_negatives") };
    let (top_k, last_k, negatives) = (number("top_k") as i64, number("last_k") as i64, number("H") as i64);
    let sample_llm = torch::router::sample_llm_loss(&logits, &choice, top_k, last_k);
    let sample_sample = torch::router::sample_sample_loss(&h, &pairs, negatives, temperature);
    let orth = torch::router::orthogonality_loss(&k);
    let total = &sample_llm + &sample_sample * number("cluster_weight") + &orth * number("orth_weight");
    total.backward();
    let grad = |t: &Tensor| -> Vec<Vec<f32>> {
        let g = t.grad().to_kind(Kind::Float);
        let d = g.size()[1] as usize;
        Vec::<f32>::try_from(&g.contiguous().view(-1)).unwrap_or_default().chunks(d).map(<[f32]>::to_vec).collect()
    };
    let out = serde_json::json!({
        "sample_llm": sample_llm.double_value(&[]), "sample_sample": sample_sample.double_value(&[]),
        "orth": orth.double_value(&[]), "total": total.double_value(&[]),
        "grad_h": grad(&h), "grad_K": grad(&k),
    });
    println!("{out}");
    Ok(())
}
