/*
 * Debug mode (WEFT_DEBUG=1 or weft_config.debug): diagnostics on stderr.
 * Built on the instrument hooks: steps that run over 100 ms without a
 * checkpoint. Plus: stack overflows named by task (a SIGSEGV handler on an
 * alternate stack that recognises a guard-page hit, and a canary check at
 * every switch for stacks without a guard), stack high-water marks, and
 * tasks whose handle was never joined or detached.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

#define SLOW_STEP_NS (100LL * 1000 * 1000)

static void dbg_step_begin(weft_task *t, void *arg) {
  (void)arg;
  weft__body(t)->step_start = weft__clock();
}

static void dbg_step_end(weft_task *t, void *arg) {
  (void)arg;
  int64_t d = weft__clock() - weft__body(t)->step_start;
  if (d > SLOW_STEP_NS)
    fprintf(stderr,
            "weft: debug: task '%s' ran %.1f ms without a checkpoint\n",
            weft_task_name(t), (double)d / 1e6);
}

WEFT__HIDDEN const weft_instrument weft__debug_instrument = {
    .step_begin = dbg_step_begin,
    .step_end = dbg_step_end,
};

static void write_str(const char *s) {
  ssize_t r = write(2, s, strlen(s));
  (void)r;
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (t && t->stack && weft__stack_in_guard(t->stack, si->si_addr)) {
    write_str("weft: stack overflow in task '");
    write_str(t->x && t->x->name ? t->x->name : "(unnamed)");
    write_str("': raise its stack_size (weft_spawn_opts) or the default "
              "(weft_config.stack_size)\n");
  }
  /* Let the default action (core dump) happen on return. */
  signal(sig, SIG_DFL);
}

void weft__debug_start(weft_loop *L) {
  if (L->ninstr < WEFT__MAX_INSTR) {
    L->instr[L->ninstr].ins = &weft__debug_instrument;
    L->instr[L->ninstr++].arg = NULL;
  }
  size_t sz = 64 * 1024;
  L->altstack = malloc(sz);
  L->old_segv = malloc(sizeof(struct sigaction));
  if (!L->altstack || !L->old_segv) return;
  stack_t ss = {.ss_sp = L->altstack, .ss_size = sz, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, (struct sigaction *)L->old_segv);
}

void weft__debug_stop(weft_loop *L) {
  for (weft_task *t = L->all_head; t; t = t->all_next)
    if ((t->flags & TF_HANDLE) && !(t->flags & TF_ROOT))
      fprintf(stderr,
              "weft: debug: task '%s' was never joined or detached\n",
              weft_task_name(t));
  if (L->debug_hw_max)
    fprintf(stderr,
            "weft: debug: stack high-water mark: %zu KiB of %zu KiB "
            "(task '%s')\n",
            L->debug_hw_max / 1024, L->stacks.size / 1024, L->debug_hw_task);
  if (L->old_segv) {
    sigaction(SIGSEGV, (struct sigaction *)L->old_segv, NULL);
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
  }
  free(L->old_segv);
  free(L->altstack);
  L->old_segv = L->altstack = NULL;
}

void weft__debug_task_exit(weft_loop *L, weft_task *t) {
  size_t hw = weft__stack_resident(&L->stacks, t->stack);
  if (hw > L->debug_hw_max) {
    L->debug_hw_max = hw;
    snprintf(L->debug_hw_task, sizeof L->debug_hw_task, "%s",
             weft_task_name(t));
  }
}

void weft__debug_switch_check(weft_loop *L, weft_task *t) {
  (void)L;
  weft__stack *st = t->stack;
  if (st && !(st->kind & WEFT__STACK_GUARDED) && !weft__stack_canary_ok(st)) {
    fprintf(stderr,
            "weft: stack overflow in task '%s' (canary overwritten; its "
            "stack has no guard page)\n",
            weft_task_name(t));
    abort();
  }
}

/* ---- misuse from the wrong thread ------------------------------------ */

int weft__misuse(const char *func, int code) {
  weft_loop *L = weft__tls_loop;
  static int env = -1; /* WEFT_DEBUG, read once; a benign race at worst */
  if (env < 0) {
    const char *e = getenv("WEFT_DEBUG");
    env = e && *e && strcmp(e, "0") != 0;
  }
  if (env || (L && L->debug)) {
    char name[32] = "?";
    pthread_getname_np(pthread_self(), name, sizeof name);
    weft__fdprintf(2,
                   "weft: debug: %s() called from thread %lu (%s), %s: %s\n",
                   func, (unsigned long)pthread_self(), name,
                   L ? "which runs another loop" : "which runs no weft loop",
                   weft_strerror(code));
  }
  return code;
}
