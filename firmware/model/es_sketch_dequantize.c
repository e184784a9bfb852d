/* edgesketch runtime: int32 scores to the teacher's units. See es_sketch.h. */
#include "es_sketch.h"

void es_sketch_dequantize(const int32_t *scores, float *out, unsigned n, const float *scale, const float *bias)
{
    unsigned c;
    for (c = 0; c < n; ++c) out[c] = (float)scores[c] * ES_RD_F32(scale + c) + ES_RD_F32(bias + c);
}
