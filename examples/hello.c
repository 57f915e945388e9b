/*
 * hello.c -- the smallest weft program: a loop, one task, a join.
 *
 *   gcc -I include examples/hello.c -L build/lib -lweft -o hello && LD_LIBRARY_PATH=build/lib ./hello
 *
 * weft_run makes an event loop on this thread and runs `main_task` as its
 * root task. The root spawns a child; weft_join waits for it (the root is
 * suspended meanwhile, so the loop runs the child) and returns its result.
 */
#include <errno.h>
#include <stdio.h>

#include "weft.h"

static int greet(void *arg) {
  const char *who = arg;
  weft_sleep(WEFT_MS(10)); /* a checkpoint: other tasks may run meanwhile */
  printf("hello, %s (from %s)\n", who, weft_task_name(weft_current()));
  return 0;
}

static int main_task(void *arg) {
  (void)arg;
  weft_spawn_opts opts = {.name = "greeter"};
  weft_task *t = weft_spawn(greet, "world", &opts);
  if (!t) return -errno;
  return weft_join(t); /* the handle is released by the join */
}

int main(void) {
  int rc = weft_run(main_task, NULL);
  if (rc) fprintf(stderr, "hello: %s\n", weft_strerror(rc));
  return rc ? 1 : 0;
}
