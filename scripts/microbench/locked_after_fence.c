// A locked instruction after CLWB + SFENCE waits for the write-back; work placed before it overlaps.
// Build and run: gcc -O2 -mclwb locked_after_fence.c -o /tmp/lf && /tmp/lf
#include <stdio.h>
#include <stdint.h>
#include <immintrin.h>
#include <time.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
#define N 2000000
static void workr(int w){int s=0; for(int k=0;k<w;k++){s+=k*k; __asm__ volatile(""::"r"(s));}}
int main(){
  int fd=open("/dev/shm/mbfile",O_RDWR|O_CREAT,0600); ftruncate(fd,1<<24); unlink("/dev/shm/mbfile");
  char*p=mmap(0,1<<24,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0);
  for(int i=0;i<1<<24;i+=4096)p[i]=1;
  volatile uint64_t*a=(uint64_t*)p; double t; uint64_t lk=0;
  int ws[]={0,200,400};
  for(int wi=0;wi<3;wi++){int w=ws[wi];
    t=now(); for(long i=0;i<N;i++){workr(w);} double base=(now()-t)/N;
    t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clwb((void*)a);_mm_sfence();workr(w);} printf("w=%3d(%.0fns) clwb sfence regwork   %.1f\n",w,base,(now()-t)/N);
    t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clwb((void*)a);_mm_sfence();__atomic_fetch_add(&lk,1,__ATOMIC_SEQ_CST);workr(w);} printf("w=%3d clwb sfence LOCK regwork        %.1f\n",w,(now()-t)/N);
    t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clwb((void*)a);_mm_sfence();workr(w);__atomic_fetch_add(&lk,1,__ATOMIC_SEQ_CST);} printf("w=%3d clwb sfence regwork LOCK        %.1f\n",w,(now()-t)/N);
    t=now(); for(long i=0;i<N;i++){a[0]=i;_mm_clwb((void*)a);_mm_sfence();workr(w);a[64]=i;} printf("w=%3d clwb sfence regwork store       %.1f\n",w,(now()-t)/N);
    t=now(); for(long i=0;i<N;i++){workr(w);a[0]=i;_mm_clwb((void*)a);_mm_sfence();__atomic_fetch_add(&lk,1,__ATOMIC_SEQ_CST);} printf("w=%3d regwork clwb sfence LOCK        %.1f\n",w,(now()-t)/N);
  }
  return 0;}
