/* y = (x @ q^T) * scale for int8 weights q, fp32 rows x: the product of an int8 decode step on the CPU.
 *
 * At batch 1 a step reads every weight once, so its cost is how fast the weights stream from memory.
 * torch's `_weight_int8pack_mm` read 6-8 GB/s per thread on the 2-core Intel VM, where a plain sum
 * reads 12 (docs/benchmarks.md, "Speed records"). Two things close the gap here:
 *
 * - q is packed in blocks of W output columns, (n_out / W, n_in, W): a block is one contiguous stream,
 *   and the W columns accumulate in vector registers, with no horizontal sum per output;
 * - a software prefetch AHEAD bytes in front of the stream: the hardware prefetcher alone left each
 *   core at ~7 GB/s on that VM's memory, the prefetch brought it to ~12.
 *
 * Rows of x go in groups of R, so a weight line is converted to fp32 once per group (batch 16 ran
 * 3x faster than torch's kernel). Each output is a sum in a fixed order, whatever the thread count.
 * Built on first use by gptlab/infer/int8_gemv.py; that file falls back to torch's kernel when no C
 * compiler with OpenMP is found.
 */
#include <stdint.h>

#define W 64
#define R 4
#define AHEAD 4096

void int8_gemv(const float* x, const int8_t* q, const float* scale, float* y,
               int64_t rows, int64_t n_in, int64_t n_out, int threads) {
  int64_t blocks = n_out / W;
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t j = 0; j < blocks; j++) {
    const int8_t* block = q + j * n_in * W;
    for (int64_t b0 = 0; b0 < rows; b0 += R) {
      int64_t nr = rows - b0 < R ? rows - b0 : R;
      float acc[R][W] = {{0}};
      if (nr == R) {
        for (int64_t i = 0; i < n_in; i++) {
          const int8_t* line = block + i * W;
          __builtin_prefetch(line + AHEAD);
          float w[W];
          #pragma omp simd
          for (int k = 0; k < W; k++) w[k] = (float)line[k];
          for (int r = 0; r < R; r++) {
            float xi = x[(b0 + r) * n_in + i];
            #pragma omp simd
            for (int k = 0; k < W; k++) acc[r][k] += xi * w[k];
          }
        }
      } else {
        for (int64_t i = 0; i < n_in; i++) {
          const int8_t* line = block + i * W;
          __builtin_prefetch(line + AHEAD);
          for (int r = 0; r < nr; r++) {
            float xi = x[(b0 + r) * n_in + i];
            #pragma omp simd
            for (int k = 0; k < W; k++) acc[r][k] += xi * (float)line[k];
          }
        }
      }
      for (int r = 0; r < nr; r++) {
        float* out = y + (b0 + r) * n_out + j * W;
        #pragma omp simd
        for (int k = 0; k < W; k++) out[k] = acc[r][k] * scale[j * W + k];
      }
    }
  }
}
