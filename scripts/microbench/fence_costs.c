// Fence costs: store/CLWB/CLFLUSHOPT/streaming stores + SFENCE, one or several lines, on a /dev/shm
// mapping. Build and run: gcc -O2 -mavx512f -mclwb -mclflushopt fence_costs.c -o /tmp/fc && /tmp/fc
#include <stdio.h>
#include <stdint.h>
#include <immintrin.h>
#include <time.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
#define N 2000000
int main(){
  int fd=open("/dev/shm/mbfile",O_RDWR|O_CREAT,0600); ftruncate(fd,1<<24); unlink("/dev/shm/mbfile");
  char*p=mmap(0,1<<24,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0);
  for(int i=0;i<1<<24;i+=4096)p[i]=1;
  volatile uint64_t*a=(uint64_t*)p; double t;
  t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_sfence();} printf("store+sfence          %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clwb((void*)a);_mm_sfence();} printf("store+clwb+sfence     %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clflushopt((void*)a);_mm_sfence();} printf("store+clflushopt+sf   %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){a[0]=i;a[8]=i;_mm_clwb((void*)a);_mm_clwb((void*)(a+8));_mm_sfence();} printf("2 lines clwb+sfence   %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){for(int k=0;k<4;k++)a[8*k]=i;for(int k=0;k<4;k++)_mm_clwb((void*)(a+8*k));_mm_sfence();} printf("4 lines clwb+sfence   %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){_mm_stream_si64((long long*)a,i);_mm_sfence();} printf("movnti 8B+sfence      %.1f ns\n",(now()-t)/N);
  __m512i v=_mm512_set1_epi64(3);
  t=now(); for(long i=0;i<N;i++){_mm512_stream_si512((void*)a,v);_mm_sfence();} printf("64B nt zmm+sfence     %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){_mm512_stream_si512((void*)a,v);_mm512_stream_si512((void*)(a+8),v);_mm_sfence();} printf("2x64B nt+sfence       %.1f ns\n",(now()-t)/N);
  // clwb then spin work before fence
  t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clwb((void*)a); for(volatile int k=0;k<20;k++); _mm_sfence();} printf("clwb+work20+sfence    %.1f ns\n",(now()-t)/N);
  t=now(); for(long i=0;i<N;i++){ for(volatile int k=0;k<20;k++);} printf("work20                %.1f ns\n",(now()-t)/N);
  // read after clwb
  t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clwb((void*)a);_mm_sfence(); (void)a[1];} printf("clwb+sf+read same     %.1f ns\n",(now()-t)/N);
  // clwb of clean line
  t=now(); for(long i=0;i<N;i++){(void)a[16];_mm_clwb((void*)(a+16));_mm_sfence();} printf("clwb clean+sfence     %.1f ns\n",(now()-t)/N);
  // different lines rotating
  t=now(); for(long i=0;i<N;i++){volatile uint64_t*b=a+8*(i&1023); b[0]=i;_mm_clwb((void*)b);_mm_sfence();} printf("rot lines clwb+sf     %.1f ns\n",(now()-t)/N);
  return 0;}
