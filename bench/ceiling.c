// A reference for what two threads gain on this machine for work shaped like a
// simulation step, with nothing of snnc in it: N neurons of a conductance-based update
// (four f32 arrays and a spike flag, a constant drive that makes them fire, AVX-512
// where gcc -march=native finds it), STEPS steps, timed
//   1   on one thread (every neuron, every step);
//   2b  on two threads, each half the neurons, a spin barrier after every step (the
//       shape of snnc's step on two threads, without its deliveries or bookkeeping);
//   2f  on two threads, each half the neurons, no barrier until the end (neither ever
//       waits for the other).
//   rt  a cache line passed to another thread and back, 100,000 times (ns a round
//       trip): where the host has put the two vCPUs (docs/benchmarks.md, fifteenth
//       round: 0.04, 0.07-0.08 or 0.31-0.34 us on this guest, the dearer the further).
// It is one cache-bound loop, not a bound for every program (a program whose halves fit
// a core's cache better than its whole can gain more). The three run in turn, ROUNDS times (interleaved, so that each round sees the same
// phase of a shared machine), and the medians and per-round speed-ups are printed.
// docs/benchmarks.md (issue 18):
//   gcc -O3 -march=native -pthread bench/ceiling.c -o /tmp/ceiling -lm && /tmp/ceiling 40000 10000 2 12
// (arguments: neurons, steps, updates per neuron and step, rounds).
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int n_neurons, steps, inner;
static float *v, *ge, *gi, *spike;
static atomic_int arrived, sense;

static void update(int from, int to) {
    float *restrict v_ = v, *restrict ge_ = ge, *restrict gi_ = gi, *restrict spike_ = spike;
#define v v_
#define ge ge_
#define gi gi_
#define spike spike_
    for (int k = 0; k < inner; k++) {
        for (int i = from; i < to; i++) {
            // (Rest -60, threshold -50, a drive to -48: the neurons fire every few hundred
            // steps, staggered by their start. The conductances get a small input every
            // step, so that they never decay into subnormal numbers.)
            float dv = (-60.0f - v[i]) + ge[i] * (0.0f - v[i]) + gi[i] * (-80.0f - v[i]) + 12.0f;
            v[i] += 0.005f * dv;
            ge[i] = ge[i] * 0.98f + 0.0001f;
            gi[i] = gi[i] * 0.99f + 0.0001f;
            int fired = v[i] > -50.0f;
            v[i] = fired ? -60.0f : v[i];
            spike[i] = (float)fired;
        }
    }
#undef v
#undef ge
#undef gi
#undef spike
}

// Sense-reversing barrier for two threads: the last to arrive flips the sense.
static void barrier(int *local) {
    *local = !*local;
    if (atomic_fetch_add(&arrived, 1) == 1) {
        atomic_store(&arrived, 0);
        atomic_store(&sense, *local);
    } else {
        while (atomic_load(&sense) != *local) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}

struct job { int from, to, sync; };

static void *run(void *arg) {
    struct job *j = arg;
    int local = atomic_load(&sense);
    for (int s = 0; s < steps; s++) {
        update(j->from, j->to);
        if (j->sync) barrier(&local);
    }
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void reset(void) {
    for (int i = 0; i < n_neurons; i++) {
        v[i] = -60.0f + (float)(i % 97) * 0.1f;
        ge[i] = 0.01f * (float)(i % 13);
        gi[i] = 0.01f * (float)(i % 7);
        spike[i] = 0.0f;
    }
    atomic_store(&arrived, 0);
    atomic_store(&sense, 0);
}

// Seconds of one run on `threads` threads (1 or 2), with a barrier a step or not.
static double time_mode(int threads, int sync) {
    reset();
    int half = (n_neurons / 2) / 16 * 16;
    struct job whole = {0, n_neurons, 0}, lo = {0, half, sync}, hi = {half, n_neurons, sync};
    double t0 = now();
    if (threads == 1) {
        run(&whole);
    } else {
        pthread_t other;
        pthread_create(&other, NULL, run, &hi);
        run(&lo);
        pthread_join(other, NULL);
    }
    return now() - t0;
}

// Nanoseconds a round trip of one cache line between this thread and another.
#define TRIPS 100000
static _Alignas(64) atomic_long line;

static void *echo(void *arg) {
    (void)arg;
    for (long i = 0; i < TRIPS; i++) {
        while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 1) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        atomic_store_explicit(&line, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

static double round_trip_ns(void) {
    atomic_store(&line, 0);
    pthread_t other;
    pthread_create(&other, NULL, echo, NULL);
    double t0 = now();
    for (long i = 0; i < TRIPS; i++) {
        atomic_store_explicit(&line, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 2) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
    double t = now() - t0;
    pthread_join(other, NULL);
    return 1e9 * t / TRIPS;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    double *c = malloc(n * sizeof *c);
    for (int i = 0; i < n; i++) c[i] = x[i];
    qsort(c, n, sizeof *c, cmp);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s NEURONS STEPS UPDATES ROUNDS\n", argv[0]);
        return 2;
    }
    n_neurons = atoi(argv[1]), steps = atoi(argv[2]), inner = atoi(argv[3]);
    int rounds = atoi(argv[4]);
    if (n_neurons < 32 || steps < 1 || inner < 1 || rounds < 1) {
        fprintf(stderr, "NEURONS >= 32, STEPS, UPDATES and ROUNDS >= 1\n");
        return 2;
    }
    float **arrays[] = {&v, &ge, &gi, &spike};
    for (int a = 0; a < 4; a++) {
        if (posix_memalign((void **)arrays[a], 64, n_neurons * sizeof(float))) return 1;
    }
    double *one = malloc(rounds * sizeof(double)), *bar = malloc(rounds * sizeof(double)), *free_ = malloc(rounds * sizeof(double));
    double *sb = malloc(rounds * sizeof(double)), *sf = malloc(rounds * sizeof(double)), *rt = malloc(rounds * sizeof(double));
    time_mode(1, 0);  // warm-up
    for (int r = 0; r < rounds; r++) {
        one[r] = time_mode(1, 0);
        bar[r] = time_mode(2, 1);
        free_[r] = time_mode(2, 0);
        sb[r] = one[r] / bar[r];
        sf[r] = one[r] / free_[r];
        rt[r] = round_trip_ns();
        printf("round %2d: 1 %.6f s (%.2f us a step), 2b %.6f s, 2f %.6f s, speed-up 2b %.3f, 2f %.3f, rt %.1f ns\n", r, one[r], 1e6 * one[r] / steps, bar[r], free_[r], sb[r], sf[r], rt[r]);
    }
    printf("medians: 1 %.6f s, 2b %.6f s, 2f %.6f s; speed-up (ratio of medians) 2b %.3f, 2f %.3f; median of rounds' speed-ups 2b %.3f, 2f %.3f; rt %.1f ns\n",
           median(one, rounds), median(bar, rounds), median(free_, rounds), median(one, rounds) / median(bar, rounds),
           median(one, rounds) / median(free_, rounds), median(sb, rounds), median(sf, rounds), median(rt, rounds));
    return 0;
}
