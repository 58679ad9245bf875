// Streaming (movnti) stores into cold and hot lines, with and without loading the line first.
// Build and run: gcc -O2 -mclwb -mavx512f stream_costs.c -o /tmp/sc && /tmp/sc
#include <stdio.h>
#include <stdint.h>
#include <immintrin.h>
#include <x86intrin.h>
#include <time.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
#define N 1000000
int main(){
  int fd=open("/dev/shm/mbfile",O_RDWR|O_CREAT,0600); ftruncate(fd,1<<24); unlink("/dev/shm/mbfile");
  char*P=mmap(0,1<<24,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0);
  for(int i=0;i<1<<24;i+=4096)P[i]=1;
  __m512i v=_mm512_set1_epi64(5);
  double t; volatile uint64_t sink; (void)sink;
  // lines rotate over 4 MiB so each is cold when revisited unless we load it
  #define LINE(i) ((uint64_t*)(P + 64*((i*97)%65536)))
  t=now(); for(long i=0;i<N;i++){uint64_t*a=LINE(i); _mm_stream_si64((long long*)a,i); _mm_sfence();} printf("movnti 8B cold line + sfence          %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){uint64_t*a=LINE(i); sink=*(volatile uint64_t*)a; _mm_stream_si64((long long*)a,i); _mm_sfence();} printf("load + movnti 8B + sfence             %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){uint64_t*a=LINE(i); sink=*(volatile uint64_t*)a;} printf("load alone                            %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){uint64_t*a=LINE(i); _mm512_stream_si512((void*)a,v); _mm_sfence();} printf("64B NT cold line + sfence             %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){uint64_t*a=LINE(i); sink=*(volatile uint64_t*)a; _mm512_stream_si512((void*)a,v); _mm_sfence();} printf("load + 64B NT + sfence                %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){uint64_t*a=LINE(i); sink=*(volatile uint64_t*)a; a[0]=i; _mm_clwb(a); _mm_sfence();} printf("load + store + clwb + sfence          %.1f ns\n",(now()-t)/N);
  // same hot line
  uint64_t*h=(uint64_t*)(P+8192);
  t=now(); for(long i=0;i<N;i++){sink=*(volatile uint64_t*)h; _mm_stream_si64((long long*)h,i); _mm_sfence();} printf("hot line: load + movnti + sfence      %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){_mm_stream_si64((long long*)h,i); _mm_sfence();} printf("hot line: movnti + sfence             %.1f ns\n",(now()-t)/N);
  return 0;}
