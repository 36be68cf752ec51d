// bench/campaign/cma.c - process_vm_readv against memcpy from a shared segment, as a
// window two-shot would read a peer's slice: a child writes S bytes each round (mode 0:
// its private buffer, which the parent reads with process_vm_readv in C-byte calls;
// mode 1: a shared mapping, which the parent memcpys), then waits for the parent.
// Prints S / time per round (writer + reader). bench/RESULTS.md, eighth session.
//   gcc -O2 -o /tmp/cma bench/campaign/cma.c && /tmp/cma 1048576 262144 2000 0
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <time.h>
#include <sched.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t S=atol(argv[1]); size_t C=atol(argv[2]); int iters=atoi(argv[3]); int mode=atoi(argv[4]);
  volatile _Atomic long *flags=mmap(0,4096,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  char *shm=mmap(0,S,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  char *src=aligned_alloc(4096,S); memset(src,1,S);
  char *tmp=aligned_alloc(4096,S); memset(tmp,0,S);
  flags[0]=0; flags[1]=0; flags[2]=(long)src;
  pid_t child=fork();
  if(child==0){ cpu_set_t s;CPU_ZERO(&s);CPU_SET(1,&s);sched_setaffinity(0,sizeof s,&s);
    for(int i=0;i<iters;i++){ // write buffer, publish, wait for reader
      if(mode==0) memset(src,i,S); else memset(shm,i,S);
      atomic_store(&flags[0],i+1);
      while(atomic_load(&flags[1])!=i+1);
    } _exit(0);}
  cpu_set_t s;CPU_ZERO(&s);CPU_SET(0,&s);sched_setaffinity(0,sizeof s,&s);
  double t0=0;
  for(int i=0;i<iters;i++){
    if(i==iters/10) t0=now();
    while(atomic_load(&flags[0])!=i+1);
    for(size_t o=0;o<S;o+=C){ size_t n=C< S-o?C:S-o;
      if(mode==0){ struct iovec l={tmp+(o% (C*4)),n}, r={src+o,n}; if(process_vm_readv(child,&l,1,&r,1,0)!=(ssize_t)n){perror("cma");return 1;} }
      else memcpy(tmp+(o%(C*4)),shm+o,n);
    }
    atomic_store(&flags[1],i+1);
  }
  double t=now()-t0; int n=iters-iters/10;
  printf("%s S=%zu C=%zu: %.2f GB/s (incl. writer memset)\n",mode?"shm memcpy":"cma",S,C,(double)S*n/t/1e9);
  wait(0); return 0;}
