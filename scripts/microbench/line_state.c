// Is a line still cached after a streaming store (reload latency in cycles)? And is it clean
// (clflush cost after a streaming store vs after CLWB vs a dirty line)?
// Build and run: gcc -O2 -mclwb line_state.c -o /tmp/ls && /tmp/ls
#include <stdio.h>
#include <stdint.h>
#include <immintrin.h>
#include <x86intrin.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
static inline uint64_t lat(volatile uint64_t*p){unsigned a; _mm_mfence(); uint64_t t=__rdtscp(&a); (void)*p; uint64_t u=__rdtscp(&a); return u-t;}
static int reload(void){
  int fd=open("/dev/shm/mbfile",O_RDWR|O_CREAT,0600); ftruncate(fd,1<<24); unlink("/dev/shm/mbfile");
  char*P=mmap(0,1<<24,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0);
  for(int i=0;i<1<<24;i+=4096)P[i]=1;
  uint64_t s[6]={0};
  for(int r=0;r<2000;r++){
    volatile uint64_t*a=(uint64_t*)(P+ 8192 + 64*(r%512));
    (void)a[1]; _mm_mfence();               // line cached
    s[0]+=lat(a+2);                          // baseline hit
    _mm_stream_si64((long long*)a,r); _mm_sfence(); _mm_mfence();
    s[1]+=lat(a+2);                          // after NT store to cached line
    _mm_clflush((void*)a); _mm_mfence();
    s[2]+=lat(a+2);                          // after clflush: miss
    _mm_stream_si64((long long*)a,r); _mm_sfence(); _mm_mfence();
    s[3]+=lat(a+2);                          // after NT store to uncached line
    a[3]=r; _mm_clwb((void*)a); _mm_sfence(); _mm_mfence();
    s[4]+=lat(a+2);                          // after clwb
  }
  printf("cycles: hit %lu | after NT to cached %lu | after clflush %lu | after NT to uncached %lu | after clwb %lu\n", s[0]/2000,s[1]/2000,s[2]/2000,s[3]/2000,s[4]/2000);
  return 0;}

static inline uint64_t tflush(void*p){unsigned a; _mm_mfence(); uint64_t t=__rdtscp(&a); _mm_clflush(p); _mm_mfence(); uint64_t u=__rdtscp(&a); return u-t;}
static int clean(void){
  int fd=open("/dev/shm/mbfile",O_RDWR|O_CREAT,0600); ftruncate(fd,1<<24); unlink("/dev/shm/mbfile");
  char*P=mmap(0,1<<24,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0);
  for(int i=0;i<1<<24;i+=4096)P[i]=1;
  uint64_t s[5]={0}; int R=5000;
  for(int r=0;r<R;r++){
    volatile uint64_t*a=(uint64_t*)(P+ 65536 + 64*(r%1024));
    _mm_clflush((void*)a); _mm_mfence();
    (void)a[1]; _mm_mfence(); s[0]+=tflush((void*)a);            // clean cached line
    (void)a[1]; a[2]=r; _mm_mfence(); s[1]+=tflush((void*)a);     // dirty cached line
    (void)a[1]; _mm_stream_si64((long long*)a,r); _mm_sfence(); _mm_mfence(); s[2]+=tflush((void*)a); // NT to cached
    _mm_stream_si64((long long*)a,r); _mm_sfence(); _mm_mfence(); s[3]+=tflush((void*)a); // NT to uncached
    (void)a[1]; a[2]=r; _mm_clwb((void*)a); _mm_sfence(); _mm_mfence(); s[4]+=tflush((void*)a); // after clwb (clean)
  }
  printf("clflush cycles: clean %lu | dirty %lu | after NT to cached %lu | after NT to uncached %lu | after store+clwb %lu\n",s[0]/R,s[1]/R,s[2]/R,s[3]/R,s[4]/R);
  return 0;}
int main(void){ reload(); return clean(); }
