/* fp32-accurate linear layers on Intel AMX: y = x w^T + b from three bf16 tile products with fp32 accumulation.
 *
 * Why: on a CPU with AMX-BF16, bf16 products run ~6x faster than fp32 ones, but the precision policy keeps the
 * encoders and the nucleotide-resolution decoder in fp32 when scoring (bf16 moved boundaries and SNV scores).
 * Each fp32 value v is split into v_hi = bf16(v) and v_lo = bf16(v - v_hi), which together carry 16 of its 24
 * significand bits, and x w^T = x_hi w_hi + x_lo w_hi + x_hi w_lo up to the dropped x_lo w_lo and the bits below
 * v_lo: a relative error of ~1e-5 per product (fp32's own is ~1e-7, bf16's ~4e-3), summed in fp32 tiles.
 *
 * Layouts: x (rows, k) fp32 contiguous; the weight (n, k) is packed once by amx_pack_weight into
 * [part: hi, lo][n block of 16][k block of 32][16 k pairs][16 outputs][2], the layout a B tile reads (pairs of
 * consecutive k side by side); the output goes where `Outputs` below says (y (rows, n) fp32 contiguous for a plain
 * linear layer). Rows are taken 32 at a time (two A tiles), outputs
 * 32 at a time (two B tiles), so four 16 x 16 accumulator tiles use all eight tile registers with the operands.
 * Python (cpu_linear.py) compiles this file on its own, so that a compiler or assembler without AMX costs only
 * this path, and splits the row blocks over threads.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define LINEAR_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define KB 32 /* k per tile: 16 pairs of bf16 */
#define NB 16 /* outputs per B tile */
#define MB 16 /* rows per A tile */

static inline uint16_t bf16_round(float v) { /* round to nearest even; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Elements of the packed weight (uint16) for an (n, k) weight: both parts, padded to whole tiles. */
int64_t amx_packed_size(int64_t n, int64_t k) { return 2 * round_up(n, 2 * NB) * round_up(k, KB); }

/* w (n, k) fp32 -> packed (amx_packed_size elements), zero where padded. */
void amx_pack_weight(const float *w, int64_t n, int64_t k, uint16_t *packed) {
    const int64_t n_pad = round_up(n, 2 * NB), k_pad = round_up(k, KB), part = n_pad * k_pad;
    memset(packed, 0, (size_t)(2 * part) * sizeof *packed);
    for (int64_t o = 0; o < n; ++o)
        for (int64_t i = 0; i < k; ++i) {
            const float v = w[o * k + i];
            const uint16_t hi = bf16_round(v), lo = bf16_round(v - bf16_value(hi));
            /* block (o / NB, i / KB), then row (i % KB) / 2, column o % NB, slot i % 2 */
            const int64_t at = ((o / NB) * (k_pad / KB) + i / KB) * (KB * NB) + ((i % KB) / 2) * (2 * NB)
                               + (o % NB) * 2 + i % 2;
            packed[at] = hi;
            packed[part + at] = lo;
        }
}

#ifdef LINEAR_AMX
/* 0 when this thread may use AMX-BF16 tiles (the CPU has them and AVX512-BF16, and Linux grants the tile state),
 * else an error code: 1 no AMX-BF16 or AVX512-BF16 in CPUID, 2 the kernel refused the tile state
 * (ARCH_REQ_XCOMP_PERM). */
int amx_enable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24)))
        return 1;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) /* AVX512-BF16, for split_rows */
        return 1;
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0)
        return 2;
    return 0;
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

/* x rows [r0, r0 + count) (count <= 32) as bf16 hi and lo parts, (32, k_pad) each, zero where padded; 16 values
 * at a time with AVX512-BF16's rounding conversion (round to nearest even, as bf16_round). */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void split_rows(
    const float *x, int64_t k, int64_t k_pad, int64_t r0, int64_t count, uint16_t *hi, uint16_t *lo) {
    for (int64_t r = 0; r < 2 * MB; ++r) {
        uint16_t *h = hi + r * k_pad, *l = lo + r * k_pad;
        if (r >= count) {
            memset(h, 0, (size_t)k_pad * sizeof *h);
            memset(l, 0, (size_t)k_pad * sizeof *l);
            continue;
        }
        const float *src = x + (r0 + r) * k;
        for (int64_t i = 0; i < k_pad; i += 16) { /* k_pad is a multiple of 32: whole vectors, zero past k */
            const __mmask16 keep = i + 16 <= k ? (__mmask16)0xffff : i >= k ? 0 : (__mmask16)((1u << (k - i)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(keep, src + i);
            const __m256i top = (__m256i)_mm512_cvtneps_pbh(v);
            const __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(top), 16));
            _mm256_storeu_si256((__m256i *)(h + i), top);
            _mm256_storeu_si256((__m256i *)(l + i), (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, back)));
        }
    }
}

/* Where output (row r, column c) goes: columns below n1 to y (row stride ldy, with `gap` spare rows before each
 * batch row's `batch_rows` rows: Mamba2's conv input, which keeps its history rows there), the others to y2 (row
 * stride ld2, column c - n1). A plain y = x w^T is n1 = n, gap = 0, ldy = n. */
typedef struct {
    float *y, *y2;
    int64_t ldy, batch_rows, gap, n1, ld2;
} Outputs;

static inline float *output_at(const Outputs *out, int64_t r, int64_t c) {
    if (c < out->n1)
        return out->y + (r + (r / out->batch_rows + 1) * out->gap) * out->ldy + c;
    return out->y2 + r * out->ld2 + (c - out->n1);
}

/* Whether the 16 x 16 tile at (r0, c0) lies whole in one destination with evenly spaced rows: it can be stored
 * there directly. */
static inline int whole_tile(const Outputs *out, int64_t r0, int64_t c0, int64_t rows_left, int64_t n) {
    if (rows_left < MB || c0 + NB > n)
        return 0;
    if (c0 < out->n1 && c0 + NB > out->n1)
        return 0;
    return c0 >= out->n1 || out->gap == 0 || r0 / out->batch_rows == (r0 + MB - 1) / out->batch_rows;
}

/* tiles 0-3 += (A rows 0-15, 16-31 in tiles 4, 5) x (B outputs 0-15, 16-31 in tiles 6, 7); tile numbers must be
 * literals */
#define FOUR_PRODUCTS()                                                                                         \
    do {                                                                                                        \
        _tile_dpbf16ps(0, 4, 6);                                                                                \
        _tile_dpbf16ps(1, 4, 7);                                                                                \
        _tile_dpbf16ps(2, 5, 6);                                                                                \
        _tile_dpbf16ps(3, 5, 7);                                                                                \
    } while (0)

/* Output rows [row_begin, row_end) of x w^T + bias (bias may be NULL), laid out as `Outputs` says; row_begin a
 * multiple of 32. Returns 0, or 3 when its buffers cannot be allocated. */
__attribute__((target("amx-tile,amx-bf16"))) int amx_linear(const float *x, int64_t rows, int64_t k,
                                                            const uint16_t *packed, int64_t n, const float *bias,
                                                            float *y, int64_t ldy, int64_t batch_rows, int64_t gap,
                                                            int64_t n1, float *y2, int64_t ld2, int64_t row_begin,
                                                            int64_t row_end) {
    const Outputs out = {y, y2, ldy, batch_rows > 0 ? batch_rows : rows, gap, n1, ld2};
    const int64_t n_pad = round_up(n, 2 * NB), k_pad = round_up(k, KB), kblocks = k_pad / KB;
    const uint16_t *w_hi = packed, *w_lo = packed + n_pad * k_pad;
    uint16_t *a_hi = aligned_alloc(64, (size_t)(4 * MB * k_pad) * sizeof(uint16_t));
    float *bias_pad = aligned_alloc(64, (size_t)n_pad * sizeof(float));
    if (a_hi == NULL || bias_pad == NULL) {
        free(a_hi);
        free(bias_pad);
        return 3;
    }
    uint16_t *a_lo = a_hi + 2 * MB * k_pad;
    for (int64_t o = 0; o < n_pad; ++o)
        bias_pad[o] = bias != NULL && o < n ? bias[o] : 0.0f;
    float tail[2 * MB][2 * NB] __attribute__((aligned(64)));

    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; ++t) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    const long a_stride = (long)(k_pad * sizeof(uint16_t));
    for (int64_t r0 = row_begin; r0 < row_end; r0 += 2 * MB) {
        const int64_t count = row_end - r0 < 2 * MB ? row_end - r0 : 2 * MB;
        split_rows(x, k, k_pad, r0, count, a_hi, a_lo);
        __asm__ __volatile__("" ::: "memory"); /* the tile loads below read what split_rows wrote */
        for (int64_t o0 = 0; o0 < n_pad; o0 += 2 * NB) {
            /* tiles 0-3 accumulate rows (0-15, 16-31) x outputs (0-15, 16-31), starting from the bias */
            _tile_loadd(0, bias_pad + o0, 0);
            _tile_loadd(1, bias_pad + o0 + NB, 0);
            _tile_loadd(2, bias_pad + o0, 0);
            _tile_loadd(3, bias_pad + o0 + NB, 0);
            const int64_t block = (o0 / NB) * kblocks * (KB * NB); /* the first of the two output blocks */
            const uint16_t *b_hi = w_hi + block, *b_lo = w_lo + block;
            for (int64_t kb = 0; kb < kblocks; ++kb) {
                const uint16_t *ah = a_hi + kb * KB, *al = a_lo + kb * KB;
                const uint16_t *bh = b_hi + kb * (KB * NB), *bl = b_lo + kb * (KB * NB);
                /* the small terms first: x_lo w_hi, then x_hi w_hi, then x_hi w_lo */
                _tile_loadd(4, al, a_stride);
                _tile_loadd(5, al + MB * k_pad, a_stride);
                _tile_loadd(6, bh, 64);
                _tile_loadd(7, bh + kblocks * (KB * NB), 64);
                FOUR_PRODUCTS();
                _tile_loadd(4, ah, a_stride);
                _tile_loadd(5, ah + MB * k_pad, a_stride);
                FOUR_PRODUCTS();
                _tile_loadd(6, bl, 64);
                _tile_loadd(7, bl + kblocks * (KB * NB), 64);
                FOUR_PRODUCTS();
            }
            /* whole tiles straight to where they belong; the last rows or outputs, and tiles that straddle a batch
             * row or the two destinations, through a buffer, element rows by element rows */
            const int w00 = whole_tile(&out, r0, o0, count, n), w01 = whole_tile(&out, r0, o0 + NB, count, n);
            const int w10 = whole_tile(&out, r0 + MB, o0, count - MB, n);
            const int w11 = whole_tile(&out, r0 + MB, o0 + NB, count - MB, n);
#define STORE(t, rr, cc, whole)                                                                                \
    if (whole) {                                                                                               \
        float *at = output_at(&out, r0 + (rr), o0 + (cc));                                                     \
        _tile_stored(t, at, (long)(((cc) + o0 < out.n1 ? out.ldy : out.ld2) * sizeof(float)));                 \
    } else {                                                                                                   \
        _tile_stored(t, &tail[rr][cc], 2 * NB * sizeof(float));                                                \
    }
            STORE(0, 0, 0, w00)
            STORE(1, 0, NB, w01)
            STORE(2, MB, 0, w10)
            STORE(3, MB, NB, w11)
#undef STORE
            if (!(w00 && w01 && w10 && w11))
                for (int64_t r = 0; r < count; ++r) {
                    const int whole_left = r < MB ? w00 : w10, whole_right = r < MB ? w01 : w11;
                    for (int64_t c = 0; c < 2 * NB && o0 + c < n; ++c)
                        if (!(c < NB ? whole_left : whole_right))
                            *output_at(&out, r0 + r, o0 + c) = tail[r][c];
                }
        }
    }
    _tile_release();
    free(a_hi);
    free(bias_pad);
    return 0;
}
#else
int amx_enable(void) { return 1; }

int amx_linear(const float *x, int64_t rows, int64_t k, const uint16_t *packed, int64_t n, const float *bias,
               float *y, int64_t ldy, int64_t batch_rows, int64_t gap, int64_t n1, float *y2, int64_t ld2,
               int64_t row_begin, int64_t row_end) {
    (void)x, (void)rows, (void)k, (void)packed, (void)n, (void)bias, (void)y, (void)ldy, (void)batch_rows;
    (void)gap, (void)n1, (void)y2, (void)ld2, (void)row_begin, (void)row_end;
    return 1;
}
#endif
