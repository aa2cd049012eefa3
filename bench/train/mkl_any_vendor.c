/* MKL's vendor test answered "Intel" for a Python process, as routerdc-torch answers it for
 * itself (src/torch/mkl.rs): MKL then picks its kernels by the processor's features, AVX-512
 * on an AMD processor that has it. For the reference-style loop in bench/train/paper.sh:
 *   cc -shared -fPIC -O2 -o /tmp/mkl_any_vendor.so bench/train/mkl_any_vendor.c
 *   LD_PRELOAD=/tmp/mkl_any_vendor.so python bench/train/reference_loop.py ... */
int mkl_serv_intel_cpu_true(void) { return 1; }
int mkl_serv_intel_cpu(void) { return 1; }
