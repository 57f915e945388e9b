/*
 * thread_offload.c -- blocking code off the loop: weft_to_thread, an
 * executor with a cleanup, cancelling a task whose job is running, and
 * the file helpers.
 *
 *   gcc -I include examples/thread_offload.c -L build/lib -lweft -o offload && LD_LIBRARY_PATH=build/lib ./offload
 *
 * asyncio.to_thread(f, x)             weft_to_thread(f, x, &result)
 * loop.run_in_executor(ex, f, x)      weft_executor_run(ex, f, x, cleanup, &result)
 * ThreadPoolExecutor(4), shutdown()   weft_executor_new(4), weft_executor_shutdown
 * Path.read_bytes / an atomic write   weft_file_read, weft_file_write_atomic
 *
 * Exits 0 when every behaviour was as expected.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

static int unexpected;

static void check(int ok, const char *what) {
  printf("   %s %s\n", ok ? "ok " : "UNEXPECTED:", what);
  if (!ok) unexpected++;
}

/* A blocking function: sleeps (the whole thread) and returns a string. */
static void *slow_greeting(void *arg) {
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, NULL);
  char *s = malloc(64);
  if (s) snprintf(s, 64, "hello, %s", (const char *)arg);
  return s;
}

/* Frees what a cancelled caller never got (the one rule: called exactly
 * once for every weft_executor_run that returns an error). */
static int cleanups;
static void free_greeting(void *arg, void *result, int status) {
  (void)arg, (void)status;
  free(result);
  cleanups++; /* a pool thread: fine here, read after shutdown waited */
}

static int ticks;
static int ticker(void *arg) {
  (void)arg;
  int rc;
  while ((rc = weft_sleep(WEFT_MS(5))) == 0) ticks++;
  return rc; /* -ECANCELED: it was cancelled, and says so */
}

static int greeter(void *ex) {
  char *s = NULL;
  int rc = weft_executor_run(ex, slow_greeting, "pool", free_greeting,
                             (void **)&s);
  free(s);
  return rc;
}

static int main_task(void *arg) {
  (void)arg;
  printf("1. weft_to_thread suspends only the calling task:\n");
  weft_task *t = weft_spawn(ticker, NULL, NULL);
  char *s = NULL;
  int rc = weft_to_thread(slow_greeting, "world", (void **)&s);
  check(rc == 0 && s && !strcmp(s, "hello, world"), s ? s : "(null)");
  check(ticks >= 3, "the loop kept ticking meanwhile");
  free(s);
  weft_cancel(t);
  weft_join(t);

  printf("2. a task cancelled while its job runs returns at once:\n");
  weft_executor *ex = weft_executor_new(4);
  if (!ex) return -errno;
  weft_task *g = weft_spawn(greeter, ex, NULL);
  weft_sleep(WEFT_MS(10)); /* the job is running now */
  int64_t t0 = weft_now();
  weft_cancel(g);
  check(weft_join(g) == -ECANCELED, "-ECANCELED");
  check(weft_now() - t0 < WEFT_MS(40), "without waiting for the job");
  weft_executor_shutdown(ex, WEFT_EXECUTOR_WAIT); /* the job finishes */
  check(cleanups == 1, "its result went to the cleanup");
  weft_executor_free(ex);

  printf("3. files on the pool:\n");
  char path[64];
  snprintf(path, sizeof path, "/tmp/weft-offload-%d.txt", (int)getpid());
  const char *text = "written atomically\n";
  check(weft_file_write_atomic(path, text, strlen(text)) == 0, "write");
  char *data = NULL;
  size_t len = 0;
  check(weft_file_read(path, &data, &len) == 0 && len == strlen(text) &&
            !memcmp(data, text, len),
        "read it back");
  free(data);
  unlink(path);
  return unexpected ? -EPROTO : 0;
}

int main(void) {
  int rc = weft_run(main_task, NULL);
  if (rc) fprintf(stderr, "thread_offload: %s\n", weft_strerror(rc));
  return rc ? 1 : 0;
}
