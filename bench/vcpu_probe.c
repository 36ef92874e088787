/* What the two vCPUs of this guest give, beside docs/benchmarks.md (eighth round):
 * a cache-line round trip between a thread pinned to CPU 0 and one pinned to CPU 1
 * (ns), then a 768 KiB read-modify-write sweep (2000 passes) on CPU 0 alone and on both
 * CPUs at once (s each).
 *
 *   gcc -O2 -march=native -pthread bench/vcpu_probe.c -o /tmp/vcpu_probe
 *   for i in $(seq 8); do /tmp/vcpu_probe; sleep 2; done
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <time.h>
#include <string.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
static _Alignas(128) atomic_long flag;
static int N=200000;
static void* pong(void*a){pin(1);for(long i=0;i<N;i++){while(atomic_load_explicit(&flag,memory_order_acquire)!=2*i+1);atomic_store_explicit(&flag,2*i+2,memory_order_release);}return 0;}
/* streaming: each thread sweeps its own buffer of SZ bytes, read+write */
#define SZ (768*1024)
static atomic_int go; static double tt[2];
static void* sweep(void*a){int c=(int)(long)a;pin(c);float*b=aligned_alloc(4096,SZ);memset(b,0,SZ);size_t n=SZ/4;
 while(!atomic_load(&go));double t0=now();for(int r=0;r<2000;r++){for(size_t i=0;i<n;i++)b[i]=b[i]*0.999f+1.0f;}tt[c]=now()-t0;free(b);return 0;}
int main(int argc,char**argv){pin(0);pthread_t t;atomic_store(&flag,0);
 pthread_create(&t,0,pong,0);double t0=now();for(long i=0;i<N;i++){atomic_store_explicit(&flag,2*i+1,memory_order_release);while(atomic_load_explicit(&flag,memory_order_acquire)!=2*i+2);}double dt=now()-t0;pthread_join(t,0);
 /* alone */
 atomic_store(&go,1);sweep((void*)0);double alone=tt[0];
 atomic_store(&go,0);pthread_t a,b;pthread_create(&a,0,sweep,(void*)0);pthread_create(&b,0,sweep,(void*)1);atomic_store(&go,1);pthread_join(a,0);pthread_join(b,0);
 printf("pingpong_ns %.0f sweep_alone %.3f sweep_pair %.3f %.3f\n",dt/N*1e9,alone,tt[0],tt[1]);}
