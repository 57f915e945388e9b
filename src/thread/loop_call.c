/*
 * weft_loop_call: a callback run on a loop's thread, posted from any
 * thread through the loop's inbox (src/core/inbox.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "thread/layer.h"

typedef struct call_msg {
  weft__msg msg;
  void (*cb)(void *);
  void *arg;
} call_msg;

static void call_run(weft_loop *L, weft__msg *m) {
  call_msg *c = (call_msg *)m;
  (void)L;
  c->cb(c->arg);
  free(c);
}

int weft_loop_call(weft_loop *loop, void (*cb)(void *), void *arg) {
  if (!loop || !cb) return -EINVAL;
  call_msg *c = malloc(sizeof *c);
  if (!c) return -ENOMEM;
  c->msg.run = call_run;
  c->cb = cb;
  c->arg = arg;
  int rc = weft__loop_post(loop, &c->msg);
  if (rc) free(c);
  return rc;
}
