//! Link-time settings for libtorch (only when the `train` feature pulls in torch-sys), for the
//! `routerdc-torch` binary: the libtorch side of routerdc.
//!
//! torch-sys passes `-rpath` only to its own C++ shim, so without this the binary fails at start
//! with "libtorch_cpu.so: cannot open shared object file". torch-sys has `links = "tch"`, so a
//! package that depends on it directly sees its `libtorch_lib` as `DEP_TCH_LIBTORCH_LIB`.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // Only `routerdc-torch` (and the tests) link libtorch; `routerdc` has no libtorch code, so the
    // data commands start without loading it (libtorch's static initialisers take about 0.6 s).
    println!("cargo:rustc-link-arg-bin=routerdc-torch=-Wl,-rpath,{dir}");
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
    // src/torch/mkl.rs: MKL's vendor test, answered by routerdc-torch. The dynamic linker finds
    // these definitions before libtorch_cpu.so's own only if the executable exports them; rustc
    // 1.95 exports an executable's `#[no_mangle]` functions already (checked with `nm -D` on a
    // build without this flag), and the flag keeps them exported should that default change.
    for symbol in ["mkl_serv_intel_cpu_true", "mkl_serv_intel_cpu"] {
        println!("cargo:rustc-link-arg-bin=routerdc-torch=-Wl,--export-dynamic-symbol={symbol}");
    }
    println!("cargo:rustc-env=ROUTERDC_LIBTORCH_LIB={dir}");
    compile_int8_shim(Path::new(&dir));
    if let Some(version) = libtorch_version(Path::new(&dir)) {
        println!("cargo:rustc-env=ROUTERDC_LIBTORCH_VERSION={version}");
    }
    // `--as-needed` would drop libtorch_cuda.so (nothing references it by symbol), and then
    // `tch::Cuda::is_available()` is false even on a GPU host. CPU-only libtorch builds lack it.
    if Path::new(&dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bin=routerdc-torch=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// csrc/int8.cpp: libtorch's `quantized::linear_prepack` / `linear_dynamic`, called through the
/// dispatcher, compiled with the flags torch-sys compiles its own shim with.
#[cfg(feature = "train")]
fn compile_int8_shim(lib_dir: &Path) {
    println!("cargo:rerun-if-changed=csrc/int8.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib_dir.parent().expect("libtorch's lib folder has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/int8.cpp")
        .compile("routerdc_int8");
}

#[cfg(not(feature = "train"))]
fn compile_int8_shim(_lib_dir: &Path) {}

/// The version of the libtorch in `lib_dir`: `torch/version.py` of a pip install, or
/// `build-version` of a libtorch zip.
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|line| line.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_owned());
    }
    let text = std::fs::read_to_string(root.join("build-version")).ok()?;
    Some(text.trim().to_owned())
}
