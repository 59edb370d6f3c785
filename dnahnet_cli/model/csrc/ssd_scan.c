/* Mamba2's SSD as a plain recurrence over time, for CPU inference (no gradient).
 *
 * Per head the state is a (headdim x d_state) matrix s; at each position t
 *     s = exp(dt_t * A) * s + (dt_t * x_t) B_t^T,   y_t = s C_t + D * x_t.
 * On a GPU the chunked (matmul) form wins; on a CPU core one pass over time with the state in L1 cache does
 * a few FLOPs per state entry and touches each input once, where the chunked form makes ~20 passes over
 * (L x channels) tensors and many small matmuls. Python (cpu_scan.py) compiles this file once per machine and
 * spreads the (batch x head) jobs over threads; each job is independent.
 *
 * Layouts (fp32, contiguous): xbc (b, l, cd) is the conv output [x (h*p) | B (n) | C (n) | ...],
 * dt (b, l, h) already softplus'ed and masked (dt = 0 leaves the state unchanged: padding), A and D (h),
 * y (b, l, h*p) output, state (b, h, p, n) holds the initial state on entry and the final state on return.
 */
#include <math.h>
#include <stdint.h>

void ssd_scan(const float *xbc, const float *dt, const float *A, const float *D, float *y, float *state,
              int64_t l, int64_t cd, int64_t h, int64_t p, int64_t n, int64_t job_begin, int64_t job_end) {
    const int64_t di = h * p;
    for (int64_t job = job_begin; job < job_end; ++job) {
        const int64_t bi = job / h, hh = job % h;
        float *s = state + job * p * n;
        const float a = A[hh], skip = D[hh];
        for (int64_t t = 0; t < l; ++t) {
            const float *row = xbc + (bi * l + t) * cd;
            const float *xt = row + hh * p, *bt = row + di, *ct = row + di + n;
            const float step = dt[(bi * l + t) * h + hh];
            const float decay = expf(step * a);
            float *yt = y + (bi * l + t) * di + hh * p;
            for (int64_t i = 0; i < p; ++i) {
                const float xs = xt[i] * step;
                float *si = s + i * n;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int64_t j = 0; j < n; ++j) {
                    const float v = decay * si[j] + xs * bt[j];
                    si[j] = v;
                    acc += v * ct[j];
                }
                yt[i] = acc + skip * xt[i];
            }
        }
    }
}
