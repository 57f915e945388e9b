/*
 * Debug mode (WEFT_DEBUG=1 or weft_config.debug): reports on stderr, each
 * a line "weft: debug: ..." naming the task (name and id) and where (its
 * function, or the caller of the misused function; see weft__debug_where):
 *
 *  - a step that ran over 100 ms without a checkpoint (the loop stalled);
 *  - a step that blocked the loop's thread in the kernel over 10 ms (a
 *    blocking system call: sleep, a blocking read, a mutex): told apart
 *    from computing by the thread's CPU time and voluntary context
 *    switches (getrusage at each step), so that being preempted by other
 *    processes on a busy machine is not reported;
 *  - tasks never joined or detached, at the loop's end;
 *  - a scope or group closed out of order (weft_scope_close and
 *    weft_group_close return -EINVAL);
 *  - a cancellation swallowed: a task got -ECANCELED and returned 0 while
 *    still cancelled (the root task is exempt: weft_run's main may turn a
 *    cancellation, such as the shutdown signals', into a clean exit);
 *  - a lock held when its owner returned (its waiters get -EOWNERDEAD);
 *  - stack overflows named by task (a SIGSEGV handler on an alternate
 *    stack that recognises a guard-page hit, and a canary check at every
 *    switch for stacks without a guard), and at the end, as information
 *    ("weft: info:"), the largest stack high-water mark.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/internal.h"

#define SLOW_STEP_NS WEFT_MS(100)
#define BLOCKED_NS WEFT_MS(10)

void weft__debug_where(const void *addr, char *buf, size_t n) {
  Dl_info di;
  if (addr && dladdr(addr, &di) && di.dli_fname) {
    const char *mod = strrchr(di.dli_fname, '/');
    mod = mod ? mod + 1 : di.dli_fname;
    if (di.dli_sname && di.dli_saddr) {
      snprintf(buf, n, "%s+0x%zx (%s)", di.dli_sname,
               (size_t)((const char *)addr - (const char *)di.dli_saddr), mod);
      return;
    }
    snprintf(buf, n, "%s+0x%zx", mod,
             (size_t)((const char *)addr - (const char *)di.dli_fbase));
    return;
  }
  snprintf(buf, n, "%p", addr);
}

/* "'name' (id N, function fn+0x0 (module))": who a report is about. */
static void who(const weft_task *t, char *buf, size_t n) {
  char where[256];
  weft__debug_where((const void *)t->fn, where, sizeof where);
  snprintf(buf, n, "'%s' (id %llu, function %s)", weft_task_name(t),
           (unsigned long long)t->id, where);
}

/* CPU time (ns) and voluntary context switches of the calling thread. */
static void thread_usage(int64_t *cpu, long *nvcsw) {
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) {
    *cpu = 0;
    *nvcsw = 0;
    return;
  }
  *cpu = (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
         (int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
  *nvcsw = ru.ru_nvcsw;
}

static void dbg_step_begin(weft_task *t, void *arg) {
  (void)arg;
  weft_loop *L = t->loop;
  thread_usage(&L->debug_cpu0, &L->debug_nvcsw0);
  L->debug_excused = 0;
  weft__body(t)->step_start = weft__clock();
}

static void dbg_step_end(weft_task *t, void *arg) {
  (void)arg;
  weft_loop *L = t->loop;
  int64_t d = weft__clock() - weft__body(t)->step_start;
  if (d <= BLOCKED_NS) return;
  int64_t cpu;
  long nv;
  thread_usage(&cpu, &nv);
  int64_t off = d - (cpu - L->debug_cpu0) - L->debug_excused;
  char w[400];
  who(t, w, sizeof w);
  if (off > BLOCKED_NS && nv > L->debug_nvcsw0)
    fprintf(stderr,
            "weft: debug: task %s blocked the loop's thread for %.1f ms "
            "(in a %.1f ms step): a blocking call (sleep, a blocking read, a "
            "mutex); use weft_sleep, a weft stream or weft_to_thread\n",
            w, (double)off / 1e6, (double)d / 1e6);
  else if (d > SLOW_STEP_NS)
    fprintf(stderr,
            "weft: debug: task %s ran %.1f ms without a checkpoint (the "
            "loop stalled meanwhile)\n",
            w, (double)d / 1e6);
}

void weft__debug_out_of_order(weft_task *t, const char *what,
                              const weft__scope *s, const void *caller) {
  char w[400], at[256];
  who(t, w, sizeof w);
  weft__debug_where(caller, at, sizeof at);
  const weft__scope *in = t->scope;
  if (!(s->flags & SC_OPEN))
    fprintf(stderr,
            "weft: debug: task %s closed %s %p, which is not open, at %s\n",
            w, what, (const void *)s, at);
  else if (s->task != t)
    fprintf(stderr,
            "weft: debug: task %s closed %s %p of task '%s' (id %llu) at "
            "%s: a scope is closed by the task that opened it\n",
            w, what, (const void *)s, weft_task_name(s->task),
            (unsigned long long)s->task->id, at);
  else
    fprintf(stderr,
            "weft: debug: task %s closed %s %p out of order at %s: its "
            "innermost open scope is %s %p (close them in the reverse "
            "order of opening)\n",
            w, what, (const void *)s, at,
            (in->flags & SC_GROUP) ? "group" : "scope", (const void *)in);
}

void weft__debug_left_open(weft_task *t, const weft__scope *s) {
  char w[400];
  who(t, w, sizeof w);
  fprintf(stderr, "weft: debug: task %s returned with an open %s (%p)\n", w,
          (s->flags & SC_GROUP) ? "group" : "scope", (const void *)s);
}

void weft__debug_swallowed(weft_task *t) {
  char w[400];
  who(t, w, sizeof w);
  fprintf(stderr,
          "weft: debug: task %s swallowed a cancellation: it got -ECANCELED "
          "and returned 0 while cancelled (return the -ECANCELED, or catch "
          "it by closing the scope that was cancelled)\n",
          w);
}

void weft__debug_held_at_exit(weft_task *t, const char *what,
                              const void *obj) {
  char w[400], name[64];
  who(t, w, sizeof w);
  weft__name_get(obj, name, sizeof name);
  fprintf(stderr,
          "weft: debug: task %s returned holding %s %s%s%s(%p): its "
          "waiters get -EOWNERDEAD\n",
          w, what, name[0] ? "'" : "", name, name[0] ? "' " : "", obj);
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
    if ((t->flags & TF_HANDLE) && !(t->flags & TF_ROOT)) {
      char w[400];
      who(t, w, sizeof w);
      fprintf(stderr, "weft: debug: task %s was never joined or detached\n",
              w);
    }
  if (L->debug_hw_max)
    fprintf(stderr,
            "weft: info: stack high-water mark: %zu KiB of %zu KiB "
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
