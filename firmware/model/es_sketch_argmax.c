/* edgesketch runtime: the class of the largest score. See es_sketch.h. */
#include "es_sketch.h"

int es_sketch_argmax(const int32_t *scores, unsigned n)
{
    unsigned i, best = 0;
    for (i = 1; i < n; ++i)
        if (scores[i] > scores[best]) best = i;
    return (int)best;
}
