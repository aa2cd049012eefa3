//! Intel MKL's choice of matrix-multiply kernels on processors that are not Intel's.
//!
//! libtorch's x86 builds link MKL statically, and libtorch's float32 matrix products
//! (`addmm`, `bmm`, `matmul`: about two thirds of a training step's time) run MKL's `sgemm`.
//! MKL picks its kernels by the processor's features only when two of its functions,
//! `mkl_serv_intel_cpu_true` and `mkl_serv_intel_cpu`, say the processor is Intel's (they
//! compare the CPUID vendor string with "GenuineIntel"); on an AMD processor it runs its
//! generic AVX2 kernels (`mkl_blas_def_sgemm_kernel_0_zen`) even where the processor has
//! AVX-512. On the 2-core AMD EPYC that BENCHMARKS.md measures (a Zen 5 core), a fine-tuning
//! step with MKL's AVX-512 kernels took 47% less time than with its own choice.
//!
//! libtorch_cpu.so exports both functions and calls them through its procedure linkage table,
//! so definitions in this executable, exported to its dynamic symbol table (build.rs), take
//! their place: the dynamic linker looks in the executable first. MKL then chooses as it does
//! on an Intel processor, by the CPUID feature flags, so a processor without AVX-512 gets the
//! AVX2 kernels and one without AVX2 older ones. Kernels that summed a product in another order
//! would round differently (float32); in that measurement the step losses were equal to the
//! last bit either way.
//!
//! `ROUTERDC_MKL_INTEL_ONLY=1` restores MKL's own vendor check. `routerdc doctor` prints the
//! kernels MKL runs (its version record's processor line).

use std::ffi::{CStr, c_char, c_int};
use std::sync::OnceLock;

/// Whether MKL may choose its kernels by the processor's features on any vendor's processor.
fn any_vendor() -> bool {
    static ANY: OnceLock<bool> = OnceLock::new();
    *ANY.get_or_init(|| std::env::var_os("ROUTERDC_MKL_INTEL_ONLY").is_none_or(|value| value == "0"))
}

/// Whether the CPUID vendor string is "GenuineIntel" (MKL's own test).
fn genuine_intel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let leaf = std::arch::x86_64::__cpuid(0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&leaf.ecx.to_le_bytes());
        &vendor == b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// MKL's "is this an Intel processor" test, answered yes unless `ROUTERDC_MKL_INTEL_ONLY` is set.
#[unsafe(no_mangle)]
pub extern "C" fn mkl_serv_intel_cpu_true() -> c_int {
    c_int::from(any_vendor() || genuine_intel())
}

/// The same test as MKL's kernel dispatcher asks it (MKL caches it beside its reproducibility
/// mode); answered as [`mkl_serv_intel_cpu_true`].
#[unsafe(no_mangle)]
pub extern "C" fn mkl_serv_intel_cpu() -> c_int {
    mkl_serv_intel_cpu_true()
}

/// MKL's version record (`MKLVersion` in mkl_types.h).
#[repr(C)]
struct MklVersion {
    major: c_int,
    minor: c_int,
    update: c_int,
    product_status: *const c_char,
    build: *const c_char,
    processor: *const c_char,
    platform: *const c_char,
}

/// The kernels MKL runs on this processor, as its version record names them (for example
/// "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) …"), or `None` when the libtorch
/// in use has no MKL (ARM builds, say).
pub fn kernels() -> Option<String> {
    // Looked up at run time: a libtorch without MKL lacks the symbol, and linking it would fail.
    let symbol = lookup(c"mkl_serv_get_version")?;
    // SAFETY: `mkl_serv_get_version` is `void (MKLVersion*)`, and it fills the record with
    // pointers to static strings.
    let get_version: unsafe extern "C" fn(*mut MklVersion) = unsafe { std::mem::transmute(symbol) };
    let mut version = MklVersion {
        major: 0,
        minor: 0,
        update: 0,
        product_status: std::ptr::null(),
        build: std::ptr::null(),
        processor: std::ptr::null(),
        platform: std::ptr::null(),
    };
    // SAFETY: as above; `version` is a valid, writable MKLVersion.
    unsafe { get_version(&mut version) };
    if version.processor.is_null() {
        return None;
    }
    // SAFETY: MKL set `processor` to a NUL-terminated static string.
    let processor = unsafe { CStr::from_ptr(version.processor) }.to_string_lossy().into_owned();
    Some(format!("MKL {}.{}: {processor}", version.major, version.update))
}

/// Whether MKL's answer comes from this executable (the symbols were exported, build.rs), so
/// that the vendor setting above is in effect.
pub fn dispatch_is_ours() -> bool {
    lookup(c"mkl_serv_intel_cpu_true")
        .is_some_and(|symbol| std::ptr::eq(symbol.cast_const().cast::<()>(), mkl_serv_intel_cpu_true as *const ()))
}

/// The address the dynamic linker gives `name` in this process (the executable first, then the
/// loaded libraries), or `None` when nothing defines it.
fn lookup(name: &CStr) -> Option<*mut std::ffi::c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the loaded objects'
    // symbol tables.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!symbol.is_null()).then_some(symbol)
}

/// Whether the processor is not Intel's and MKL runs its feature-chosen kernels on it.
pub fn vendor_check_lifted() -> bool {
    !genuine_intel() && any_vendor() && dispatch_is_ours()
}
