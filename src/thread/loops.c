/*
 * Several loops: weft_run_threads starts one loop per thread and joins
 * them. Each loop is an ordinary weft_run on its own thread; nothing is
 * shared between them but what the caller shares.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "thread/layer.h"

typedef struct loop_thread {
  pthread_t th;
  weft_fn main;
  void *arg;
  size_t index;
  int result;
} loop_thread;

static void *loop_thread_main(void *p) {
  loop_thread *lt = p;
  char name[16];
  snprintf(name, sizeof name, "weft-loop-%zu", lt->index);
  pthread_setname_np(pthread_self(), name);
  lt->result = weft_run(lt->main, lt->arg);
  return NULL;
}

int weft_run_threads(size_t n, weft_fn main, void *const *args, int *results) {
  if (!n || !main) return -EINVAL;
  loop_thread *lt = calloc(n, sizeof *lt);
  if (!lt) return -ENOMEM;
  int rc = 0;
  size_t started = 0;
  for (; started < n; started++) {
    loop_thread *x = &lt[started];
    x->main = main;
    x->arg = args ? args[started] : NULL;
    x->index = started;
    int e = pthread_create(&x->th, NULL, loop_thread_main, x);
    if (e) {
      rc = -e;
      break;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (i < started) pthread_join(lt[i].th, NULL);
    if (results) results[i] = i < started ? lt[i].result : rc;
  }
  free(lt);
  return rc;
}
