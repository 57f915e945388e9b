/* Event: a flag tasks wait on. set wakes every waiter at once. */
#include "sync/sobj.h"

struct weft_event {
  weft__sobj h;
  bool set;
  weft__wlist waiters;
};

_Static_assert(offsetof(weft_event, h) == 0, "header first");

static void event_release(weft__sobj *o) { free(o); }

static const weft__wait_kind event_kind = {"event", NULL};

static void event_kill(weft__sobj *o) {
  wl_wake_all(&((weft_event *)o)->waiters, -EIDRM);
}

weft_event *weft_event_new(void) {
  weft_event *e = malloc(sizeof *e);
  if (!e) return NULL;
  sobj_init(&e->h, SO_EVENT, event_release);
  e->set = false;
  e->waiters = (weft__wlist){0};
  return e;
}

int weft_event_free(weft_event *e) {
  return sobj_free(SOBJ(e), SO_EVENT, __func__, event_kill);
}

int weft_event_set(weft_event *e) {
  int rc = sobj_check(SOBJ(e), SO_EVENT, weft__tls_loop, __func__);
  if (rc) return rc;
  if (!e->set) {
    e->set = true;
    wl_wake_all(&e->waiters, 0);
  }
  return 0;
}

int weft_event_clear(weft_event *e) {
  int rc = sobj_check(SOBJ(e), SO_EVENT, weft__tls_loop, __func__);
  if (rc) return rc;
  e->set = false;
  return 0;
}

int weft_event_wait(weft_event *e) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  int rc = sobj_check_wait(SOBJ(e), SO_EVENT, L, &t, __func__);
  if (rc) return rc;
  if (e->set) return 0;
  return sobj_wait(L, t, &e->waiters, NULL, 0, true, &event_kind, e);
}

bool weft_event_is_set(const weft_event *e) {
  return sobj_live(e, SO_EVENT) && e->set;
}
