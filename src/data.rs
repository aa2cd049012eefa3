//! `routerdc data fetch`: the RouterDC paper's released datasets (shuhao02/RouterDC,
//! `datasets/`), each file pinned to a commit and checked against its SHA-256 before it is
//! kept. Downloads go through `curl` (nothing to build, proxies and certificates as the system
//! has them); files already present with the right checksum are not downloaded again, so a
//! copy made by hand is checked the same way.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One released file: where it lives in the repository's `datasets/` and what it must hash to.
#[derive(Debug, Clone, Copy)]
pub struct DataFile {
    pub path: &'static str,
    pub commit: &'static str,
    pub bytes: u64,
    pub sha256: &'static str,
}

pub const REPOSITORY: &str = "shuhao02/RouterDC";
const SPLIT2: &str = "dadb87299f65fb8f1c1dddc30967a3907d0132dd";
const ROUTERBENCH: &str = "1963d6874b69c94309ea37a34d7d4cd6f527e7c5";

/// The files whose checksums are pinned (RouterBench splits over 4 MiB are not among them).
pub const FILES: &[DataFile] = &[
    DataFile {
        path: "split2_model7/MATH_prealgebra.json",
        commit: SPLIT2,
        bytes: 441513,
        sha256: "3cb750eaa93bd9989babca64b22e92ad51b0b5c30f6ee11dc539fb949c9cf5be",
    },
    DataFile {
        path: "split2_model7/arc_challenge_test.json",
        commit: SPLIT2,
        bytes: 180874,
        sha256: "7588fd22f8d7e9adb9ec6ff435a0d3612a56b3192dc3f9ace358c2468a10b1f3",
    },
    DataFile {
        path: "split2_model7/arc_challenge_train.json",
        commit: SPLIT2,
        bytes: 439134,
        sha256: "5ec50e9cd61caf0e3f116b48d00996a3d88ee52b3a0f04797cdfde8e21f8b610",
    },
    DataFile {
        path: "split2_model7/cmmlu_test.json",
        commit: SPLIT2,
        bytes: 2764779,
        sha256: "10f175ac68f5163a9572d1d0e203415846264dceb9f56b444a654fff79e19843",
    },
    DataFile {
        path: "split2_model7/cmmlu_train.json",
        commit: SPLIT2,
        bytes: 1611405,
        sha256: "6cc4cdba7f5bf9ca6cbb303bac87efded70d3807c17ecbe54424a74d9410b11e",
    },
    DataFile {
        path: "split2_model7/gsm8k-test.json",
        commit: SPLIT2,
        bytes: 741554,
        sha256: "237ccfe4a613a523e48ac92709ddc1a541674c332f9064899cce2cb1dafac3c9",
    },
    DataFile {
        path: "split2_model7/gsm8k-train.json",
        commit: SPLIT2,
        bytes: 557478,
        sha256: "63528cfd7b1860f03bae35e16d4964fe61d4abd3133386c92b22f433a4d4cd75",
    },
    DataFile {
        path: "split2_model7/humaneval_test.json",
        commit: SPLIT2,
        bytes: 42909,
        sha256: "3744fba4a7953206858f601e61b05c1551ca2fbcfac6b14b46fd19e8735f5f68",
    },
    DataFile {
        path: "split2_model7/humaneval_train.json",
        commit: SPLIT2,
        bytes: 87643,
        sha256: "c98f4160c135bfb2e6ee21bed16e23a8e5700148c3ea6f49092ce64c5a8d8de0",
    },
    DataFile {
        path: "split2_model7/mbpp.json",
        commit: SPLIT2,
        bytes: 242373,
        sha256: "17f2c23297234421e3e683ed5fc18d696cacb80a2d1e7a931ca12fcf52a2f9e7",
    },
    DataFile {
        path: "split2_model7/mmlu_test.json",
        commit: SPLIT2,
        bytes: 3578099,
        sha256: "e560163c00f717a23da5781cf7b76a4050abed0cd75b2244df3fc23d46ea379b",
    },
    DataFile {
        path: "split2_model7/mmlu_train.json",
        commit: SPLIT2,
        bytes: 1705188,
        sha256: "f07315933421304572fde4a2751c131757a7a3913ad5dad302390d4ee00e5d7d",
    },
    DataFile {
        path: "split2_model7_cluster/arc_challenge_train.json",
        commit: SPLIT2,
        bytes: 439134,
        sha256: "5ec50e9cd61caf0e3f116b48d00996a3d88ee52b3a0f04797cdfde8e21f8b610",
    },
    DataFile {
        path: "split2_model7_cluster/cmmlu_train.json",
        commit: SPLIT2,
        bytes: 1611405,
        sha256: "6cc4cdba7f5bf9ca6cbb303bac87efded70d3807c17ecbe54424a74d9410b11e",
    },
    DataFile {
        path: "split2_model7_cluster/gsm8k-train.json",
        commit: SPLIT2,
        bytes: 574478,
        sha256: "467d85f80d296293fdc0dd8be2ade4f0ed51893f227121388e95d211401911ae",
    },
    DataFile {
        path: "split2_model7_cluster/humaneval_train.json",
        commit: SPLIT2,
        bytes: 89598,
        sha256: "644a172e875995dff26f15d58df0374cf63f5295b716a93ecf71f86dd749f0d3",
    },
    DataFile {
        path: "split2_model7_cluster/mmlu_train.json",
        commit: SPLIT2,
        bytes: 1705188,
        sha256: "f07315933421304572fde4a2751c131757a7a3913ad5dad302390d4ee00e5d7d",
    },
    DataFile {
        path: "routerbench_zs/arc_challenge_test.csv",
        commit: ROUTERBENCH,
        bytes: 1102387,
        sha256: "7bffb55faca2e1f9d19f7197c652884780a1e0f7fe14bad5b2b1c6afbe7a6769",
    },
    DataFile {
        path: "routerbench_zs/arc_challenge_train.csv",
        commit: ROUTERBENCH,
        bytes: 2579191,
        sha256: "59e044850520be06f74dd9766b9ab4621d783f7fa5269d7dda118b9abb115d78",
    },
    DataFile {
        path: "routerbench_zs/mbpp_test.csv",
        commit: ROUTERBENCH,
        bytes: 1322291,
        sha256: "156fb843b706b765162d74f5fc4928322be5041791b45bd3e1bd732d998c4032",
    },
    DataFile {
        path: "routerbench_zs/mbpp_train.csv",
        commit: ROUTERBENCH,
        bytes: 3128944,
        sha256: "2a985adc3a3016b5ae4d62229722cdff9ece58aa1338206a6b12e4957304452b",
    },
    DataFile {
        path: "routerbench_cluster/arc_challenge_train.csv",
        commit: ROUTERBENCH,
        bytes: 2541706,
        sha256: "b8a8342a9ec1556a8ebcd723fee6693d88a6d01955afcb4c47e1824c31e31c6a",
    },
    DataFile {
        path: "routerbench_cluster/mbpp_train.csv",
        commit: ROUTERBENCH,
        bytes: 3121211,
        sha256: "b0a0dceb2c2c713a9979d8c4e3fa95574bf0d320b8933668bea95424764777cf",
    },
];

/// Settings of `routerdc data fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchConfig {
    /// Folder for the datasets (`split2_model7/`, ...); point `ROUTERDC_DATA` at it afterwards.
    #[arg(long, value_name = "DIR", default_value = "datasets/routerdc")]
    pub out: PathBuf,
    /// Download from this base URL (`<URL>/<path>`) instead of GitHub at the pinned commits: a
    /// mirror, or a `file://` folder. Also `ROUTERDC_DATA_URL`.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

/// What happened to each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Downloaded,
    AlreadyThere,
}

fn url(config: &FetchConfig, file: &DataFile) -> String {
    let base =
        config.base_url.clone().or_else(|| std::env::var("ROUTERDC_DATA_URL").ok().filter(|url| !url.is_empty()));
    match base {
        Some(base) => format!("{}/{}", base.trim_end_matches('/'), file.path),
        None => format!("https://raw.githubusercontent.com/{REPOSITORY}/{}/datasets/{}", file.commit, file.path),
    }
}

fn sha256_of(path: &Path) -> Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let bytes = crate::io::copy_into(path, &mut hasher)?;
    let digest = hasher.finalize();
    Ok((bytes, digest.iter().map(|byte| format!("{byte:02x}")).collect()))
}

/// Fetch every file of [`FILES`] into `config.out`, checking each; `on_file` hears of each one.
pub fn fetch(config: &FetchConfig, mut on_file: impl FnMut(&DataFile, Fetched)) -> Result<()> {
    for file in FILES {
        let target = config.out.join(file.path);
        if target.is_file() && sha256_of(&target)? == (file.bytes, file.sha256.to_owned()) {
            on_file(file, Fetched::AlreadyThere);
            continue;
        }
        let dir = target.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
        let temp = tempfile::Builder::new()
            .prefix(".routerdc-")
            .suffix(".download")
            .tempfile_in(dir)
            .map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
        let url = url(config, file);
        download(&url, temp.path(), file.bytes)?;
        let (bytes, sha256) = sha256_of(temp.path())?;
        if (bytes, sha256.as_str()) != (file.bytes, file.sha256) {
            return Err(Error::input(
                format!(
                    "`{url}` is not the pinned file: {bytes} bytes with SHA-256 {sha256}, expected {} bytes with {}",
                    file.bytes, file.sha256
                ),
                "the source changed or the download was corrupted; nothing was kept. Try again, or use another `--base-url`",
            ));
        }
        temp.persist(&target).map_err(|error| Error::Write { path: target.clone(), source: error.error })?;
        on_file(file, Fetched::Downloaded);
    }
    Ok(())
}

/// `curl` one URL into `path`, at most `max_bytes` (the file's known size: a larger answer is
/// cut off by curl, not stored); an unreachable host is a clear "offline" error.
fn download(url: &str, path: &Path, max_bytes: u64) -> Result<()> {
    let output = std::process::Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--retry",
            "2",
            "--connect-timeout",
            "20",
            "--max-filesize",
            &max_bytes.to_string(),
            "--output",
        ])
        .arg(path)
        .arg(url)
        .output()
        .map_err(|source| {
            Error::input_from(
                "cannot run `curl`",
                "`routerdc data fetch` downloads with curl: install it (e.g. `apt install curl`)",
                source,
            )
        })?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    // curl's exit codes: 5/6 cannot resolve the proxy/host, 7 cannot connect, 28 timed out.
    if output.status.code() == Some(63) {
        return Err(Error::input(
            format!("`{url}` is larger than the {max_bytes} bytes the file should have; nothing was kept"),
            "the source changed: check the URL (`--base-url`, `ROUTERDC_DATA_URL`)",
        ));
    }
    let offline = matches!(output.status.code(), Some(5 | 6 | 7 | 28));
    Err(Error::input(
        format!("cannot download `{url}`: {said}"),
        if offline {
            format!(
                "this machine looks offline. Elsewhere, run `routerdc data fetch --out DIR` (or copy the `datasets/` folder of github.com/{REPOSITORY}) and bring DIR here: `routerdc data fetch --out DIR` then only checks the files"
            )
        } else {
            "check the URL (`--base-url`, `ROUTERDC_DATA_URL`), or try again later".to_owned()
        },
    ))
}
