/*
 * spawn_floor.c -- the floor of the spawn_proc workload: no event loop,
 * no library, just posix_spawn and waitpid, n runs of /bin/true with 10
 * children in flight (a reaped child is replaced at once). What any
 * runtime pays per process on this machine at the least.
 *
 *   cc -O2 -o spawn_floor bench/peers/spawn_floor.c && ./spawn_floor [N]
 *
 * One JSON line in the peer kit's format (peer "c-posix_spawn").
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int spawn_true(void) {
  char *argv[] = {"/bin/true", NULL};
  pid_t pid;
  return posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000;
  if (n < 1) {
    fprintf(stderr, "usage: spawn_floor [N]\n");
    return 2;
  }
  double t0 = now();
  long started = 0, done = 0;
  while (started < n && started < 10) {
    if (spawn_true()) return 1;
    started++;
  }
  while (done < n) {
    int st;
    if (waitpid(-1, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) return 1;
    done++;
    if (started < n) {
      if (spawn_true()) return 1;
      started++;
    }
  }
  double wall = now() - t0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"peer\": \"c-posix_spawn\", \"workload\": \"spawn_proc\", \"n\": %ld, "
         "\"ns_per_op\": %.1f, \"wall_s\": %.4f, \"peak_rss_kib\": %ld}\n",
         n, wall * 1e9 / n, wall, ru.ru_maxrss);
  return 0;
}
