/* Softmax attention on a CPU for inference, each query over one contiguous range of keys.
 *
 * Why: dnahnet's heads are narrow (16 wide in the `cpu` and `tiny` presets), and there torch's CPU flash attention
 * is bound by its per-block overhead and exponentials, not by arithmetic; with an explicit mask (windowed
 * attention, a continued cache) it also scores keys no query can see. Here keys are sorted by position, so that
 * every mask dnahnet needs (causal, a sliding window, a cache continued from a prefix) is a range [lo, hi) per
 * query, and a block of queries is scored against the union of its ranges only.
 *
 * How, per block of QB queries: scores for W keys at a time from the transposed keys (a row of W keys per head
 * dimension is one vector, so that every key loaded serves QB queries), then each query's row is turned into
 * probabilities in place (max, exp, sum; zero outside its range), then one pass over the values accumulates
 * all QB outputs. Everything is fp32; exp is mamba2_cpu.c's polynomial, here on whole vectors. GCC/Clang vector
 * extensions keep it portable: a vector of 16 floats is one AVX-512 register, two AVX2 or four NEON registers.
 *
 * Layouts (fp32, contiguous): q (bh, lq, d) already scaled by 1/sqrt(d); kt (bh, d, lk_pad) the keys transposed
 * and v (bh, lk_pad, d), with lk_pad a multiple of W and zeros beyond the real keys; lo, hi (b, lq) int64 per
 * query, shared by the heads of a batch row (bh = row * heads + head); out (bh, lq, d). A query with an empty
 * range gets zeros. Jobs are (bh, block of QB queries) pairs, job = bh * blocks + block, for job in
 * [job_begin, job_end); scratch holds MAXQB * lk_pad floats for each concurrent caller.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define W 16     /* lanes per vector */
#define MAXQB 8  /* queries per block, at most */
#define MAXD 64  /* head width, at most (a multiple of W) */

typedef float vf __attribute__((vector_size(4 * W), aligned(4)));
typedef int32_t vi __attribute__((vector_size(4 * W), aligned(4)));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vsplat(float x) { return (vf){0} + x; }
static inline vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); } /* m ? a : b, per lane */

/* exp(x) = 2^k e^r as in mamba2_cpu.c's exp_approx; k = round(x / ln 2) by adding and removing 1.5 * 2^23 */
static inline vf vexp(vf x) {
    x = vsel(x < -87.0f, vsplat(-87.0f), x);
    x = vsel(x > 88.0f, vsplat(88.0f), x);
    const vf big = vsplat(12582912.0f);
    const vf k = (x * 1.44269504088896341f + big) - big;
    const vf r = (x - k * 0.693145751953125f) - k * 1.42860682030941723e-6f;
    vf e = vsplat(1.0f / 5040.0f);
    e = e * r + 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    return e * (vf)((__builtin_convertvector(k, vi) + 127) << 23);
}

/* One head width D and block size QB, both constants after inlining (the arrays below have fixed sizes, so
 * the accumulators live in registers). */
static inline __attribute__((always_inline)) void attend_blocks(
        const int D, const int QB, const float *restrict q, const float *restrict kt, const float *restrict v,
        const int64_t *lo, const int64_t *hi, float *restrict out, int64_t heads, int64_t lq, int64_t lk_pad,
        int64_t job_begin, int64_t job_end, float *restrict s) {
    const int64_t blocks = (lq + QB - 1) / QB;
    vi lane;
    for (int t = 0; t < W; ++t) lane[t] = t;
    for (int64_t job = job_begin; job < job_end; ++job) {
        const int64_t bh = job / blocks, i0 = (job % blocks) * QB, row = bh / heads;
        const int nq = lq - i0 < QB ? (int)(lq - i0) : QB;
        const float *kt_bh = kt + bh * D * lk_pad, *v_bh = v + bh * lk_pad * D;
        int64_t first = INT64_MAX, last = 0, l0[MAXQB], h0[MAXQB];
        float qv[MAXQB][MAXD];
        for (int a = 0; a < QB; ++a) {
            l0[a] = a < nq ? lo[row * lq + i0 + a] : 0;
            h0[a] = a < nq ? hi[row * lq + i0 + a] : 0;
            l0[a] = l0[a] < 0 ? 0 : l0[a]; /* never read outside the keys, whatever the caller passed */
            h0[a] = h0[a] > lk_pad ? lk_pad : h0[a];
            if (l0[a] < h0[a]) {
                first = l0[a] < first ? l0[a] : first;
                last = h0[a] > last ? h0[a] : last;
            }
            for (int c = 0; c < D; ++c) qv[a][c] = a < nq ? q[(bh * lq + i0 + a) * D + c] : 0.0f;
        }
        if (first >= last) first = last = 0;
        const int64_t r0 = first - first % W, n = (last + W - 1) / W * W - r0;
        for (int64_t j = 0; j < n; j += W) { /* scores: QB queries x W keys per step */
            vf acc[MAXQB];
#pragma GCC unroll 8
            for (int a = 0; a < QB; ++a) acc[a] = vsplat(0.0f);
            for (int c = 0; c < D; ++c) {
                const vf keys = vload(kt_bh + c * lk_pad + r0 + j);
#pragma GCC unroll 8
                for (int a = 0; a < QB; ++a) acc[a] += qv[a][c] * keys;
            }
#pragma GCC unroll 8
            for (int a = 0; a < QB; ++a) vstore(s + a * n + j, acc[a]);
        }
        float norm[MAXQB];
        for (int a = 0; a < QB; ++a) { /* probabilities in place, zero outside the query's range */
            float *sa = s + a * n;
            const int32_t b0 = (int32_t)(l0[a] - r0), b1 = (int32_t)(h0[a] - r0);
            if (a >= nq || b0 >= b1) {
                memset(sa, 0, sizeof(float) * n);
                norm[a] = 0.0f;
                continue;
            }
            vf top = vsplat(-INFINITY);
            for (int32_t j = 0; j < n; j += W) {
                const vi idx = lane + j;
                const vf in = vsel((idx >= b0) & (idx < b1), vload(sa + j), vsplat(-INFINITY));
                top = vsel(in > top, in, top);
            }
            float m = top[0];
            for (int t = 1; t < W; ++t) m = top[t] > m ? top[t] : m;
            vf total = vsplat(0.0f);
            for (int32_t j = 0; j < n; j += W) {
                const vi idx = lane + j;
                const vf p = vsel((idx >= b0) & (idx < b1), vexp(vload(sa + j) - m), vsplat(0.0f));
                vstore(sa + j, p);
                total += p;
            }
            float sum = 0.0f;
            for (int t = 0; t < W; ++t) sum += total[t];
            norm[a] = 1.0f / sum;
        }
        vf o[MAXQB][MAXD / W];
        for (int a = 0; a < QB; ++a)
            for (int c = 0; c < D / W; ++c) o[a][c] = vsplat(0.0f);
        for (int64_t j = 0; j < n; ++j) { /* outputs: every value row serves the QB queries */
            const float *vrow = v_bh + (r0 + j) * D;
            vf vals[MAXD / W];
            for (int c = 0; c < D / W; ++c) vals[c] = vload(vrow + c * W);
#pragma GCC unroll 8
            for (int a = 0; a < QB; ++a) {
                const float p = s[a * n + j];
                for (int c = 0; c < D / W; ++c) o[a][c] += p * vals[c];
            }
        }
        for (int a = 0; a < nq; ++a)
            for (int c = 0; c < D / W; ++c) vstore(out + (bh * lq + i0 + a) * D + c * W, o[a][c] * norm[a]);
    }
}

/* Queries per block for a head width: as many as keep scores and outputs in registers. */
int64_t attention_block(int64_t d) { return d == 16 || d == 32 ? 8 : (d == 48 || d == 64 ? 4 : 0); }

/* The attention described at the top; returns 0, or -1 for a head width not compiled here (16, 32, 48 or 64). */
int attend_ranges(const float *q, const float *kt, const float *v, const int64_t *lo, const int64_t *hi,
                  float *out, int64_t heads, int64_t lq, int64_t lk_pad, int64_t d, float *scratch,
                  int64_t job_begin, int64_t job_end) {
    switch (d) {
    case 16: attend_blocks(16, 8, q, kt, v, lo, hi, out, heads, lq, lk_pad, job_begin, job_end, scratch); return 0;
    case 32: attend_blocks(32, 8, q, kt, v, lo, hi, out, heads, lq, lk_pad, job_begin, job_end, scratch); return 0;
    case 48: attend_blocks(48, 4, q, kt, v, lo, hi, out, heads, lq, lk_pad, job_begin, job_end, scratch); return 0;
    case 64: attend_blocks(64, 4, q, kt, v, lo, hi, out, heads, lq, lk_pad, job_begin, job_end, scratch); return 0;
    default: return -1;
    }
}
