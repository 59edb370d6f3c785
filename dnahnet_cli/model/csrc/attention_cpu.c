/* Softmax attention on a CPU, each query over one contiguous range of keys, with its backward for training
 * (attend_ranges_backward, at the end).
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

/* A block of up to QB queries starting at i0 of head bh: each query's key range, clamped to the keys, and the
 * union's aligned span [r0, r0 + n). */
typedef struct {
    int64_t l0[MAXQB], h0[MAXQB], r0, n;
    int nq;
} Block;

static inline Block block_ranges(const int QB, const int64_t *lo, const int64_t *hi, int64_t row, int64_t i0,
                                 int64_t lq, int64_t lk_pad) {
    Block blk;
    int64_t first = INT64_MAX, last = 0;
    blk.nq = lq - i0 < QB ? (int)(lq - i0) : QB;
    for (int a = 0; a < QB; ++a) {
        int64_t l0 = a < blk.nq ? lo[row * lq + i0 + a] : 0, h0 = a < blk.nq ? hi[row * lq + i0 + a] : 0;
        l0 = l0 < 0 ? 0 : l0; /* never read outside the keys, whatever the caller passed */
        h0 = h0 > lk_pad ? lk_pad : h0;
        blk.l0[a] = l0;
        blk.h0[a] = h0;
        if (l0 < h0) {
            first = l0 < first ? l0 : first;
            last = h0 > last ? h0 : last;
        }
    }
    if (first >= last) first = last = 0;
    blk.r0 = first - first % W;
    blk.n = (last + W - 1) / W * W - blk.r0;
    return blk;
}

/* rows (QB x D, zero beyond the block's queries) times the transposed keys (or values) of the block's span:
 * s[a * n + j] = sum_c rows[a][c] * t[c][r0 + j], W keys per step, every key vector serving QB rows. */
static inline __attribute__((always_inline)) void block_products(const int D, const int QB, float rows[MAXQB][MAXD],
                                                                 const float *restrict t, int64_t lk_pad, int64_t r0,
                                                                 int64_t n, float *restrict s) {
    for (int64_t j = 0; j < n; j += W) {
        vf acc[MAXQB];
#pragma GCC unroll 8
        for (int a = 0; a < QB; ++a) acc[a] = vsplat(0.0f);
        for (int c = 0; c < D; ++c) {
            const vf keys = vload(t + c * lk_pad + r0 + j);
#pragma GCC unroll 8
            for (int a = 0; a < QB; ++a) acc[a] += rows[a][c] * keys;
        }
#pragma GCC unroll 8
        for (int a = 0; a < QB; ++a) vstore(s + a * n + j, acc[a]);
    }
}

static inline void load_rows(const int D, const int QB, float rows[MAXQB][MAXD], const float *src, int nq) {
    for (int a = 0; a < QB; ++a)
        for (int c = 0; c < D; ++c) rows[a][c] = a < nq ? src[a * D + c] : 0.0f;
}

/* Row a of s in place: exp(s - shift) inside [b0, b1) (relative to the span), zero outside; returns the sum. */
static inline float exp_row(float *sa, int64_t n, int32_t b0, int32_t b1, float shift, vi lane) {
    vf total = vsplat(0.0f);
    for (int32_t j = 0; j < n; j += W) {
        const vi idx = lane + j;
        const vf p = vsel((idx >= b0) & (idx < b1), vexp(vload(sa + j) - shift), vsplat(0.0f));
        vstore(sa + j, p);
        total += p;
    }
    float sum = 0.0f;
    for (int t = 0; t < W; ++t) sum += total[t];
    return sum;
}

/* One head width D and block size QB, both constants after inlining (the arrays have fixed sizes, so the
 * accumulators live in registers). lse, when given, receives each query's log-sum-exp (for the backward). */
static inline __attribute__((always_inline)) void attend_blocks(
        const int D, const int QB, const float *restrict q, const float *restrict kt, const float *restrict v,
        const int64_t *lo, const int64_t *hi, float *restrict out, float *restrict lse, int64_t heads, int64_t lq,
        int64_t lk_pad, int64_t job_begin, int64_t job_end, float *restrict s) {
    const int64_t blocks = (lq + QB - 1) / QB;
    vi lane;
    for (int t = 0; t < W; ++t) lane[t] = t;
    for (int64_t job = job_begin; job < job_end; ++job) {
        const int64_t bh = job / blocks, i0 = (job % blocks) * QB;
        const Block blk = block_ranges(QB, lo, hi, bh / heads, i0, lq, lk_pad);
        const int64_t r0 = blk.r0, n = blk.n;
        float qv[MAXQB][MAXD];
        load_rows(D, QB, qv, q + (bh * lq + i0) * D, blk.nq);
        block_products(D, QB, qv, kt + bh * D * lk_pad, lk_pad, r0, n, s);
        float norm[MAXQB];
        for (int a = 0; a < QB; ++a) { /* probabilities in place, zero outside the query's range */
            float *sa = s + a * n;
            const int32_t b0 = (int32_t)(blk.l0[a] - r0), b1 = (int32_t)(blk.h0[a] - r0);
            if (a >= blk.nq || b0 >= b1) {
                memset(sa, 0, sizeof(float) * n);
                norm[a] = 0.0f;
                if (lse && a < blk.nq) lse[bh * lq + i0 + a] = -INFINITY;
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
            const float sum = exp_row(sa, n, b0, b1, m, lane);
            norm[a] = 1.0f / sum;
            if (lse) lse[bh * lq + i0 + a] = m + logf(sum);
        }
        const float *v_bh = v + bh * lk_pad * D;
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
        for (int a = 0; a < blk.nq; ++a)
            for (int c = 0; c < D / W; ++c) vstore(out + (bh * lq + i0 + a) * D + c * W, o[a][c] * norm[a]);
    }
}

/* The backward of attend_blocks for whole heads bh in [bh_begin, bh_end) (dk and dv gather over every query
 * block of a head, so a head is one thread's). With P recomputed from lse: dV = P^T dO, dP = dO V^T,
 * dS = P (dP - delta) where delta = rowsum(dO * O), dQ = dS K and dK = dS^T Q (q as scaled in the forward; the
 * caller applies the scale to dq). Extra layouts: k and the fp32 values transposed vt as kt; dq (bh, lq, d);
 * dk, dv (bh, lk_pad, d), zeroed by the caller; scratch 2 * MAXQB * lk_pad floats. */
static inline __attribute__((always_inline)) void attend_blocks_backward(
        const int D, const int QB, const float *restrict q, const float *restrict kt, const float *restrict k,
        const float *restrict vt, const float *restrict dout, const float *restrict lse,
        const float *restrict delta, const int64_t *lo, const int64_t *hi, float *restrict dq, float *restrict dk,
        float *restrict dv, int64_t heads, int64_t lq, int64_t lk_pad, int64_t bh_begin, int64_t bh_end,
        float *restrict s) {
    vi lane;
    for (int t = 0; t < W; ++t) lane[t] = t;
    float *ds = s + MAXQB * lk_pad;
    for (int64_t bh = bh_begin; bh < bh_end; ++bh) {
        const float *k_bh = k + bh * lk_pad * D;
        float *dk_bh = dk + bh * lk_pad * D, *dv_bh = dv + bh * lk_pad * D;
        for (int64_t i0 = 0; i0 < lq; i0 += QB) {
            const Block blk = block_ranges(QB, lo, hi, bh / heads, i0, lq, lk_pad);
            const int64_t r0 = blk.r0, n = blk.n;
            float qv[MAXQB][MAXD], gv[MAXQB][MAXD];
            load_rows(D, QB, qv, q + (bh * lq + i0) * D, blk.nq);
            load_rows(D, QB, gv, dout + (bh * lq + i0) * D, blk.nq);
            block_products(D, QB, qv, kt + bh * D * lk_pad, lk_pad, r0, n, s);  /* scores */
            block_products(D, QB, gv, vt + bh * D * lk_pad, lk_pad, r0, n, ds); /* dP = dO V^T */
            for (int a = 0; a < QB; ++a) {
                float *sa = s + a * n, *da = ds + a * n;
                const int32_t b0 = (int32_t)(blk.l0[a] - r0), b1 = (int32_t)(blk.h0[a] - r0);
                if (a >= blk.nq || b0 >= b1) {
                    memset(sa, 0, sizeof(float) * n);
                    memset(da, 0, sizeof(float) * n);
                    continue;
                }
                exp_row(sa, n, b0, b1, lse[bh * lq + i0 + a], lane); /* P */
                const float d_a = delta[bh * lq + i0 + a];
                for (int64_t j = 0; j < n; j += W) vstore(da + j, vload(sa + j) * (vload(da + j) - d_a));
            }
            vf gq[MAXQB][MAXD / W];
            for (int a = 0; a < QB; ++a)
                for (int c = 0; c < D / W; ++c) gq[a][c] = vsplat(0.0f);
            for (int64_t j = 0; j < n; ++j) {
                const float *krow = k_bh + (r0 + j) * D;
                float *dkrow = dk_bh + (r0 + j) * D, *dvrow = dv_bh + (r0 + j) * D;
                vf kk[MAXD / W], gk[MAXD / W], gvv[MAXD / W];
                for (int c = 0; c < D / W; ++c) {
                    kk[c] = vload(krow + c * W);
                    gk[c] = vload(dkrow + c * W);
                    gvv[c] = vload(dvrow + c * W);
                }
#pragma GCC unroll 8
                for (int a = 0; a < QB; ++a) {
                    const float p = s[a * n + j], g = ds[a * n + j];
                    for (int c = 0; c < D / W; ++c) {
                        gvv[c] += p * vload(gv[a] + c * W);
                        gk[c] += g * vload(qv[a] + c * W);
                        gq[a][c] += g * kk[c];
                    }
                }
                for (int c = 0; c < D / W; ++c) {
                    vstore(dkrow + c * W, gk[c]);
                    vstore(dvrow + c * W, gvv[c]);
                }
            }
            for (int a = 0; a < blk.nq; ++a)
                for (int c = 0; c < D / W; ++c) vstore(dq + (bh * lq + i0 + a) * D + c * W, gq[a][c]);
        }
    }
}

/* The head widths compiled here, each with its queries per block: as many as keep scores and outputs in
 * registers. X(D, QB) for each; the one table behind attention_block and both dispatches below. */
#define HEAD_WIDTHS(X) X(16, 8) X(32, 8) X(48, 4) X(64, 4)

int64_t attention_block(int64_t d) {
#define BLOCK(D, QB) if (d == D) return QB;
    HEAD_WIDTHS(BLOCK)
#undef BLOCK
    return 0;
}

/* The attention described at the top; returns 0, or -1 for a head width not compiled here (16, 32, 48 or 64).
 * lse may be NULL (inference); training passes it for attend_ranges_backward. */
int attend_ranges(const float *q, const float *kt, const float *v, const int64_t *lo, const int64_t *hi,
                  float *out, float *lse, int64_t heads, int64_t lq, int64_t lk_pad, int64_t d, float *scratch,
                  int64_t job_begin, int64_t job_end) {
#define FORWARD(D, QB) \
    case D: attend_blocks(D, QB, q, kt, v, lo, hi, out, lse, heads, lq, lk_pad, job_begin, job_end, scratch); return 0;
    switch (d) {
    HEAD_WIDTHS(FORWARD)
    default: return -1;
    }
#undef FORWARD
}

/* Gradients of attend_ranges (see attend_blocks_backward); heads in [bh_begin, bh_end). Returns 0, or -1 for a
 * head width not compiled here. */
int attend_ranges_backward(const float *q, const float *kt, const float *k, const float *vt, const float *dout,
                           const float *lse, const float *delta, const int64_t *lo, const int64_t *hi, float *dq,
                           float *dk, float *dv, int64_t heads, int64_t lq, int64_t lk_pad, int64_t d,
                           float *scratch, int64_t bh_begin, int64_t bh_end) {
#define BACKWARD(D, QB) \
    case D: attend_blocks_backward(D, QB, q, kt, k, vt, dout, lse, delta, lo, hi, dq, dk, dv, heads, lq, lk_pad, \
                                   bh_begin, bh_end, scratch); return 0;
    switch (d) {
    HEAD_WIDTHS(BACKWARD)
    default: return -1;
    }
#undef BACKWARD
}
