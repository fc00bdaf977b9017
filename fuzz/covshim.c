/* Edge coverage of a gcc-built extension for libFuzzer (atheris's pip wheel).
 *
 * gcc has no -fsanitize=fuzzer-no-link (inline 8-bit counters); it has
 * -fsanitize-coverage=trace-pc (a call to __sanitizer_cov_trace_pc() at every
 * basic block) and trace-cmp. Link this file (compiled WITHOUT coverage) into
 * the extension built with those flags:
 *
 *   gcc ... -fsanitize-coverage=trace-pc,trace-cmp -c ndintake/core/_bytecheck.c -o bc.o
 *   gcc ... -c fuzz/covshim.c -o shim.o && gcc -shared bc.o shim.o -o ndintake/core/_bytecheck$EXT
 *
 * Each block's return address is hashed and AFL-style (previous ^ current)
 * edges bump one of 64 Ki 8-bit counters, which fuzz_bytecheck.py hands to
 * libFuzzer (__sanitizer_cov_8bit_counters_init, with a made-up PC table).
 * Comparisons are forwarded to libFuzzer's hooks (its table of recent compares
 * feeds the mutator's dictionary). Until ndfuzz_register is called, nothing is
 * recorded but the counters. */
#include <stdint.h>
#include <stddef.h>

#define NCOUNTERS (1u << 16)

static uint8_t counters[NCOUNTERS] __attribute__((aligned(64)));
static uintptr_t pcs[2 * NCOUNTERS];
static uintptr_t prev;

typedef void (*cmp1_f)(uint8_t, uint8_t);
typedef void (*cmp2_f)(uint16_t, uint16_t);
typedef void (*cmp4_f)(uint32_t, uint32_t);
typedef void (*cmp8_f)(uint64_t, uint64_t);
typedef void (*switch_f)(uint64_t, void *);
static cmp1_f f_cmp1, f_ccmp1;
static cmp2_f f_cmp2, f_ccmp2;
static cmp4_f f_cmp4, f_ccmp4;
static cmp8_f f_cmp8, f_ccmp8;
static switch_f f_switch;

void __sanitizer_cov_trace_pc(void) {
    uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    uintptr_t cur = (pc * 0x9E3779B97F4A7C15ull) >> 48;
    counters[(cur ^ prev) & (NCOUNTERS - 1)]++;
    prev = cur >> 1;
}

#define FWD(name, f, T) void name(T a, T b) { if (f) f(a, b); }
FWD(__sanitizer_cov_trace_cmp1, f_cmp1, uint8_t)
FWD(__sanitizer_cov_trace_cmp2, f_cmp2, uint16_t)
FWD(__sanitizer_cov_trace_cmp4, f_cmp4, uint32_t)
FWD(__sanitizer_cov_trace_cmp8, f_cmp8, uint64_t)
FWD(__sanitizer_cov_trace_const_cmp1, f_ccmp1, uint8_t)
FWD(__sanitizer_cov_trace_const_cmp2, f_ccmp2, uint16_t)
FWD(__sanitizer_cov_trace_const_cmp4, f_ccmp4, uint32_t)
FWD(__sanitizer_cov_trace_const_cmp8, f_ccmp8, uint64_t)
void __sanitizer_cov_trace_switch(uint64_t v, void *cases) { if (f_switch) f_switch(v, cases); }
/* gcc also emits these with trace-cmp; libFuzzer's wheel hook for floats is absent */
void __sanitizer_cov_trace_cmpf(float a, float b) { (void)a; (void)b; }
void __sanitizer_cov_trace_cmpd(double a, double b) { (void)a; (void)b; }

/* hooks: the addresses of libFuzzer's __sanitizer_cov_8bit_counters_init,
 * __sanitizer_cov_pcs_init, trace_cmp1/2/4/8, trace_const_cmp1/2/4/8 and
 * trace_switch, in that order. Returns the number of counters. */
int ndfuzz_register(void **hooks) {
    void (*init)(uint8_t *, uint8_t *) = (void (*)(uint8_t *, uint8_t *))hooks[0];
    void (*pcs_init)(const uintptr_t *, const uintptr_t *) = (void (*)(const uintptr_t *, const uintptr_t *))hooks[1];
    for (size_t i = 0; i < NCOUNTERS; i++) {
        pcs[2 * i] = (uintptr_t)&counters[i];
        pcs[2 * i + 1] = 0;
    }
    init(counters, counters + NCOUNTERS);
    pcs_init(pcs, pcs + 2 * NCOUNTERS);
    f_cmp1 = (cmp1_f)hooks[2]; f_cmp2 = (cmp2_f)hooks[3]; f_cmp4 = (cmp4_f)hooks[4]; f_cmp8 = (cmp8_f)hooks[5];
    f_ccmp1 = (cmp1_f)hooks[6]; f_ccmp2 = (cmp2_f)hooks[7]; f_ccmp4 = (cmp4_f)hooks[8]; f_ccmp8 = (cmp8_f)hooks[9];
    f_switch = (switch_f)hooks[10];
    return (int)NCOUNTERS;
}
