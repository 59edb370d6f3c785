/* Mamba2's mixer between its two projections on a CPU: the causal conv + SiLU, the SSD scan and the gated
 * RMSNorm; and every block's residual add + RMSNorm; each with its backward for training. Python (cpu_mixer.py)
 * compiles this file once per machine and splits each function's independent rows, channels or (batch x head)
 * jobs over threads.
 *
 * The SSD as a plain recurrence over time. Per head the state is a (headdim x d_state) matrix s; at each position t
 *     s = exp(dt_t * A) * s + (dt_t * x_t) B_t^T,   y_t = s C_t + D * x_t.
 * On a GPU the chunked (matmul) form wins; on a CPU core one pass over time with the state in L1 cache does
 * a few FLOPs per state entry and touches each input once, where the chunked form makes ~20 passes over
 * (L x channels) tensors and many small matmuls.
 *
 * Layouts (fp32, contiguous): xbc (b, l, cd) is the conv output [x (h*p) | B (n) | C (n) | ...],
 * dt (b, l, h) already softplus'ed and masked (dt = 0 leaves the state unchanged: padding), A and D (h),
 * y (b, l, h*p) output, state (b, h, p, n) holds the initial state on entry and the final state on return.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* exp(x) = 2^k e^r with k = round(x / ln 2) and |r| <= ln(2) / 2; e^r from its Taylor series up to r^7
 * (truncation error below 6e-9 relative), 2^k from the exponent bits. Branch-free, so the loops that call it
 * vectorise (a libm call would not); within a few ulp of expf over the clamped range [-87, 88]. */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float k = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = (x - k * 0.693145751953125f) - k * 1.42860682030941723e-6f; /* ln 2 = hi + lo */
    float e = 1.0f / 5040.0f;
    e = e * r + 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    const union { uint32_t bits; float value; } scale = {(uint32_t)((int32_t)k + 127) << 23};
    return e * scale.value;
}

static inline float silu(float v) { return v / (1.0f + exp_approx(-v)); }

/* out[r] = silu(bias + sum_j full[r + j] * w[j]) per channel for rows r = (batch, t) in [row_begin, row_end):
 * full (b, l + k - 1, cd) holds k - 1 history rows then the l new ones, w (k, cd), out (b, l, cd). The taps are
 * summed in the reference's order (the newest first, then the oldest onwards). */
void conv_silu(const float *full, const float *w, const float *bias, float *out, int64_t l, int64_t cd,
               int64_t k, int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; ++r) {
        const float *in = full + ((r / l) * (l + k - 1) + r % l) * cd;
        float *o = out + r * cd; /* one row stays in L1 across the passes below */
        const float *newest = in + (k - 1) * cd, *w_newest = w + (k - 1) * cd;
#pragma omp simd
        for (int64_t c = 0; c < cd; ++c)
            o[c] = bias[c] + newest[c] * w_newest[c];
        for (int64_t j = 0; j < k - 2; ++j) {
            const float *tap = in + j * cd, *wj = w + j * cd;
#pragma omp simd
            for (int64_t c = 0; c < cd; ++c)
                o[c] += tap[c] * wj[c];
        }
        const float *last = in + (k - 2) * cd, *w_last = w + (k - 2) * cd; /* the last tap, then SiLU */
#pragma omp simd
        for (int64_t c = 0; c < cd; ++c)
            o[c] = silu(o[c] + last[c] * w_last[c]);
    }
}

/* out[r] = g * w / sqrt(mean(g^2) + eps) with g = y[r] * silu(z[r]), rows r in [row_begin, row_end) of d
 * channels; z rows are z_stride floats apart (a slice of the input projection). rstd (NULL, or one float per
 * row) receives 1 / sqrt(mean(g^2) + eps) for the backward. */
void gated_rmsnorm(const float *y, const float *z, int64_t z_stride, const float *w, float eps, float *out,
                   float *rstd, int64_t d, int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; ++r) {
        const float *yr = y + r * d, *zr = z + r * z_stride;
        float *o = out + r * d;
        float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
        for (int64_t c = 0; c < d; ++c) {
            const float g = yr[c] * silu(zr[c]);
            o[c] = g;
            squares += g * g;
        }
        const float scale = 1.0f / sqrtf(squares / (float)d + eps);
        if (rstd)
            rstd[r] = scale;
#pragma omp simd
        for (int64_t c = 0; c < d; ++c)
            o[c] = o[c] * scale * w[c];
    }
}

/* The pre-norm residual step of every block (layers.Block), row by row for rows [row_begin, row_end) of d channels:
 * sum[r] = hidden[r] + res[r] (hidden alone where res is NULL: the first block) and out[r] = sum[r] * w /
 * sqrt(mean(sum[r]^2) + eps), in one pass instead of torch's five (add, square, mean, scale, weight). hidden is
 * fp32, or bf16 where hidden_bf16 (a bf16 layer's output under autocast), widened exactly. rstd (NULL, or one
 * float per row) receives 1 / sqrt(mean(sum^2) + eps) for the backward. */
void add_rmsnorm(const void *hidden, int64_t hidden_bf16, const float *res, const float *w, float eps, float *sum,
                 float *out, float *rstd, int64_t d, int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; ++r) {
        float *s = sum + r * d, *o = out + r * d;
        if (hidden_bf16) {
            const uint16_t *h = (const uint16_t *)hidden + r * d;
#pragma omp simd
            for (int64_t c = 0; c < d; ++c) {
                const union { uint32_t bits; float value; } wide = {(uint32_t)h[c] << 16};
                s[c] = wide.value;
            }
        } else {
            memcpy(s, (const float *)hidden + r * d, (size_t)d * sizeof(float));
        }
        float squares = 0.0f;
        if (res) {
            const float *rr = res + r * d;
#pragma omp simd reduction(+ : squares)
            for (int64_t c = 0; c < d; ++c) {
                s[c] += rr[c];
                squares += s[c] * s[c];
            }
        } else {
#pragma omp simd reduction(+ : squares)
            for (int64_t c = 0; c < d; ++c)
                squares += s[c] * s[c];
        }
        const float scale = 1.0f / sqrtf(squares / (float)d + eps);
        if (rstd)
            rstd[r] = scale;
#pragma omp simd
        for (int64_t c = 0; c < d; ++c)
            o[c] = s[c] * scale * w[c];
    }
}

/* Gradients of add_rmsnorm for rows [row_begin, row_end), given dout (the norm's output gradient), dsum (NULL, or
 * the gradient reaching the sum itself: the residual stream's later use) and the forward's rstd. With
 * u = sum rstd (so out = u w):
 *     dsum_total = dsum + rstd (dout w - u mean(dout w u)),   dw = sum_rows dout u;
 * dsum_total is the gradient of both addends. dw_part (d floats, zeroed by the caller) is this call's share of
 * dw: each thread gets its own. */
void add_rmsnorm_backward(const float *sum, const float *w, const float *rstd, const float *dout, const float *dsum,
                          float *dtotal, float *dw_part, int64_t d, int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; ++r) {
        const float *sr = sum + r * d, *gr = dout + r * d;
        float *dr = dtotal + r * d;
        const float scale = rstd[r];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < d; ++c) {
            const float u = sr[c] * scale;
            dot += gr[c] * w[c] * u;
            dw_part[c] += gr[c] * u;
        }
        const float mean = dot / (float)d;
        if (dsum) {
            const float *ds = dsum + r * d;
#pragma omp simd
            for (int64_t c = 0; c < d; ++c)
                dr[c] = ds[c] + scale * (gr[c] * w[c] - sr[c] * scale * mean);
        } else {
#pragma omp simd
            for (int64_t c = 0; c < d; ++c)
                dr[c] = scale * (gr[c] * w[c] - sr[c] * scale * mean);
        }
    }
}

/* Gradients of gated_rmsnorm for rows [row_begin, row_end), given dout and the forward's rstd. With
 * g = y silu(z) and u = g rstd (so out = u w):
 *     dg = rstd (dout w - u mean(dout w u)),   dy = dg silu(z),   dz = dg y silu'(z),   dw = sum_rows dout u.
 * dw_part (d floats, zeroed by the caller) is this call's share of dw: each thread gets its own. */
void gated_rmsnorm_backward(const float *y, const float *z, int64_t z_stride, const float *w, const float *rstd,
                            const float *dout, float *dy, float *dz, float *dw_part, int64_t d,
                            int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; ++r) {
        const float *yr = y + r * d, *zr = z + r * z_stride, *gr = dout + r * d;
        float *dyr = dy + r * d, *dzr = dz + r * d;
        const float scale = rstd[r];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < d; ++c) {
            const float s = 1.0f / (1.0f + exp_approx(-zr[c]));
            const float u = yr[c] * (zr[c] * s) * scale;
            dzr[c] = s; /* sigmoid(z), kept for the second pass */
            dot += gr[c] * w[c] * u;
            dw_part[c] += gr[c] * u;
        }
        const float mean = dot / (float)d;
#pragma omp simd
        for (int64_t c = 0; c < d; ++c) {
            const float s = dzr[c];
            const float gate = zr[c] * s;
            const float u = yr[c] * gate * scale;
            const float dg = scale * (gr[c] * w[c] - u * mean);
            dyr[c] = dg * gate;
            dzr[c] = dg * yr[c] * s * (1.0f + zr[c] * (1.0f - s));
        }
    }
}

/* Gradients of conv_silu for the channels [c_begin, c_end) of every row (channels, not rows, are split over
 * threads, so that each thread owns its columns of dfull, dw and dbias). The pre-activation a is recomputed from
 * full; with e = grad silu'(a):  dfull[r + j] += e[r] w[j],  dw[j] += e[r] full[r + j],  dbias += e[r].
 * dfull (b, l + k - 1, cd), dw (k, cd) and dbias (cd) are zeroed by the caller. */
void conv_silu_backward(const float *full, const float *w, const float *bias, const float *grad, float *dfull,
                        float *dw, float *dbias, int64_t b, int64_t l, int64_t cd, int64_t k, int64_t c_begin,
                        int64_t c_end) {
    const int64_t width = c_end - c_begin;
    float *e = malloc(sizeof(float) * (width > 0 ? width : 1));
    for (int64_t bi = 0; bi < b; ++bi) {
        for (int64_t r = 0; r < l; ++r) {
            const float *in = full + (bi * (l + k - 1) + r) * cd + c_begin, *g = grad + (bi * l + r) * cd + c_begin;
            const float *wk = w + c_begin;
            float *out = dfull + (bi * (l + k - 1) + r) * cd + c_begin;
            const float *newest = in + (k - 1) * cd, *w_newest = wk + (k - 1) * cd;
#pragma omp simd
            for (int64_t c = 0; c < width; ++c)
                e[c] = bias[c_begin + c] + newest[c] * w_newest[c];
            for (int64_t j = 0; j < k - 1; ++j) { /* the forward's order: the newest tap, then the oldest onwards */
                const float *tap = in + j * cd, *wj = wk + j * cd;
#pragma omp simd
                for (int64_t c = 0; c < width; ++c)
                    e[c] += tap[c] * wj[c];
            }
#pragma omp simd
            for (int64_t c = 0; c < width; ++c) {
                const float a = e[c], s = 1.0f / (1.0f + exp_approx(-a));
                e[c] = g[c] * s * (1.0f + a * (1.0f - s));
                dbias[c_begin + c] += e[c];
            }
            for (int64_t j = 0; j < k; ++j) {
                const float *tap = in + j * cd, *wj = wk + j * cd;
                float *dtap = out + j * cd, *dwj = dw + j * cd + c_begin;
#pragma omp simd
                for (int64_t c = 0; c < width; ++c) {
                    dtap[c] += e[c] * wj[c];
                    dwj[c] += e[c] * tap[c];
                }
            }
        }
    }
    free(e);
}

/* Position t's inputs to one head's scan step: its x scaled by dt (xs) and the D skip term that starts y (acc),
 * where its B and C are (*bt; C follows B), and the decay exp(dt A), returned, in double (fp32 could put 1 - decay
 * of a slowly decaying head 1e-3 off). */
static inline __attribute__((always_inline)) double step_inputs(const float *xbc, const float *dt, float a,
                                                                float skip, int64_t bi, int64_t hh, int64_t t,
                                                                int64_t l, int64_t cd, int64_t h, const int64_t p,
                                                                double *xs, double *acc, const float **bt) {
    const float *row = xbc + (bi * l + t) * cd, *xt = row + hh * p;
    const float step = dt[(bi * l + t) * h + hh];
    *bt = row + h * p;
#pragma omp simd
    for (int64_t i = 0; i < p; ++i) {
        xs[i] = (double)(xt[i] * step);
        acc[i] = (double)(skip * xt[i]);
    }
    return exp((double)step * (double)a);
}

/* One (batch row, head) job. Always inlined so that the calls below with a literal p compile to loops of
 * known length (the common head widths), whose accumulators stay in registers. */
static inline __attribute__((always_inline)) void scan_job(const float *xbc, const float *dt, float a, float skip,
                                                           float *y, float *s, float *ckpt, int64_t every,
                                                           int64_t bi, int64_t hh, int64_t l, int64_t cd,
                                                           int64_t h, const int64_t p, int64_t n) {
    const int64_t di = h * p;
    /* The state transposed to (n, p), so the inner loops run over p, unreduced; kept in double: on periodic input
     * every step rounds the same way, and a slowly decaying head summed those roundings in fp32 into an error
     * growing with length (5.5e-5 relative at 16 kb of a period-2 input, against 3e-8 in double). */
    double st[n * p], xs[p], acc[p], xs2[p], acc2[p]; /* xs2, acc2: the second of two positions per pass */
    for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < n; ++j)
            st[j * p + i] = s[i * n + j];
    for (int64_t t = 0; t < l; ++t) {
        if (ckpt && t % every == 0) /* training: the state entering each segment, for the backward pass */
            for (int64_t k = 0; k < n * p; ++k)
                ckpt[(t / every) * n * p + k] = (float)st[k];
        if (p <= 32 && t + 1 < l && !(ckpt && (t + 1) % every == 0)) {
            /* two positions per pass over the state: the same arithmetic in the same order (bitwise the same
             * results), half the loads and stores of the state; 1.18x and 1.12x on the shipped model's two scan
             * shapes (heads 32 wide; bench/scan_library_ab.py, docs/benchmarks.md). At 64 wide the two positions'
             * accumulators and inputs no longer fit the vector registers and it gained nothing (0.98x, 1.02x), so
             * those take one position at a time. */
            const float *bt, *bt2;
            const double decay = step_inputs(xbc, dt, a, skip, bi, hh, t, l, cd, h, p, xs, acc, &bt);
            const double decay2 = step_inputs(xbc, dt, a, skip, bi, hh, t + 1, l, cd, h, p, xs2, acc2, &bt2);
            const float *ct = bt + n, *ct2 = bt2 + n;
            for (int64_t j = 0; j < n; ++j) {
                const double bj = bt[j], cj = ct[j], bj2 = bt2[j], cj2 = ct2[j];
                double *sj = st + j * p;
#pragma omp simd
                for (int64_t i = 0; i < p; ++i) {
                    const double v = decay * sj[i] + xs[i] * bj;
                    acc[i] += v * cj;
                    const double v2 = decay2 * v + xs2[i] * bj2;
                    sj[i] = v2;
                    acc2[i] += v2 * cj2;
                }
            }
            float *yt = y + (bi * l + t) * di + hh * p, *yt2 = yt + di;
            for (int64_t i = 0; i < p; ++i) {
                yt[i] = (float)acc[i];
                yt2[i] = (float)acc2[i];
            }
            ++t;
            continue;
        }
        const float *bt;
        const double decay = step_inputs(xbc, dt, a, skip, bi, hh, t, l, cd, h, p, xs, acc, &bt);
        const float *ct = bt + n;
        for (int64_t j = 0; j < n; ++j) {
            const double bj = bt[j], cj = ct[j];
            double *sj = st + j * p;
#pragma omp simd
            for (int64_t i = 0; i < p; ++i) {
                const double v = decay * sj[i] + xs[i] * bj;
                sj[i] = v;
                acc[i] += v * cj;
            }
        }
        float *yt = y + (bi * l + t) * di + hh * p;
        for (int64_t i = 0; i < p; ++i)
            yt[i] = (float)acc[i];
    }
    for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < n; ++j)
            s[i * n + j] = (float)st[j * p + i];
}

/* ckpt (NULL, or (b, h, ceil(l / every), n, p)): the state entering every `every`-th position, kept for
 * ssd_scan_backward. */
void ssd_scan(const float *xbc, const float *dt, const float *A, const float *D, float *y, float *state,
              float *ckpt, int64_t every, int64_t l, int64_t cd, int64_t h, int64_t p, int64_t n,
              int64_t job_begin, int64_t job_end) {
    const int64_t per_job = ckpt ? ((l + every - 1) / every) * n * p : 0;
    for (int64_t job = job_begin; job < job_end; ++job) {
        const int64_t bi = job / h, hh = job % h;
        float *s = state + job * p * n, *c = ckpt ? ckpt + job * per_job : NULL;
        if (p == 16)
            scan_job(xbc, dt, A[hh], D[hh], y, s, c, every, bi, hh, l, cd, h, 16, n);
        else if (p == 32)
            scan_job(xbc, dt, A[hh], D[hh], y, s, c, every, bi, hh, l, cd, h, 32, n);
        else if (p == 64)
            scan_job(xbc, dt, A[hh], D[hh], y, s, c, every, bi, hh, l, cd, h, 64, n);
        else
            scan_job(xbc, dt, A[hh], D[hh], y, s, c, every, bi, hh, l, cd, h, p, n);
    }
}

/* Gradients of ssd_scan (zero initial state) for one (batch row, head) job, given dy (b, l, h*p). Walking
 * segments from the last, it recomputes the segment's states from its checkpoint, then runs the adjoint
 * recurrence G_t = dL/ds_t = C_t dy_t^T + a_{t+1} G_{t+1} backwards through it:
 *     dx_t = dt_t (G_t B_t) + D dy_t,   dB_t = G_t^T (dt_t x_t),   dC_t = s_t^T dy_t,
 *     d(dt_t) = x_t . (G_t B_t) + A a_t <G_t, s_{t-1}>,   dA = sum_t dt_t a_t <G_t, s_{t-1}>,   dD = sum_t dy_t . x_t.
 * Every product runs along a row, with no sum across a vector per state or width index: the states and G are
 * kept as (p, n) rows (dC, dB and the <G, s> parts accumulate over j), and G once more as (n, p) rows for G B
 * (accumulating over i). Updating G twice costs less than the 2n sums across a vector per position that one
 * layout needs (bench/scan_backward_ab.py). Always inlined, like scan_job, so that the common head widths compile
 * to loops of known length. states holds (every + 1) states of one segment, G and Gt one adjoint each. */
static inline __attribute__((always_inline)) void backward_job(
    const float *xbc, const float *dt, float a, float skip, const float *dy, const float *ckpt, int64_t every,
    float *dxbc, float *dB, float *dC, float *ddt, float *dA, float *dD, float *states, float *G, float *Gt,
    int64_t job, int64_t l, int64_t cd, int64_t h, const int64_t p, const int64_t n) {
    const int64_t bi = job / h, hh = job % h, di = h * p, segments = (l + every - 1) / every, np = n * p;
    float dxs[p], dc[n], db[n], da_parts[n];
    double dA_sum = 0.0, dD_sum = 0.0;
    float next_decay = 0.0f;
    memset(G, 0, sizeof(float) * np);
    memset(Gt, 0, sizeof(float) * np);
    for (int64_t seg = segments - 1; seg >= 0; --seg) {
        const int64_t t0 = seg * every, t1 = t0 + every < l ? t0 + every : l;
        const float *saved = ckpt + (job * segments + seg) * np; /* (n, p), as the forward keeps it */
        for (int64_t i = 0; i < p; ++i)
            for (int64_t j = 0; j < n; ++j)
                states[i * n + j] = saved[j * p + i];
        for (int64_t t = t0; t < t1; ++t) { /* recompute s_t0 .. s_{t1-1} */
            const float *row = xbc + (bi * l + t) * cd;
            const float *xt = row + hh * p, *bt = row + di;
            const float step = dt[(bi * l + t) * h + hh], decay = expf(step * a);
            const float *prev = states + (t - t0) * np;
            float *cur = states + (t - t0 + 1) * np;
            for (int64_t i = 0; i < p; ++i) {
                const float xsi = xt[i] * step;
#pragma omp simd
                for (int64_t j = 0; j < n; ++j)
                    cur[i * n + j] = decay * prev[i * n + j] + xsi * bt[j];
            }
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
            const float *row = xbc + (bi * l + t) * cd;
            const float *xt = row + hh * p, *bt = row + di, *ct = row + di + n;
            const float *dyt = dy + (bi * l + t) * di + hh * p;
            const float step = dt[(bi * l + t) * h + hh], decay = expf(step * a);
            const float *cur = states + (t - t0 + 1) * np, *prev = states + (t - t0) * np;
            float *dct = dC + ((bi * h + hh) * l + t) * n, *dbt = dB + ((bi * h + hh) * l + t) * n;
#pragma omp simd
            for (int64_t j = 0; j < n; ++j) {
                dc[j] = 0.0f;
                db[j] = 0.0f;
                da_parts[j] = 0.0f; /* <G_t, s_{t-1}>, one partial sum per lane, reduced once per t */
            }
            for (int64_t i = 0; i < p; ++i) {
                const float dyi = dyt[i], xsi = xt[i] * step;
                float *gi = G + i * n;
                const float *curi = cur + i * n, *previ = prev + i * n;
#pragma omp simd
                for (int64_t j = 0; j < n; ++j) {
                    const float g = next_decay * gi[j] + ct[j] * dyi;
                    gi[j] = g;
                    dc[j] += curi[j] * dyi;
                    db[j] += g * xsi;
                    da_parts[j] += g * previ[j];
                }
            }
#pragma omp simd
            for (int64_t i = 0; i < p; ++i)
                dxs[i] = 0.0f;
            for (int64_t j = 0; j < n; ++j) {
                float *gj = Gt + j * p;
                const float cj = ct[j], bj = bt[j];
#pragma omp simd
                for (int64_t i = 0; i < p; ++i) {
                    const float g = next_decay * gj[i] + cj * dyt[i];
                    gj[i] = g;
                    dxs[i] += g * bj;
                }
            }
            float da = 0.0f;
#pragma omp simd reduction(+ : da)
            for (int64_t j = 0; j < n; ++j) {
                dct[j] = dc[j];
                dbt[j] = db[j];
                da += da_parts[j];
            }
            float ddt_x = 0.0f, dd = 0.0f;
            float *dxt = dxbc + (bi * l + t) * cd + hh * p;
#pragma omp simd reduction(+ : ddt_x, dd)
            for (int64_t i = 0; i < p; ++i) {
                dxt[i] = dxs[i] * step + skip * dyt[i];
                ddt_x += dxs[i] * xt[i];
                dd += dyt[i] * xt[i];
            }
            ddt[(bi * l + t) * h + hh] = ddt_x + da * decay * a;
            dA_sum += (double)(da * decay * step);
            dD_sum += (double)dd;
            next_decay = decay;
        }
    }
    dA[job] = (float)dA_sum;
    dD[job] = (float)dD_sum;
}

/* ssd_scan's gradients for the (batch row, head) jobs in [job_begin, job_end). dxbc (b, l, cd) receives the x
 * channels; dB and dC (b, h, l, n) are per head (B and C are shared by the heads, so the caller sums them), dA
 * and dD (b * h) per job. */
void ssd_scan_backward(const float *xbc, const float *dt, const float *A, const float *D, const float *dy,
                       const float *ckpt, int64_t every, float *dxbc, float *dB, float *dC, float *ddt, float *dA,
                       float *dD, int64_t l, int64_t cd, int64_t h, int64_t p, int64_t n, int64_t job_begin,
                       int64_t job_end) {
    float *states = malloc(sizeof(float) * (every + 1) * n * p); /* s_{t0-1} .. s_{t1-1} of one segment */
    float *G = malloc(sizeof(float) * n * p), *Gt = malloc(sizeof(float) * n * p);
    for (int64_t job = job_begin; job < job_end; ++job) {
        const float a = A[job % h], skip = D[job % h];
        /* literal sizes for the presets' shapes (head width = state size), so that both loop nests have known
         * lengths */
        if (p == 16 && n == 16)
            backward_job(xbc, dt, a, skip, dy, ckpt, every, dxbc, dB, dC, ddt, dA, dD, states, G, Gt, job, l, cd, h, 16, 16);
        else if (p == 32 && n == 32)
            backward_job(xbc, dt, a, skip, dy, ckpt, every, dxbc, dB, dC, ddt, dA, dD, states, G, Gt, job, l, cd, h, 32, 32);
        else if (p == 64 && n == 64)
            backward_job(xbc, dt, a, skip, dy, ckpt, every, dxbc, dB, dC, ddt, dA, dD, states, G, Gt, job, l, cd, h, 64, 64);
        else
            backward_job(xbc, dt, a, skip, dy, ckpt, every, dxbc, dB, dC, ddt, dA, dD, states, G, Gt, job, l, cd, h, p, n);
    }
    free(states);
    free(G);
    free(Gt);
}
