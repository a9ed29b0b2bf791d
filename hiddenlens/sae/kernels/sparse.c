/* Latent-grouped sums for the sparse TopK SAE backward, and the latent order they walk.
 *
 * hiddenlens.sae.sparse_kernel compiles this file at first use (see hiddenlens._native).
 * Both weight gradients of a TopK SAE are sums over the active (row, latent) pairs grouped
 * by latent: dW_dec[l] = sum_p v_p dy[row_p] and dW_enc[:, l] = sum_p g_p x[row_p]. In eager
 * PyTorch each is an embedding_bag over permuted copies of the pair arrays, and dW_enc comes
 * out as [d_sae, d_in] and is transposed into W_enc's [d_in, d_sae] layout afterwards. Here a
 * pair's weight and row are read through the latent permutation (no permuted copies), and a
 * block of LB latents is summed in a small buffer and then written as d_in runs of LB
 * consecutive floats, so the transposed layout costs nothing extra.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AHEAD 3 /* pairs whose rows are prefetched ahead (2-8 measured alike) */
#define LB 16 /* latents per block: a block's sums are LB * d floats (24 KB at d = 384) */

/* Stable counting sort of the pairs by latent: order[j] = the j-th pair in latent order,
 * start[l] = the first position of latent l (start has n_lat + 1 entries). order needs room
 * for nnz + n_lat entries (the tail holds the cursors). ~6x torch's stable argsort. */
void hl_latent_order(const int64_t *cols, int64_t nnz, int64_t n_lat, int64_t *order,
                     int64_t *start) {
    memset(start, 0, (n_lat + 1) * sizeof *start);
    for (int64_t p = 0; p < nnz; p++) start[cols[p] + 1]++;
    for (int64_t l = 0; l < n_lat; l++) start[l + 1] += start[l];
    int64_t *cur = order + nnz; /* a running cursor per latent */
    memcpy(cur, start, n_lat * sizeof *cur);
    for (int64_t p = 0; p < nnz; p++) order[cur[cols[p]]++] = p;
}

/* Latents [l0, l1): out[l] (or out[:, l] when transposed; row stride ld_out) =
 * sum over j in [start[l], start[l+1]) of w[order[j]] * table[rows[order[j]]], table being
 * [*, d] contiguous. The rows are random, so each is prefetched a few pairs ahead (without
 * it the loop waits on memory: 2.6x slower than embedding_bag). Blocks of latents are
 * shared among OpenMP threads (torch's pool, as in topk.c). Returns -1 when out of memory
 * for a block buffer, else 0. */
int hl_group_rows(const float *table, int64_t d, const int64_t *order, const int64_t *start,
                  const int64_t *rows, const float *w, int64_t l0, int64_t l1, float *out,
                  int64_t ld_out, int transposed) {
    int64_t nnz_end = start[l1];
    int failed = 0;
#pragma omp parallel if (l1 - l0 >= 4 * LB) reduction(| : failed)
    {
        float *buf = malloc(LB * (d > 0 ? d : 1) * sizeof *buf); /* heap: d may be large */
        if (!buf) failed = 1;
#pragma omp for schedule(dynamic, 4)
        for (int64_t b = l0; b < l1; b += LB) {
            if (!buf) continue;
            int64_t nb = l1 - b < LB ? l1 - b : LB;
            for (int64_t i = 0; i < nb; i++) {
                float *a = buf + i * d;
                memset(a, 0, d * sizeof *a);
                for (int64_t j = start[b + i]; j < start[b + i + 1]; j++) {
                    int64_t p = order[j];
                    if (j + AHEAD < nnz_end) { /* the row a few pairs on: random, fetch it */
                        const char *nx = (const char *)(table + rows[order[j + AHEAD]] * d);
                        for (int64_t c = 0; c < d * 4; c += 64) __builtin_prefetch(nx + c);
                    }
                    const float *src = table + rows[p] * d;
                    float wp = w[p];
                    for (int64_t u = 0; u < d; u++) a[u] += wp * src[u];
                }
                if (!transposed) memcpy(out + (b + i) * ld_out, a, d * sizeof *a);
            }
            if (transposed)
                for (int64_t u = 0; u < d; u++)
                    for (int64_t i = 0; i < nb; i++) out[u * ld_out + b + i] = buf[i * d + u];
        }
        free(buf);
    }
    return failed ? -1 : 0;
}
