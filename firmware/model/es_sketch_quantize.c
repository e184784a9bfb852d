/* edgesketch runtime: float inputs to the int8 inputs a sketch hashes. See es_sketch.h. */
#include "es_sketch.h"

/* x / scale + zero, rounded half to even (numpy rint) and saturated to int8, exactly as
 * edgesketch.sketch.quantize_inputs: the float quotient is compared with n + 0.5 (exact), never rounded twice. */
static int8_t es_quantize_one(float x, float scale, int32_t zero)
{
    float q = x / scale, half;
    int32_t n;
    if (!(q > -1048576.0f)) q = -1048576.0f;   /* also NaN */
    if (q > 1048576.0f) q = 1048576.0f;
    n = (int32_t)q;                           /* toward zero ... */
    if ((float)n > q) n -= 1;                 /* ... then floor */
    half = (float)n + 0.5f;
    n += zero;
    if (q > half || (q == half && ((uint32_t)n & 1u))) n += 1;
    return (int8_t)(n < -128 ? -128 : n > 127 ? 127 : n);
}

void es_sketch_quantize(const float *x, int8_t *xq, unsigned n, const float *scale, const int32_t *zero, unsigned n_q)
{
    unsigned i, q = 0;
    for (i = 0; i < n; ++i) {
        xq[i] = es_quantize_one(x[i], ES_RD_F32(scale + q), ES_RD_I32(zero + q));
        if (++q == n_q) q = 0;
    }
}
