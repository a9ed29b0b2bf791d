/* Exact per-row top-k of a float32 matrix, for the TopK SAE's latent choice.
 *
 * hiddenlens.sae.topk_kernel compiles this file with the system C compiler at first use and
 * calls it through ctypes (no Python or torch headers). Per row, three steps:
 *   1. the maximum of each group of G entries of the row plus the bias b (the encoder bias,
 *      added here rather than in a pass of its own), one vectorised pass (group_maxima);
 *   2. a threshold t that at least k group maxima reach (group_threshold). Those k groups
 *      hold an entry >= t each, so the row's k-th largest value is >= t: every entry of the
 *      top k is >= t and lies in a group whose maximum is >= t;
 *   3. the entries >= t of those groups (about 1.5 k of them) are gathered without branches,
 *      and a quickselect keeps the k largest.
 * The same filter is the eager fallback in hiddenlens.sae.architectures.topk (two rounds of
 * torch calls); done here it is one pass over the row. A row holding a NaN takes a one-pass
 * heap instead, in which NaN counts as larger than every number, as in torch.topk, so a NaN
 * is chosen and reaches the loss rather than being skipped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define G 32 /* entries per group */

/* Hoare-style quickselect: reorder val[0..n) (and idx alike, when given) so that the k
 * largest come first (in any order). Returns the k-th largest value. Needs 1 <= k <= n and
 * no NaN. */
static float select_top(float *val, int64_t *idx, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        float a = val[lo], b = val[mid], c = val[hi]; /* median of three as the pivot */
        float p = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (val[i] > p) i++;
            while (val[j] < p) j--;
            if (i <= j) {
                float tv = val[i]; val[i] = val[j]; val[j] = tv;
                if (idx) { int64_t ti = idx[i]; idx[i] = idx[j]; idx[j] = ti; }
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break; /* val[want] == p, in place */
    }
    return val[want];
}

/* ---- the NaN path: a one-pass k-entry min-heap ---------------------------------------- */

static inline int gt(float a, float b) { /* a > b with NaN largest */
    if (a != a) return b == b;
    if (b != b) return 0;
    return a > b;
}

static void sift_down(float *val, int64_t *idx, int64_t k, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && gt(val[m], val[l])) m = l;
        if (r < k && gt(val[m], val[r])) m = r;
        if (m == i) return;
        float tv = val[i]; val[i] = val[m]; val[m] = tv;
        int64_t ti = idx[i]; idx[i] = idx[m]; idx[m] = ti;
        i = m;
    }
}

static void heap_topk(const float *x, const float *b, int64_t n, int64_t k, float *val,
                      int64_t *idx) {
    for (int64_t j = 0; j < k; j++) { val[j] = x[j] + b[j]; idx[j] = j; }
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(val, idx, k, i);
    for (int64_t j = k; j < n; j++) {
        float v = x[j] + b[j];
        if (gt(v, val[0])) { val[0] = v; idx[0] = j; sift_down(val, idx, k, 0); }
    }
}

/* ---- the common path -------------------------------------------------------------------- */

typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

static inline f32x8 vmax(f32x8 a, f32x8 b) { /* lane-wise max: a compare and a blend */
    i32x8 m = a > b, ai, bi, r;
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    r = (ai & m) | (bi & ~m);
    memcpy(&a, &r, sizeof a);
    return a;
}

/* Groups: the row is read in runs of R = 8 G entries, as G vectors of 8 lanes; group
 * (run q, lane l) holds entries q R + 8 s + l, s < G, so the G-entry maxima of a run are one
 * lane-wise max over its G vectors (no horizontal step). Entries past the last full run form
 * one tail group. */
#define R (8 * G)

/* Group maxima of x[0..n) into gmax (8 per full run, then the tail's). Returns nonzero
 * when the row holds a NaN (the maxima are then meaningless). */
static int group_maxima(const float *x, const float *b, int64_t n, float *gmax) {
    int64_t runs = n / R;
    i32x8 nan = {0};
    for (int64_t q = 0; q < runs; q++) {
        f32x8 m, v, bv;
        memcpy(&m, x + q * R, sizeof m);
        memcpy(&bv, b + q * R, sizeof bv);
        m += bv;
        for (int s = 0; s < G; s++) {
            memcpy(&v, x + q * R + 8 * s, sizeof v);
            memcpy(&bv, b + q * R + 8 * s, sizeof bv);
            v += bv;
            nan |= v != v;
            m = vmax(v, m);
        }
        memcpy(gmax + 8 * q, &m, sizeof m);
    }
    int bad = 0;
    for (int u = 0; u < 8; u++) bad |= nan[u];
    if (n % R) {
        float s = x[runs * R] + b[runs * R];
        for (int64_t j = runs * R; j < n; j++) {
            float v = x[j] + b[j];
            bad |= v != v;
            s = v > s ? v : s;
        }
        gmax[8 * runs] = s;
    }
    return bad;
}

/* A threshold t with at least k of the ng group maxima >= t, and few more: a bisection on
 * the value that keeps count(gmax >= lo) >= k, counting without branches (a quickselect
 * over the maxima costs several times more in mispredicted branches). Needs k <= ng. */
static float group_threshold(const float *gmax, int64_t ng, int64_t k) {
    float lo = gmax[0], hi = gmax[0];
    for (int64_t g = 1; g < ng; g++) {
        lo = gmax[g] < lo ? gmax[g] : lo;
        hi = gmax[g] > hi ? gmax[g] : hi;
    }
    for (int it = 0; it < 16; it++) {
        float mid = lo + (hi - lo) * 0.5f;
        if (!(mid > lo && mid < hi)) break; /* no float strictly between */
        int64_t c = 0;
        for (int64_t g = 0; g < ng; g++) c += gmax[g] >= mid;
        if (c >= k) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* k largest of one row into val/idx, or -1 when the row holds a NaN. gbuf: 2 (n / G + 1)
 * floats; cbuf: n floats; ibuf: n int64. */
static int row_topk(const float *x, const float *b, int64_t n, int64_t k, float *val,
                    int64_t *idx, float *gbuf, float *cbuf, int64_t *ibuf) {
    int64_t runs = n / R, ng = 8 * runs + (n % R != 0);
    if (group_maxima(x, b, n, gbuf)) return -1;
    float t = group_threshold(gbuf, ng, k);
    int64_t cnt = 0;
    for (int64_t g = 0; g < 8 * runs; g++) {
        if (!(gbuf[g] >= t)) continue;
        int64_t j0 = (g / 8) * R + g % 8;
        for (int s = 0; s < G; s++) { /* branch-free append of the entries >= t */
            int64_t j = j0 + 8 * s;
            float v = x[j] + b[j];
            cbuf[cnt] = v;
            ibuf[cnt] = j;
            cnt += v >= t;
        }
    }
    if (ng > 8 * runs && gbuf[ng - 1] >= t) {
        for (int64_t j = runs * R; j < n; j++) {
            float v = x[j] + b[j];
            cbuf[cnt] = v;
            ibuf[cnt] = j;
            cnt += v >= t;
        }
    }
    select_top(cbuf, ibuf, cnt, k);
    memcpy(val, cbuf, k * sizeof *val);
    memcpy(idx, ibuf, k * sizeof *idx);
    return 0;
}

/* Rows [r0, r1) of x + b (x: row stride ld, n columns; b: n entries, added to every row):
 * the k largest entries of each, unordered, into val[r * k ...] (with b added) and
 * idx[r * k ...]. Needs 1 <= k <= the number of groups, 8 (n / R) + (n % R != 0). Rows
 * are shared among OpenMP threads (torch's own pool: the library is built with -fopenmp
 * and binds to the libgomp torch has loaded). Returns -1 when out of memory, else 0. */
int hl_topk_rows_f32(const float *x, int64_t ld, int64_t n, const float *b, int64_t k,
                      int64_t r0, int64_t r1, float *val, int64_t *idx) {
    int failed = 0;
#pragma omp parallel if (r1 - r0 >= 64) reduction(| : failed)
    {
        /* per-thread scratch: 2 (n / G + 1) group maxima, n candidate values and indices */
        float *gbuf = malloc((2 * (n / G + 1) + n) * sizeof *gbuf);
        int64_t *ibuf = malloc(n * sizeof *ibuf);
        if (!gbuf || !ibuf) failed = 1;
        float *cbuf = gbuf ? gbuf + 2 * (n / G + 1) : NULL;
#pragma omp for schedule(static)
        for (int64_t r = r0; r < r1; r++) {
            if (!gbuf || !ibuf) continue;
            const float *row = x + r * ld;
            if (row_topk(row, b, n, k, val + r * k, idx + r * k, gbuf, cbuf, ibuf))
                heap_topk(row, b, n, k, val + r * k, idx + r * k);
        }
        free(gbuf);
        free(ibuf);
    }
    return failed ? -1 : 0;
}
