/* Whether the guest's two vCPUs share a physical core's floating-point units (SMT
 * siblings): 800 million 512-bit FMAs in four independent chains (one a cycle on Zen 4),
 * timed alone on vCPU 0 and then on vCPUs 0 and 1 at once. Siblings would take about
 * twice as long in the pair. docs/benchmarks.md, tenth round:
 *   gcc -O2 -mavx512f -o /tmp/fma bench/vcpu_fma_pair.c
 *   taskset -c 0 /tmp/fma; (taskset -c 0 /tmp/fma & taskset -c 1 /tmp/fma; wait)
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

int main(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    /* z <- z * 0.9999 + 0.0001 stays near 1: no overflow, no denormal. */
    __m512 x = _mm512_set1_ps(0.9999f), y = _mm512_set1_ps(0.0001f);
    __m512 z0 = _mm512_set1_ps(1.0f), z1 = _mm512_set1_ps(2.0f), z2 = _mm512_set1_ps(3.0f), z3 = _mm512_set1_ps(4.0f);
    for (long i = 0; i < 200000000; i++) {
        z0 = _mm512_fmadd_ps(z0, x, y);
        z1 = _mm512_fmadd_ps(z1, x, y);
        z2 = _mm512_fmadd_ps(z2, x, y);
        z3 = _mm512_fmadd_ps(z3, x, y);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    float out[16];
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(z0, z1), _mm512_add_ps(z2, z3)));
    /* The result is printed so that the loop is not removed. */
    printf("%.3f s (%g)\n", (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9, out[0]);
    return 0;
}
