//! `routerdc-torch`: the libtorch side of routerdc. `routerdc` runs it for what needs libtorch,
//! and links no libtorch itself, so that its other commands start without loading libtorch
//! (whose static initialisers take about 0.6 s). All code that calls libtorch lives here.
//!
//! It takes `routerdc`'s command line: `routerdc embed ...` runs `routerdc-torch embed ...`.
//! Besides, `routerdc-torch doctor` prints the libtorch checks of `routerdc doctor` as JSON
//! lines, and the hidden subcommands `hidden`, `losses` and `adamw` serve the parity tests
//! (an encoder's hidden states, the loss terms, AdamW steps).
//!
//! Why a second binary: torch-sys's C++ shim is linked into any binary whose linked code objects
//! call tch, and the linker takes whole codegen units from the library's rlib; so the libtorch
//! code lives in `src/torch/`, compiled only into this binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use routerdc::cli::Command;
use routerdc::doctor::Check;
use routerdc::error::{Error, Result};

#[path = "../torch/mod.rs"]
mod torch;

/// `routerdc`'s command line, plus hidden helper subcommands for the tests.
#[derive(Debug, Parser)]
#[command(name = "routerdc-torch", version)]
struct TorchCli {
    #[command(subcommand)]
    command: TorchCommand,
    /// Print only data and errors: no progress bars or notes.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum TorchCommand {
    #[command(flatten)]
    Routerdc(Command),
    /// An encoder's hidden states for a JSON array of texts on stdin (parity tests).
    #[command(hide = true)]
    Hidden(HiddenArgs),
    /// The router's loss terms and gradients for a case on stdin (loss parity test).
    #[command(hide = true)]
    Losses,
    /// AdamW steps for a case on stdin (optimizer parity test).
    #[command(hide = true)]
    Adamw,
    /// Single-query encoder latency for texts on stdin cut to given lengths (bench/embed/latency.sh).
    #[command(hide = true)]
    Latency(LatencyArgs),
}

#[derive(Debug, clap::Args)]
struct HiddenArgs {
    /// HF model directory or hub id.
    #[arg(long, value_name = "PATH|HUB_ID")]
    encoder: Option<String>,
    #[arg(long, default_value_t = 512)]
    max_length: usize,
    #[arg(long, value_enum, default_value_t = routerdc::hf::tokenize::TruncationSide::Left)]
    truncation: routerdc::hf::tokenize::TruncationSide,
    #[arg(long, value_enum, default_value_t = routerdc::hf::Quantize::None)]
    quantize: routerdc::hf::Quantize,
}

#[derive(Debug, clap::Args)]
struct LatencyArgs {
    /// HF model directory or hub id.
    #[arg(long, value_name = "PATH|HUB_ID")]
    encoder: Option<String>,
    /// Query lengths in tokens (special tokens included); texts are cut on the left to each.
    #[arg(long, value_delimiter = ',', default_value = "20,80,300")]
    tokens: Vec<usize>,
    /// Timed queries per length (after 20 untimed ones).
    #[arg(long, default_value_t = 200)]
    repeats: usize,
    #[arg(long, value_enum, default_value_t = routerdc::hf::Quantize::None)]
    quantize: routerdc::hf::Quantize,
}

fn main() -> ExitCode {
    let cli = TorchCli::parse();
    let quiet = cli.quiet;
    let result = match cli.command {
        TorchCommand::Routerdc(command) => match command {
            Command::Embed(config) => torch::commands::embed::run_embed(&config, quiet),
            Command::Cluster(config) => torch::commands::cluster::run_cluster(&config, quiet),
            Command::Train(config) => torch::commands::train::run_train(&config, quiet),
            Command::Tune(config) => torch::commands::tune::run_tune(&config, quiet),
            Command::Route(config) => torch::commands::route::run_route(&config, quiet),
            Command::Serve(config) => torch::commands::serve::run_serve(&config, quiet),
            Command::Doctor => {
                // `routerdc doctor` reads these lines.
                for check in libtorch_checks() {
                    match serde_json::to_string(&check) {
                        Ok(line) => println!("{line}"),
                        Err(error) => eprintln!("routerdc-torch: {error}"),
                    }
                }
                Ok(())
            }
            _ => {
                eprintln!("routerdc-torch runs only what needs libtorch; use `routerdc` for this command");
                return ExitCode::from(2);
            }
        },
        TorchCommand::Hidden(args) => hidden(&args),
        TorchCommand::Losses => losses(),
        TorchCommand::Adamw => adamw(),
        TorchCommand::Latency(args) => latency(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => routerdc::report_error(&error),
    }
}

/// A JSON value from stdin.
fn read_stdin<T: serde::de::DeserializeOwned>(what: &str) -> Result<T> {
    serde_json::from_reader(std::io::stdin())
        .map_err(|error| Error::input_from(format!("stdin: not {what}"), "", error))
}

/// A tensor's values, row by row, as nested JSON arrays (2-D or 3-D).
fn to_json(tensor: &tch::Tensor) -> Result<serde_json::Value> {
    let shape = tensor.size();
    let flat = Vec::<f32>::try_from(&tensor.to_kind(tch::Kind::Float).contiguous().view(-1))
        .map_err(|source| Error::failed("Failed to read a tensor back", source))?;
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
    Ok(serde_json::Value::Array(rows))
}

/// `hidden --encoder DIR [--max-length N] [--truncation left|right]`: a JSON array of texts on
/// stdin; prints `{"ids": [[..]], "hidden": [[[..]]], "first": [[..]], "mean": [[..]],
/// "embedded": [[..]]}` for the texts as one right-padded batch, on the CPU in float32
/// (`embedded` is `embed`'s first-token path, which computes the last layer for that token only).
fn hidden(args: &HiddenArgs) -> Result<()> {
    use routerdc::hf::Pooling;
    use torch::model::network::{Encoder, pad_batch, pool};
    let files = routerdc::hf::resolve(args.encoder.as_deref())?;
    let mut encoder = Encoder::load(files, tch::Device::Cpu, args.max_length, args.truncation)?;
    encoder.quantize(args.quantize)?;
    let texts: Vec<String> = read_stdin("a JSON array of strings")?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = encoder.tokenizer.encode(&texts)?;
    let batch: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let (input, mask) = pad_batch(&batch, encoder.config.pad_token_id, tch::Device::Cpu);
    let hidden = tch::no_grad(|| encoder.network.forward(&input, &mask, false));
    let first = pool(&hidden, &mask, Pooling::First);
    let mean = pool(&hidden, &mask, Pooling::Mean);
    // What `embed` computes: the last layer only for the first token.
    let embedded = tch::no_grad(|| encoder.network.embed(&input, &mask, Pooling::First, false));
    let out = serde_json::json!({
        "ids": ids, "hidden": to_json(&hidden)?, "first": to_json(&first)?, "mean": to_json(&mean)?,
        "embedded": to_json(&embedded)?,
    });
    println!("{out}");
    Ok(())
}

/// `latency [--tokens 20,80,300] [--repeats N] [--quantize int8]`: a JSON array of texts on
/// stdin; for each length, the texts that reach it, cut to it (left truncation), go through the
/// encoder one at a time on all cores as `serve` runs them (tokenising, the forward pass with
/// the first-token last layer, the vector read back). Prints a JSON line per length with the
/// p50 and p99 in milliseconds.
fn latency(args: &LatencyArgs) -> Result<()> {
    use routerdc::hf::Pooling;
    use routerdc::hf::tokenize::{TextTokenizer, TruncationSide};
    use torch::commands::embed::TorchEmbedder;
    use torch::model::network::Encoder;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    tch::set_num_threads(cores as i32);
    let files = routerdc::hf::resolve(args.encoder.as_deref())?;
    let mut encoder = Encoder::load(files.clone(), tch::Device::Cpu, 512, TruncationSide::Left)?;
    encoder.quantize(args.quantize)?;
    let texts: Vec<String> = read_stdin("a JSON array of strings")?;
    for &tokens in &args.tokens {
        let tokenizer = TextTokenizer::load(&files, tokens, TruncationSide::Left)?;
        let fitting: Vec<&str> = texts
            .iter()
            .map(String::as_str)
            .filter(|text| tokenizer.encode(&[text]).is_ok_and(|ids| ids[0].len() == tokens))
            .collect();
        if fitting.is_empty() {
            return Err(Error::setting("tokens", format!("no text on stdin has {tokens} tokens")));
        }
        let mut times = Vec::with_capacity(args.repeats);
        for round in 0..args.repeats + 20 {
            let text = fitting[round % fitting.len()];
            let started = std::time::Instant::now();
            let ids = tokenizer.encode(&[text])?;
            TorchEmbedder::embed_one(&encoder, Pooling::First, &[ids[0].as_slice()])?;
            if round >= 20 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((q * (times.len() - 1) as f64).round() as usize).min(times.len() - 1)];
        let line = serde_json::json!({
            "tokens": tokens, "texts": fitting.len(), "repeats": times.len(), "threads": cores,
            "quantize": args.quantize, "p50_ms": at(0.5), "p99_ms": at(0.99),
        });
        println!("{line}");
    }
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
    checks.push(mkl_check());
    checks.push(Check::ok(
        "CPU threads",
        format!("libtorch uses {} of the machine's {machine_threads}", tch::get_num_threads()),
    ));
    checks
}

/// The matrix-multiply kernels MKL runs, and whether routerdc's answer to MKL's vendor test is in
/// effect (`torch::mkl`).
fn mkl_check() -> Check {
    let Some(kernels) = torch::mkl::kernels() else {
        return Check::ok("MKL kernels", "this libtorch has no MKL");
    };
    if !torch::mkl::dispatch_is_ours() {
        return Check::failed(
            "MKL kernels",
            format!("{kernels}; MKL's vendor test is its own (its fastest kernels on Intel processors only)"),
            "rebuild with `cargo build --release`: routerdc-torch must export mkl_serv_intel_cpu_true (build.rs)",
        );
    }
    let how = if torch::mkl::vendor_check_lifted() {
        "chosen by the processor's features; ROUTERDC_MKL_INTEL_ONLY=1 restores MKL's Intel-only choice"
    } else {
        "MKL's own choice"
    };
    Check::ok("MKL kernels", format!("{kernels} ({how})"))
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

/// A field of a JSON case, of the type asked for.
fn field<T: serde::de::DeserializeOwned>(case: &serde_json::Value, key: &str) -> Result<T> {
    serde_json::from_value(case[key].clone())
        .map_err(|error| Error::input_from(format!("stdin: field `{key}`"), "", error))
}

/// Rows of floats as a `[n × d]` tensor.
fn matrix(rows: &[Vec<f32>]) -> tch::Tensor {
    let (n, d) = (rows.len() as i64, rows.first().map_or(0, Vec::len) as i64);
    tch::Tensor::from_slice(&rows.concat()).view([n, d])
}

/// `losses` (for the loss parity test): the case of `tests/fixtures/loss_reference.py` on stdin;
/// prints routerdc's loss terms, total and gradients with respect to h and K.
fn losses() -> Result<()> {
    use routerdc::routing::{LlmChoice, PairChoice, Similarity};
    use torch::model::router::{cosine_matrix, orthogonality_loss, sample_llm_loss, sample_sample_loss};
    let case: serde_json::Value = read_stdin("a JSON object")?;
    let h = matrix(&field::<Vec<Vec<f32>>>(&case, "h")?).set_requires_grad(true);
    let k = matrix(&field::<Vec<Vec<f32>>>(&case, "K")?).set_requires_grad(true);
    let number = |key: &str| field::<f64>(&case, key);
    let similarity = field::<Similarity>(&case, "similarity")?;
    let temperature = number("temperature")?;
    let logits = match similarity {
        Similarity::Cosine => cosine_matrix(&h, &k),
        Similarity::Inner => h.matmul(&k.tr()),
    } / temperature;
    let choice = LlmChoice {
        positives: field(&case, "positives")?,
        positive_mask: field(&case, "positive_mask")?,
        negatives: field(&case, "negatives")?,
        negative_excluded: field(&case, "negative_excluded")?,
    };
    let pairs = PairChoice {
        anchors: field(&case, "anchors")?,
        positives: field(&case, "pair_positives")?,
        negatives: field(&case, "pair_negatives")?,
    };
    let (top_k, last_k, negatives) = (number("top_k")? as i64, number("last_k")? as i64, number("H")? as i64);
    let sample_llm = sample_llm_loss(&logits, &choice, top_k, last_k);
    let sample_sample = sample_sample_loss(&h, &pairs, negatives, temperature);
    let orth = orthogonality_loss(&k);
    let total = &sample_llm + &sample_sample * number("cluster_weight")? + &orth * number("orth_weight")?;
    total.backward();
    let out = serde_json::json!({
        "sample_llm": sample_llm.double_value(&[]), "sample_sample": sample_sample.double_value(&[]),
        "orth": orth.double_value(&[]), "total": total.double_value(&[]),
        "grad_h": to_json(&h.grad())?, "grad_K": to_json(&k.grad())?,
    });
    println!("{out}");
    Ok(())
}

/// `adamw` (for the optimizer parity test): `{"params": {name: [[..]]}, "grads": [{name:
/// [[..]]}, ...], "lr": .., "weight_decay": .., "own_lr": {name: lr}}` on stdin (`own_lr`
/// optional: rates of their own, [`AdamW::set_learning_rate`]); applies one AdamW step per entry
/// of `grads` and prints the parameters after each step, `[{name: [[..]]}, ...]`.
fn adamw() -> Result<()> {
    use std::collections::BTreeMap;
    use torch::commands::train::optim::AdamW;
    let case: serde_json::Value = read_stdin("a JSON object")?;
    let params: BTreeMap<String, Vec<Vec<f32>>> = field(&case, "params")?;
    let grads: Vec<BTreeMap<String, Vec<Vec<f32>>>> = field(&case, "grads")?;
    let tensors: Vec<(String, tch::Tensor)> =
        params.iter().map(|(name, rows)| (name.clone(), matrix(rows).set_requires_grad(true))).collect();
    let mut optimizer = AdamW::over(
        tensors.iter().map(|(name, t)| (name.clone(), t.shallow_clone())).collect(),
        field(&case, "lr")?,
        field(&case, "weight_decay")?,
    );
    let own: Option<BTreeMap<String, f64>> = field(&case, "own_lr")?;
    for (name, rate) in own.unwrap_or_default() {
        if !optimizer.set_learning_rate(&name, rate) {
            return Err(Error::input(format!("stdin: `own_lr` names `{name}`, which is not a parameter"), ""));
        }
    }
    let mut steps = Vec::new();
    for step in &grads {
        optimizer.zero_grad();
        for (name, tensor) in &tensors {
            let grad = step.get(name).ok_or_else(|| Error::input(format!("stdin: no gradient for `{name}`"), ""))?;
            // Set the gradient by backpropagating ⟨θ, g⟩, whose gradient with respect to θ is g.
            (tensor * matrix(grad)).sum(tch::Kind::Float).backward();
        }
        optimizer.step();
        let mut after = serde_json::Map::new();
        for (name, tensor) in &tensors {
            after.insert(name.clone(), to_json(&tensor.detach())?);
        }
        steps.push(serde_json::Value::Object(after));
    }
    println!("{}", serde_json::Value::Array(steps));
    Ok(())
}
