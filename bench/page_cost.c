/* What a fresh page of memory costs this machine: 650 fresh 4 kB pages touched one by one, the
 * same after madvise(MADV_POPULATE_WRITE), the same pages touched again, and 4 MB touched in
 * 4 kB pages against 4 MB in transparent huge pages (madvise(MADV_HUGEPAGE); needs
 * /sys/kernel/mm/transparent_hugepage/enabled at madvise or always). Means over 20 rounds, µs.
 * Build and run: gcc -O2 bench/page_cost.c -o /tmp/page_cost && /tmp/page_cost
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static char *map(size_t n) {
  char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); _exit(1); }
  return p;
}

static double touch(volatile char *p, size_t n, char v) {
  double t = now_us();
  for (size_t i = 0; i < n; i += 4096) p[i] = v;
  return now_us() - t;
}

int main(void) {
  const int rounds = 20;
  const size_t small = 650 * 4096, big = 4 << 20, huge = 2 << 20;
  double fresh = 0, populated = 0, again = 0, pages4k = 0, thp = 0;
  for (int r = 0; r < rounds; r++) {
    char *p = map(small);
    fresh += touch(p, small, 1);
    again += touch(p, small, 2);
    munmap(p, small);
    p = map(small);
    double t = now_us();
    if (madvise(p, small, MADV_POPULATE_WRITE)) perror("madvise(MADV_POPULATE_WRITE)");
    populated += now_us() - t + touch(p, small, 1);
    munmap(p, small);
    p = map(big);
    pages4k += touch(p, big, 1);
    munmap(p, big);
    char *raw = map(big + huge);
    char *h = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (madvise(h, big, MADV_HUGEPAGE)) perror("madvise(MADV_HUGEPAGE)");
    thp += touch(h, big, 1);
    munmap(raw, big + huge);
  }
  printf("650 fresh 4 kB pages: touched %.1f us, populated then touched %.1f us, touched again %.1f us\n",
         fresh / rounds, populated / rounds, again / rounds);
  printf("4 MB: in 4 kB pages %.1f us, in transparent huge pages %.1f us\n", pages4k / rounds, thp / rounds);
  return 0;
}
