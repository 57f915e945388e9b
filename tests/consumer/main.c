/* A program built against an installed weft (make consumer): sleeps 1 ms,
 * spawns and joins one task. Exit status 0 on success. */
#include <stdio.h>
#include <weft.h>

static int child(void *arg) {
  *(int *)arg = 42;
  return weft_sleep(WEFT_MS(1));
}

static int root(void *arg) {
  (void)arg;
  int value = 0;
  int64_t t0 = weft_now();
  int rc = weft_sleep(WEFT_MS(1));
  if (rc != 0)
    return rc;
  if (weft_now() - t0 < WEFT_MS(1))
    return -1;
  weft_task *t = weft_spawn(child, &value, NULL);
  if (!t)
    return -2;
  rc = weft_join(t);
  if (rc != 0)
    return rc;
  return value == 42 ? 0 : -3;
}

int main(void) {
  int rc = weft_run(root, NULL);
  printf("consumer: weft %s: %s\n", WEFT_VERSION_STRING,
         rc == 0 ? "ok" : weft_strerror(rc));
  return rc == 0 ? 0 : 1;
}
