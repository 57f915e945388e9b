/*
 * Debug mode (WEFT_DEBUG=1 or weft_config.debug): diagnostics on stderr,
 * each a line (or two) that starts "weft: debug: ", names the task (name
 * and id) and says where in the code: the task's function and, for a
 * call that went wrong, the caller's location.
 *
 *   - a step that ran over 100 ms without a checkpoint;
 *   - a step that blocked the loop's thread over 10 ms (a blocking system
 *     call: sleep, read on a blocking fd, a mutex);
 *   - a scope or group closed out of order, twice, or by a task that did
 *     not open it;
 *   - a cancellation swallowed: a task got -ECANCELED and returned 0
 *     while still cancelled;
 *   - a task that returned with a scope open, or holding a lock;
 *   - a task whose handle was never joined or detached, at the loop's end;
 *   - a stack overflow, named by task (a SIGSEGV handler on an alternate
 *     stack that recognises a guard-page hit, and a canary check at every
 *     switch for stacks without a guard; these two print "weft: stack
 *     overflow" and the process dies);
 *   - a weft call from a thread that is not its loop's (weft__misuse).
 *
 * At the loop's end it also prints the stack high-water mark, as
 * information rather than a report: "weft: debug (info): ...", so that a
 * check for reports (grep "weft: debug: ") does not count it.
 *
 * Everything here runs only for a loop in debug mode: the hot paths of
 * other loops pay at most a predictable test of L->debug.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/debug.h"
#include "core/internal.h"
#include "ctx/valgrind_compat.h"

#define SLOW_STEP_NS (100LL * 1000 * 1000)
#define BLOCKED_NS (10LL * 1000 * 1000)
#define ALTSTACK_SIZE (64 * 1024)
#define LOCK_SITES 256 /* a power of two */
/* Room for a module's path and a location: reports run on the task's
 * stack, which may be small, so these stay well under PATH_MAX. */
#define LOC_PATH_MAX 512
#define LOC_MAX (LOC_PATH_MAX + 64)

/* Debug mode's state for one loop, in L->altstack (the field debug mode
 * owns; the signal stack is part of it). */
typedef struct dbg_state {
  /* Telling a blocked thread (see dbg_step_end): the thread's CPU time
   * and voluntary context switches at the last sample (snap_cpu -1:
   * none), the clock then, and whether a poll that may have slept came
   * since. seg_start: when the part of the step under way that is
   * judged began (its start, or weft__debug_blocking_end); -1: none. */
  bool rusage_ok;
  bool stale;
  int64_t snap_cpu;
  long snap_nvcsw;
  int64_t snap_at;
  int64_t seg_start;
  /* Where each held lock was taken, for the report of a task that
   * returns holding it: a cache by (lock, task), so that no table grows
   * and nothing is freed. An entry that another lock took over is
   * recognised (lock and task do not match) and leaves the site out. */
  struct {
    const void *lock;
    uint64_t task;
    const void *site;
  } sites[LOCK_SITES];
  char altstack[ALTSTACK_SIZE] __attribute__((aligned(16)));
} dbg_state;

static dbg_state *state_of(const weft_loop *L) { return L->altstack; }

/* ---- locations and names ---------------------------------------------- */

/* The file of a module dladdr found: the program's own has no name in
 * its link map (or, from glibc, argv[0]): /proc/self/exe names it. */
static const char *module_path(const char *name, char *buf, size_t n) {
  if (name && strchr(name, '/') && strcmp(name, program_invocation_name) != 0)
    return name;
  ssize_t k = readlink("/proc/self/exe", buf, n - 1);
  if (k <= 0) return name && *name ? name : "?";
  buf[k] = '\0';
  return buf;
}

/* Writes where addr is into buf: "symbol+0xoff (module)" when dladdr
 * finds a symbol (the library's exported functions, a program's when it
 * is linked with -rdynamic), else "/path/module+0xoff", the offset from
 * the module's load address, which is what `addr2line -f -e module
 * 0xoff` takes for a shared object or a position-independent program
 * (and the address itself for one that is not: its load offset is 0);
 * else (a static program, where dladdr knows nothing) the raw address,
 * which addr2line takes too. */
static void where(const void *addr, char *buf, size_t n) {
  Dl_info di;
  struct link_map *lm = NULL;
  if (!addr) {
    snprintf(buf, n, "?");
    return;
  }
  if (!dladdr1(addr, &di, (void **)&lm, RTLD_DL_LINKMAP) || !lm) {
    snprintf(buf, n, "%p", addr);
    return;
  }
  char path[LOC_PATH_MAX];
  const char *mod = module_path(lm->l_name, path, sizeof path);
  if (di.dli_sname && di.dli_saddr) {
    char *slash = strrchr(mod, '/');
    snprintf(buf, n, "%s+0x%lx (%s)", di.dli_sname,
             (unsigned long)((uintptr_t)addr - (uintptr_t)di.dli_saddr),
             slash ? slash + 1 : mod);
    return;
  }
  snprintf(buf, n, "%s+0x%lx", mod,
           (unsigned long)((uintptr_t)addr - (uintptr_t)lm->l_addr));
}

/* The caller's location from a return address: the call instruction is
 * just before it, and addr2line then names the line of the call rather
 * than the next one. */
static void caller_where(const void *ret, char *buf, size_t n) {
  where(ret ? (const char *)ret - 1 : NULL, buf, n);
}

static void fn_where(const weft_task *t, char *buf, size_t n) {
  where((const void *)(uintptr_t)t->fn, buf, n);
}

/* "group 'name' (0x...)" or "scope (0x...)": what s is, for a report. A
 * group's scope is the first member of its struct weft_group, so its
 * address is the group's (the handle the program holds and names). */
static void scope_desc(const weft__scope *s, char *buf, size_t n) {
  char name[64];
  const char *what = (s->flags & SC_GROUP) ? "group" : "scope";
  if (weft__name_get(s, name, sizeof name))
    snprintf(buf, n, "%s '%s' (%p)", what, name, (const void *)s);
  else
    snprintf(buf, n, "%s %p", what, (const void *)s);
}

/* Writes one report to stderr in one write, so that reports from loops
 * on other threads do not interleave mid-line. */
__attribute__((format(printf, 1, 2))) static void report(const char *fmt,
                                                         ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  (void)weft__fdprintf(2, "%s", buf);
}

/* ---- steps: too long, or blocked -------------------------------------- */

static int64_t tv_ns(struct timeval tv) {
  return (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

/* The thread's CPU time (user + system) and voluntary context switches,
 * less its major page faults (each a voluntary switch too: a page of the
 * program read from disk is no call the task made, and must not make a
 * step look blocked). false if the system does not tell. */
static bool thread_usage(int64_t *cpu, long *nvcsw) {
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return false;
  *cpu = tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime);
  *nvcsw = ru.ru_nvcsw - ru.ru_majflt;
  return true;
}

/*
 * A blocked step: its wall time exceeds the thread's CPU time by over
 * 10 ms, and the thread made voluntary context switches meanwhile: it
 * slept in the kernel (a blocking read, a sleep, a mutex, a page fault's
 * I/O). A thread preempted by other processes (a loaded machine) also
 * loses wall time, but through involuntary switches, which are not
 * counted: that keeps the report quiet on a busy CI machine. A step
 * that both blocked briefly and was preempted long can still be taken
 * for blocked: it is a heuristic, measured with the loop's own clocks
 * (no ptrace, no signals).
 *
 * Reading the CPU time is a system call (getrusage), which costs more
 * than a whole step (0.2 us on bare metal, 3 us on some VMs). So it is
 * sampled, not read at every step: at a step's start only if the last
 * sample is over 2 ms old or a poll that may have slept came since (its
 * sleep would count as a voluntary switch), and at the end of a step
 * over 10 ms. The CPU time since the sample then bounds the step's own
 * from above, and its wall time minus that is a lower bound of the time
 * it was blocked, short of the truth by at most the 2 ms before it: a
 * block of 12 ms or more is always seen. Per step, debug mode costs two
 * clock reads (vDSO) and a few compares.
 */
#define SAMPLE_NS (2LL * 1000 * 1000)

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* Usage first, then the clock: the CPU time counted from this sample
 * covers everything after the clock reading. */
static void sample(dbg_state *d) {
  if (!thread_usage(&d->snap_cpu, &d->snap_nvcsw)) d->snap_cpu = -1;
  d->snap_at = weft__clock();
  d->stale = false;
}

/* Judges the part of t's step since seg_start (the clock now reads
 * `now`; the step has run step_ns): reports it if it blocked. Takes a
 * sample (the next steps measure from here). true if it reported. */
static bool seg_check(dbg_state *d, weft_task *t, int64_t now,
                      int64_t step_ns) {
  int64_t cpu, snap = d->snap_cpu;
  long nvcsw, snap_nv = d->snap_nvcsw;
  if (d->seg_start < 0 || snap < 0 || !thread_usage(&cpu, &nvcsw)) {
    sample(d);
    return false;
  }
  d->snap_cpu = cpu;
  d->snap_nvcsw = nvcsw;
  d->snap_at = now;
  int64_t idle = now - d->seg_start - (cpu - snap);
  if (idle <= BLOCKED_NS || nvcsw == snap_nv) return false;
  char fn[LOC_MAX];
  fn_where(t, fn, sizeof fn);
  report("weft: debug: task '%s' (id %llu) blocked the loop's thread for "
         "%.1f ms (its step ran %.1f ms): a blocking call; use weft_sleep, "
         "a weft stream, or weft_to_thread\n"
         "weft: debug:   in task function %s\n",
         weft_task_name(t), (unsigned long long)t->id, (double)idle / 1e6,
         (double)step_ns / 1e6, fn);
  return true;
}

static void dbg_step_begin(weft_task *t, void *arg) {
  (void)arg;
  dbg_state *d = state_of(t->loop);
  int64_t now = weft__clock();
  if (d && d->rusage_ok && (d->stale || now - d->snap_at > SAMPLE_NS)) {
    sample(d);
    now = d->snap_at;
  }
  weft__body(t)->step_start = now;
  if (d) d->seg_start = now;
}

static void dbg_step_end(weft_task *t, void *arg) {
  (void)arg;
  weft__task_body *b = weft__body(t);
  int64_t now = weft__clock(), wall = now - b->step_start;
  if (wall <= BLOCKED_NS) return;
  dbg_state *d = state_of(t->loop);
  bool blocked = false;
  if (d && d->rusage_ok && now - d->seg_start > BLOCKED_NS)
    blocked = seg_check(d, t, now, wall);
  if (!blocked && wall > SLOW_STEP_NS) {
    char fn[LOC_MAX];
    fn_where(t, fn, sizeof fn);
    report("weft: debug: task '%s' (id %llu) ran %.1f ms without a "
           "checkpoint\n"
           "weft: debug:   in task function %s\n",
           weft_task_name(t), (unsigned long long)t->id, (double)wall / 1e6,
           fn);
  }
}

/* A poll that may sleep: its sleep is a voluntary switch, so the next
 * step samples afresh. */
static void dbg_before_poll(int64_t timeout, void *arg) {
  dbg_state *d = arg;
  if (timeout != 0 && d) d->stale = true;
}

void weft__debug_blocking_begin(weft_loop *L) {
  dbg_state *d = state_of(L);
  if (!d || !d->rusage_ok || !L->current) return;
  int64_t now = weft__clock();
  if (d->seg_start >= 0 && now - d->seg_start > BLOCKED_NS)
    seg_check(d, L->current, now, now - weft__body(L->current)->step_start);
  d->seg_start = -1; /* not judged until weft__debug_blocking_end */
}

void weft__debug_blocking_end(weft_loop *L) {
  dbg_state *d = state_of(L);
  if (!d || !d->rusage_ok || !L->current) return;
  sample(d);
  d->seg_start = d->snap_at;
}

WEFT__HIDDEN const weft_instrument weft__debug_instrument = {
    .step_begin = dbg_step_begin,
    .step_end = dbg_step_end,
    .before_poll = dbg_before_poll,
};

/* ---- scopes, groups, cancellations, locks ----------------------------- */

/* t if it is a live task of L, else NULL: a stale or garbage scope's
 * task pointer is only followed once it is found there. */
static const weft_task *live_task(weft_loop *L, const weft_task *t) {
  for (const weft_task *x = L->all_head; x; x = x->all_next)
    if (x == t) return x->state < WEFT__T_DONE ? x : NULL;
  return NULL;
}

void weft__debug_bad_close(weft_task *cur, const weft__scope *s,
                           const char *func, const void *caller) {
  char what[128], inner[128], why[384], fn[LOC_MAX],
      at[LOC_MAX];
  scope_desc(s, what, sizeof what);
  const weft_task *opener =
      (s->flags & SC_OPEN) ? live_task(cur->loop, s->task) : NULL;
  if (!opener) {
    snprintf(why, sizeof why, "%s, which is not open (closed already?)",
             what);
  } else if (opener != cur) {
    snprintf(why, sizeof why,
             "%s, which task '%s' (id %llu) opened: only the task that "
             "opens a scope or group closes it",
             what, weft_task_name(opener), (unsigned long long)opener->id);
  } else if (cur->scope == s) {
    snprintf(why, sizeof why, "%s with %s: %s", what, func,
             (s->flags & SC_GROUP) ? "a group closes with weft_group_close"
                                   : "a task's own scope cannot be closed");
  } else {
    scope_desc(cur->scope, inner, sizeof inner);
    snprintf(why, sizeof why,
             "%s out of order: %s, opened inside it, is still open (the "
             "innermost; close it first)",
             what, inner);
  }
  fn_where(cur, fn, sizeof fn);
  caller_where(caller, at, sizeof at);
  report("weft: debug: task '%s' (id %llu) closed %s\n"
         "weft: debug:   %s() called from %s; task function %s\n",
         weft_task_name(cur), (unsigned long long)cur->id, why, func, at, fn);
}

void weft__debug_open_at_exit(weft_task *t, const weft__scope *s) {
  char what[128], fn[LOC_MAX];
  scope_desc(s, what, sizeof what);
  fn_where(t, fn, sizeof fn);
  report("weft: debug: task '%s' (id %llu) returned with %s open\n"
         "weft: debug:   in task function %s\n",
         weft_task_name(t), (unsigned long long)t->id, what, fn);
}

/*
 * A cancellation swallowed: a checkpoint of t returned -ECANCELED (the
 * delivery reached its root scope: see weft__checkpoint and
 * weft__scope_pop), and t returned 0 while still cancelled. asyncio's
 * rule is the same: a task that catches CancelledError must re-raise it
 * (or uncancel), or its canceller believes it stopped when it did not.
 * A cancellation caught by a scope of t's own (a timeout) is no
 * delivery to the root and is not reported; nor is a task that was
 * cancelled but met no checkpoint and finished its work.
 *
 * The root task is exempt: weft_run's main may turn a cancellation (the
 * SIGTERM of weft_config.shutdown_signals, for one) into a clean exit on
 * purpose, as asyncio.run lets main catch it. So is a task that returns
 * a value of its own (> 0) after its cleanup: wait_for and
 * weft_join_until hand such a partial result on (asyncio >= 3.12).
 */
void weft__debug_finished(weft_task *t) {
  const weft__scope *r = &weft__body(t)->root;
  if (t->result != 0 || (t->flags & TF_ROOT)) return;
  if ((r->flags & (SC_DELIVERED | SC_EFFECTIVE)) !=
      (SC_DELIVERED | SC_EFFECTIVE))
    return;
  char fn[LOC_MAX];
  fn_where(t, fn, sizeof fn);
  report("weft: debug: task '%s' (id %llu) swallowed a cancellation: it "
         "got -ECANCELED and returned 0 while cancelled (return "
         "-ECANCELED)\n"
         "weft: debug:   in task function %s\n",
         weft_task_name(t), (unsigned long long)t->id, fn);
}

static size_t site_slot(const void *lock, uint64_t task) {
  uint64_t h = ((uint64_t)(uintptr_t)lock >> 4) ^ (task * 0x9e3779b97f4a7c15u);
  h ^= h >> 29;
  return (size_t)(h * 0xbf58476d1ce4e5b9u >> 56) & (LOCK_SITES - 1);
}

void weft__debug_lock_site(weft_task *t, const void *lock, const void *site) {
  dbg_state *d = state_of(t->loop);
  if (!d) return;
  size_t i = site_slot(lock, t->id);
  d->sites[i].lock = lock;
  d->sites[i].task = t->id;
  d->sites[i].site = site;
}

void weft__debug_lock_held(weft_task *t, const void *lock) {
  dbg_state *d = state_of(t->loop);
  const void *site = NULL;
  if (d) {
    size_t i = site_slot(lock, t->id);
    if (d->sites[i].lock == lock && d->sites[i].task == t->id)
      site = d->sites[i].site;
  }
  char name[64], desc[128], fn[LOC_MAX], at[LOC_MAX + 32];
  if (weft__name_get(lock, name, sizeof name))
    snprintf(desc, sizeof desc, "lock '%s' (%p)", name, lock);
  else
    snprintf(desc, sizeof desc, "lock %p", lock);
  fn_where(t, fn, sizeof fn);
  at[0] = '\0';
  if (site) {
    memcpy(at, "; acquired at ", 15);
    caller_where(site, at + 14, sizeof at - 14);
  }
  report("weft: debug: task '%s' (id %llu) returned holding %s: the lock "
         "is broken, its waiters get -EOWNERDEAD\n"
         "weft: debug:   in task function %s%s\n",
         weft_task_name(t), (unsigned long long)t->id, desc, fn, at);
}

/* ---- stacks, the loop's start and end --------------------------------- */

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
  dbg_state *d = calloc(1, sizeof *d);
  if (L->ninstr < WEFT__MAX_INSTR) {
    L->instr[L->ninstr].ins = &weft__debug_instrument;
    L->instr[L->ninstr++].arg = d;
  }
  L->altstack = d;
  L->old_segv = malloc(sizeof(struct sigaction));
  if (!d || !L->old_segv) return; /* debug mode without these reports */
  /* Under valgrind, threads run one at a time under its lock, and a
   * step that waits for it sleeps: every step would look blocked. So
   * may one under a sanitizer, whose allocator and shadow memory take
   * locks of their own (the mmap lock among them) that the program's
   * other threads hold: the check is left out of sanitizer builds. */
  int64_t cpu;
  long nv;
  d->rusage_ok = !RUNNING_ON_VALGRIND && !SANITIZED && thread_usage(&cpu, &nv);
  d->snap_cpu = -1;
  d->stale = true;
  d->seg_start = -1;
  stack_t ss = {.ss_sp = d->altstack, .ss_size = sizeof d->altstack,
                .ss_flags = 0};
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
      char fn[LOC_MAX];
      fn_where(t, fn, sizeof fn);
      report("weft: debug: task '%s' (id %llu) was never joined or "
             "detached\n"
             "weft: debug:   task function %s\n",
             weft_task_name(t), (unsigned long long)t->id, fn);
    }
  if (L->debug_hw_max)
    report("weft: debug (info): stack high-water mark: %zu KiB of %zu KiB "
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
