/*
 * The life cycle of a loop: weft_run (asyncio.run), the runner
 * (asyncio.Runner), configuration and instruments. A loop is made on the
 * calling thread, runs root tasks to completion with the scheduler of
 * loop.c, and when it is done cancels and reaps what is left and frees
 * everything.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/fiber.h"
#include "core/internal.h"

void weft_config_init(weft_config *cfg) {
  if (!cfg) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->guard_pages = 1;
  cfg->debug = -1;
  cfg->ps_socket = -1;
}

/* An environment variable set to something other than "" or "0". */
static bool env_flag(const char *name) {
  const char *e = getenv(name);
  return e && *e && strcmp(e, "0") != 0;
}

static weft_loop *loop_new(const weft_config *cfg) {
  weft_config def;
  if (!cfg) {
    weft_config_init(&def);
    cfg = &def;
  }
  weft_loop *L = calloc(1, sizeof *L);
  if (!L) return NULL;
  L->debug = cfg->debug < 0 ? env_flag("WEFT_DEBUG") : cfg->debug != 0;
  L->spin_ns = cfg->poll_spin < 0 ? 0 : cfg->poll_spin ? cfg->poll_spin : WEFT_US(50);
  L->sig_slot = -1;
  L->shutdown_signals = cfg->shutdown_signals;
  weft__stacks_init(&L->stacks, cfg->stack_size, cfg->stack_pool,
                    cfg->guard_pages != 0, L->debug);
  int err;
  if (!(L->poller = weft__poller_new())) {
    err = -errno;
    goto fail;
  }
  L->tsc_usable = weft__tsc_invariant();
  weft__inbox_init(L);
  if ((err = weft__layers_start(L)) != 0) goto fail;
  L->now = weft__clock_sample(L);
  if (cfg->instrument) {
    L->instr[L->ninstr].ins = cfg->instrument;
    L->instr[L->ninstr++].arg = cfg->instrument_arg;
  }
  weft__fiber_thread_init();
  weft__tls_loop = L;
  weft__loop_register(L);
  if (L->debug) weft__debug_start(L);
  weft__trace_start(L, cfg);
  weft__ps_start(L, cfg);
  /* Run time per task, for the dump: when someone is looking (not for a
   * trace alone, whose spans say it, and which must stay cheap). */
  bool stats = L->debug || cfg->ps_socket > 0 ||
               (cfg->ps_socket < 0 && env_flag("WEFT_PS"));
  if (stats && L->ninstr < WEFT__MAX_INSTR) {
    L->instr[L->ninstr].ins = &weft__stats_instrument;
    L->instr[L->ninstr++].arg = NULL;
    L->stats = true; /* (only if measured: the dump says "not measured") */
  }
  return L;
fail:
  if (L->poller) {
    weft__poller_stop(L->poller);
    weft__poller_free(L->poller);
  }
  weft__stacks_destroy(&L->stacks);
  free(L);
  errno = -err; /* EMFILE, ENFILE, ENOMEM... */
  return NULL;
}

/* Cancels every task left, runs until all have finished, frees it all. */
static void loop_free(weft_loop *L) {
  L->stopping = true;
  for (weft_task *t = L->all_head; t; t = t->all_next)
    if (t->state != WEFT__T_DONE) weft__task_cancel(t);
  /* Other threads' messages that arrive meanwhile are still handled;
   * closing the inbox may run callbacks that spawn tasks: reap those too. */
  do weft__run_until(L, NULL);
  while (weft__inbox_close(L));
  /* The upper layers' part of the end (asyncio.run's
   * shutdown_default_executor: a layer waits for the work it was left
   * with, and stops threads of its own). Once every task has finished,
   * and before the frees, so that such threads are gone (not polling)
   * when the munmaps below shoot TLBs down. */
  weft__layers_stop(L);
  weft__ps_stop(L);
  weft__trace_stop(L);
  if (L->debug) weft__debug_stop(L);
  for (weft_task *t = L->all_head, *n; t; t = n) {
    n = t->all_next;
    weft__task_free(L, t);
  }
  for (task_chunk *c = L->chunks, *n; c; c = n) {
    n = c->next;
    munmap(c, c->bytes);
  }
  weft__groups_free(L);
  weft__timers_free(&L->timers);
  weft__stacks_destroy(&L->stacks);
  weft__poller_stop(L->poller);
  weft__fds_free(L);
  weft__loop_unregister(L);
  weft__tls_loop = NULL;
  /* The struct (and the poller's wake channel, which holders of a
   * reference may still use) lives until the last weft_loop_unref. */
  weft_loop_unref(L);
}

static weft_task *spawn_root(weft_loop *L, weft_fn fn, void *arg) {
  weft_spawn_opts o = {.name = "main"};
  weft_task *t = weft__task_new(L, fn, arg, &o);
  if (!t) return NULL;
  t->flags |= TF_HANDLE | TF_ROOT;
  WEFT__INSTR(L, task_spawned, t);
  weft__ready(L, t);
  return t;
}

/* Runs fn as a root task to completion; returns its result. The
 * shutdown signals are caught for this time only, as asyncio.Runner.run
 * does: between runs and during the final clean-up they have their
 * previous meaning. */
static int run_root(weft_loop *L, weft_fn fn, void *arg) {
  int rc;
  if (L->shutdown_signals && (rc = weft__shutdown_add(L)) != 0) return rc;
  weft_task *t = spawn_root(L, fn, arg);
  if (!t) {
    weft__shutdown_remove(L);
    return -ENOMEM;
  }
  L->root = t;
  weft__run_until(L, t);
  L->root = NULL;
  weft__shutdown_remove(L);
  rc = t->result;
  t->flags &= ~TF_HANDLE;
  weft__task_free(L, t);
  return rc;
}

int weft_run_with(const weft_config *cfg, weft_fn main, void *arg) {
  if (!main) return -EINVAL;
  if (weft__tls_loop) return -EBUSY;
  weft_loop *L = loop_new(cfg);
  if (!L) return -errno;
  int rc = run_root(L, main, arg);
  loop_free(L);
  return rc;
}

int weft_run(weft_fn main, void *arg) { return weft_run_with(NULL, main, arg); }

struct weft_runner {
  weft_loop *loop;
  pthread_t thread;
};

weft_runner *weft_runner_open(const weft_config *cfg) {
  if (weft__tls_loop) {
    errno = EBUSY;
    return NULL;
  }
  weft_runner *r = malloc(sizeof *r);
  if (!r) return NULL;
  r->loop = loop_new(cfg);
  if (!r->loop) {
    int e = errno;
    free(r);
    errno = e;
    return NULL;
  }
  r->thread = pthread_self();
  return r;
}

static int runner_check(weft_runner *r, const char *func) {
  if (!r) return -EINVAL;
  if (!pthread_equal(r->thread, pthread_self()) || weft__tls_loop != r->loop)
    return weft__misuse(func, WEFT_ELOOP);
  if (r->loop->current) return -EBUSY;
  return 0;
}

int weft_runner_run(weft_runner *r, weft_fn fn, void *arg) {
  int rc = runner_check(r, __func__);
  if (rc) return rc;
  if (!fn) return -EINVAL;
  return run_root(r->loop, fn, arg);
}

int weft_runner_close(weft_runner *r) {
  int rc = runner_check(r, __func__);
  if (rc) return rc;
  loop_free(r->loop);
  free(r);
  return 0;
}

/* ---- instruments ------------------------------------------------------- */

int weft_instrument_add(const weft_instrument *ins, void *arg) {
  weft_loop *L = weft__tls_loop;
  if (!ins) return -EINVAL;
  if (!L) return weft__misuse(__func__, WEFT_ENOTASK);
  if (L->ninstr == WEFT__MAX_INSTR) return -ENOSPC;
  L->instr[L->ninstr].ins = ins;
  L->instr[L->ninstr++].arg = arg;
  return 0;
}

int weft_instrument_remove(const weft_instrument *ins, void *arg) {
  weft_loop *L = weft__tls_loop;
  if (!ins) return -EINVAL;
  if (!L) return weft__misuse(__func__, WEFT_ENOTASK);
  for (int i = 0; i < L->ninstr; i++) {
    if (L->instr[i].ins == ins && L->instr[i].arg == arg) {
      memmove(&L->instr[i], &L->instr[i + 1],
              (size_t)(L->ninstr - i - 1) * sizeof L->instr[0]);
      L->ninstr--;
      return 0;
    }
  }
  return -ENOENT;
}
