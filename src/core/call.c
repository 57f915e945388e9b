/*
 * Timer callbacks: weft_call_at / weft_call_later (asyncio's
 * loop.call_at / call_later, libuv's timers, Go's time.AfterFunc).
 *
 * A handle is a timer node in caller-owned storage, armed in the loop's
 * timer heap like a sleeping task's: arming is a heap insertion, firing a
 * pop and a call of fn from the loop turn (fire_timers in loop.c), with
 * L->current NULL, which is what makes the checkpoints return
 * WEFT_ENOTASK there. No task, stack or allocation: that is the whole
 * saving over a task that sleeps and then does the work.
 *
 * Whether a handle is pending is asked of the heap, not of the handle:
 * weft__timers_holds checks that the heap's own arrays name the node, so
 * a handle with stale contents (copied, or not zeroed before its first
 * use) cannot make us move or delete someone else's heap slot. The
 * handle's `state` only tells the non-pending cases apart for
 * weft_call_cancel's code, and `gen` which loop's heap it was armed on
 * (generations are never reused; see timer.h): a handle left pending when
 * its loop ended still says CALL_ARMED, but with a generation that is no
 * longer alive, so it counts as dropped, not as pending on another loop.
 *
 * A call armed from inside another (during the loop turn's pass over due
 * timers) with a deadline already past is keyed just after that pass's
 * clock (weft__timers_pop_due): it runs at the next turn, and a function
 * that keeps re-arming itself in the past runs once per turn instead of
 * looping inside one. The cost: such calls run in the order armed rather
 * than of their (past) deadlines.
 *
 * The fire path reads fn and arg and marks the handle fired *before*
 * calling fn, and never touches it afterwards: fn may re-arm it, or free
 * the memory it lives in.
 */
#include <errno.h>
#include <stddef.h>

#include "core/internal.h"

enum {
  CALL_IDLE = 0,             /* zeroed */
  CALL_ARMED = 0x61726d64u,  /* "armd": armed; pending unless dropped */
  CALL_FIRED = 0x66697265u,  /* "fire": fn called for the last arming */
  CALL_CANCELLED = 0x636e636cu, /* "cncl" */
};

typedef struct weft__call {
  weft__timer tm;
  void (*fn)(void *arg);
  void *arg;
  uint64_t gen;   /* generation of the heap it was last armed in */
  uint32_t state; /* CALL_* */
} weft__call;

_Static_assert(sizeof(weft__call) <= sizeof(weft_call_handle),
               "weft_call_handle too small for the internal call");
_Static_assert(_Alignof(weft__call) <= _Alignof(weft_call_handle),
               "weft_call_handle under-aligned");

static void call_fire(weft__timer *tm) {
  weft__call *c = weft__container_of(tm, weft__call, tm);
  void (*fn)(void *) = c->fn;
  void *arg = c->arg;
  c->state = CALL_FIRED;
  fn(arg); /* c is not touched again: fn may re-arm or free it */
}

/* c is pending in L's heap. */
static inline bool pending_here(const weft_loop *L, const weft__call *c) {
  return c->state == CALL_ARMED && c->gen == L->timers.gen &&
         weft__timers_holds(&L->timers, &c->tm);
}

/* c (not pending here) is pending on another loop that is still alive. */
static bool pending_elsewhere(const weft_loop *L, const weft__call *c) {
  return c->state == CALL_ARMED && c->gen != L->timers.gen &&
         weft__timers_gen_live(c->gen);
}

static int arm(weft_loop *L, weft__call *c, int64_t deadline,
               void (*fn)(void *), void *arg, const char *func) {
  weft__timers *h = &L->timers;
  if (c->state == CALL_ARMED) { /* the rare paths */
    if (pending_here(L, c)) {
      c->fn = fn;
      c->arg = arg;
      weft__timers_move(h, &c->tm, deadline);
      return 0;
    }
    if (pending_elsewhere(L, c)) return weft__misuse(func, WEFT_ELOOP);
  }
  uint64_t gen = h->gen;
  if (weft__unlikely(!gen) && !(gen = weft__timers_gen(h))) return -ENOMEM;
  c->tm.when = deadline;
  c->tm.fire = call_fire;
  if (weft__unlikely(weft__timers_add(h, &c->tm) != 0)) return -ENOMEM;
  c->fn = fn;
  c->arg = arg;
  c->gen = gen;
  c->state = CALL_ARMED;
  return 0;
}

int weft_call_at(weft_call_handle *c, int64_t deadline, void (*fn)(void *arg),
                 void *arg) {
  if (weft__unlikely(!c || !fn)) return -EINVAL;
  weft_loop *L = weft__tls_loop;
  if (weft__unlikely(!L)) return weft__misuse(__func__, WEFT_ENOTASK);
  return arm(L, (weft__call *)c, deadline, fn, arg, __func__);
}

int weft_call_later(weft_call_handle *c, int64_t duration,
                    void (*fn)(void *arg), void *arg) {
  if (weft__unlikely(!c || !fn)) return -EINVAL;
  weft_loop *L = weft__tls_loop;
  if (weft__unlikely(!L)) return weft__misuse(__func__, WEFT_ENOTASK);
  return arm(L, (weft__call *)c, weft__deadline_after(L, duration), fn, arg,
             __func__);
}

int weft_call_cancel(weft_call_handle *pc) {
  weft__call *c = (weft__call *)pc;
  if (!c) return -EINVAL;
  weft_loop *L = weft__tls_loop;
  if (!L) return weft__misuse(__func__, WEFT_ENOTASK);
  if (pending_here(L, c)) {
    weft__timers_del(&L->timers, &c->tm);
    c->state = CALL_CANCELLED;
    return 0;
  }
  if (pending_elsewhere(L, c)) return weft__misuse(__func__, WEFT_ELOOP);
  return c->state == CALL_FIRED ? -EALREADY : -ENOENT;
}

bool weft_call_pending(const weft_call_handle *pc) {
  const weft__call *c = (const weft__call *)pc;
  weft_loop *L = weft__tls_loop;
  return c && L && pending_here(L, c);
}
