/*
 * thread_submit.c -- other threads talking to loops: a plain thread
 * submits tasks to a loop and waits for their futures, a callback runs on
 * the loop's thread, and two loops (weft_run_threads) call each other.
 *
 *   gcc -I include examples/thread_submit.c -L build/lib -lweft -lpthread -o submit && LD_LIBRARY_PATH=build/lib ./submit
 *
 * asyncio.run_coroutine_threadsafe(c, loop)   weft_loop_submit(loop, fn, arg)
 * future.result(timeout)                      weft_future_wait_until(f, &result, deadline)
 * loop.call_soon_threadsafe(cb, x)            weft_loop_call(loop, cb, x)
 * one asyncio.run per thread                  weft_run_threads(n, main, args, results)
 *
 * Exits 0 when every behaviour was as expected.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "weft.h"

static int square(void *arg) {
  weft_sleep(WEFT_MS(1)); /* a task: it may block on the loop */
  int x = (int)(intptr_t)arg;
  return x * x;
}

/* ---- a plain thread and a loop -------------------------------------- */

struct shared {
  weft_loop *loop; /* referenced: valid even after the loop ends */
  weft_scope stop; /* the loop's main sleeps in it */
  int sum;
};

static void stop_main(void *arg) { /* on the loop's thread */
  weft_scope_cancel(&((struct shared *)arg)->stop);
}

static void *plain_thread(void *arg) {
  struct shared *sh = arg;
  weft_future *f[10];
  for (int i = 0; i < 10; i++)
    f[i] = weft_loop_submit(sh->loop, square, (void *)(intptr_t)i);
  for (int i = 0; i < 10; i++) {
    int r = 0;
    if (f[i] && weft_future_wait_until(f[i], &r, weft_now() + WEFT_SEC(5)) == 0)
      sh->sum += r;
    weft_future_free(f[i]);
  }
  weft_loop_call(sh->loop, stop_main, sh);
  return NULL;
}

static int server_main(void *arg) {
  struct shared *sh = arg;
  sh->loop = weft_loop_ref(weft_loop_current());
  weft_scope_open(&sh->stop, WEFT_FOREVER);
  pthread_t th;
  if (pthread_create(&th, NULL, plain_thread, sh) != 0) return -EAGAIN;
  weft_sleep_until(WEFT_FOREVER); /* serves submissions until stop_main */
  weft_scope_close(&sh->stop);
  pthread_join(th, NULL); /* it has finished: this does not block long */
  return 0;
}

/* ---- two loops ---------------------------------------------------------- */

static weft_loop *loops[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done;

static int peer_main(void *arg) {
  int me = (int)(intptr_t)arg, other = 1 - me;
  pthread_mutex_lock(&mu);
  loops[me] = weft_loop_ref(weft_loop_current());
  pthread_cond_broadcast(&cv);
  while (!loops[other]) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  /* From a task, only the task waits for the other loop's answer. */
  weft_future *f = weft_loop_submit(loops[other], square, (void *)(intptr_t)(me + 3));
  int r = -1;
  weft_future_wait(f, &r);
  weft_future_free(f);
  pthread_mutex_lock(&mu);
  done++;
  pthread_mutex_unlock(&mu);
  for (;;) { /* keep serving the other loop until it has its answer too */
    pthread_mutex_lock(&mu);
    int all = done == 2;
    pthread_mutex_unlock(&mu);
    if (all) break;
    weft_sleep(WEFT_MS(1));
  }
  return r;
}

int main(void) {
  struct shared sh = {0};
  int rc = weft_run(server_main, &sh);
  printf("sum of squares 0..9 from a plain thread: %d\n", sh.sum);
  weft_loop_unref(sh.loop);

  void *args[2] = {(void *)0, (void *)1};
  int results[2] = {0, 0};
  int rc2 = weft_run_threads(2, peer_main, args, results);
  printf("loop 0 got %d, loop 1 got %d from the other\n", results[0], results[1]);
  weft_loop_unref(loops[0]);
  weft_loop_unref(loops[1]);
  int ok = rc == 0 && rc2 == 0 && sh.sum == 285 && results[0] == 9 &&
           results[1] == 16;
  if (!ok) fprintf(stderr, "thread_submit: unexpected results\n");
  return ok ? 0 : 1;
}
