/*
 * test_soak.c -- randomized cancellation soak.
 *
 * Each Test here is a program that runs thousands of random schedules, one
 * weft_run each, over one area of weft (semaphores, locks and conditions,
 * queues, channels, events and barriers, groups and scopes, combinators,
 * the executor). Tasks take random paths through the primitives while a
 * "director" task cancels them at random points: weft_cancel, deadlines
 * that fire at the next loop turn, scopes expired or cancelled from
 * outside, weft_join_until with a deadline, failing group children,
 * weft_group_cancel, queue shutdowns. After each step and at the end of
 * each schedule the invariants are checked (see the comment at the head
 * of each program; each invariant has a tag, e.g. "lost_wakeup",
 * "queue.once"). The bug that motivated it: a waiter list that lost a
 * wakeup when its head left by cancellation (src/sync/sobj.h, wl_remove):
 * the programs over semaphores, locks, queues and channels catch it in
 * their first few hundred schedules.
 *
 * Tags of rules new in issue 9 (join_until keeps the task's outcome,
 * nested and uninterrupting timeouts, no spawn into a failed group, gather
 * and an outside cancellation): join_until.result, scope.timeout.*,
 * group.spawn_after_failure, gather.outside_cancel.
 *
 * Reproducible: schedule i of a run draws every random choice from a
 * generator seeded by (base seed, program, i), and a loop is
 * single-threaded and deterministic given those choices. Deadlines are
 * absolute and already past when they are armed (SOAK_PAST), so they fire
 * at the next loop turn after the task suspends, whatever the wall clock
 * says; nothing in a schedule sleeps. Only the executor program depends
 * on thread timing (its jobs run on real threads), and WEFT_SOAK_REALTIME=1
 * trades replay for real microsecond deadlines.
 *
 * Environment:
 *   WEFT_SOAK_SEED=N     base seed (decimal or 0x...; "random": from the
 *                        clock, printed); default 0x5eedf00d
 *   WEFT_SOAK_ITERS=N    schedules per program (default: see each Test;
 *                        divided by 4 x WEFT_TIMEOUT_SCALE when > 1)
 *   WEFT_SOAK_ITER=I     run schedule I only (replay)
 *   WEFT_SOAK_TIME=S     stop a program after S seconds (default 3; 6
 *                        when WEFT_TIMEOUT_SCALE > 1, 1 under TSan; 0: no
 *                        limit)
 *   WEFT_SOAK_TRACE=1    print every decision of the schedules run
 *   WEFT_SOAK_SKIP=a,b   do not check the invariants whose tag starts
 *                        with a or b (e.g. scope.timeout,join_until)
 *   WEFT_SOAK_MAXFAIL=N  stop a program after N failed schedules (3)
 *   WEFT_SOAK_REALTIME=1 real tiny deadlines (0-30 us) instead of past ones
 *
 * A failure prints the invariant's tag, the schedule's seed and number and
 * the command that replays it, e.g.
 *   WEFT_SOAK_SEED=0x5eedf00d WEFT_SOAK_ITER=42 WEFT_SOAK_TRACE=1 \
 *     ./build/bin/test_soak --filter 'soak/sem'
 * `make soak` runs every program for a long time (docs/guide/build.md).
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>

/* ================================================================== */
/* Configuration and reporting                                         */
/* ================================================================== */

#define SOAK_PAST WEFT_NS(1) /* an absolute deadline long gone */

/* Under ThreadSanitizer a schedule costs ~50 times more (every task is a
 * fiber of its own): the default time budget is 1 s there. */
#if defined(__SANITIZE_THREAD__)
#define SOAK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SOAK_TSAN 1
#endif
#endif
#ifndef SOAK_TSAN
#define SOAK_TSAN 0
#endif

typedef struct soak_cfg {
  uint64_t seed;
  long iters;   /* -1: the program's default */
  long only;    /* -1, or the one schedule to run */
  double budget; /* seconds per program, 0: none */
  double scale; /* WEFT_TIMEOUT_SCALE */
  int maxfail;
  int trace;
  bool realtime;
  char skip[512];
} soak_cfg;

static soak_cfg CFG;

static uint64_t parse_u64(const char *s, uint64_t def) {
  if (!s || !*s) return def;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  return errno || *end ? def : (uint64_t)v;
}

static void cfg_load(void) {
  const char *e;
  memset(&CFG, 0, sizeof CFG);
  CFG.seed = 0x5eedf00d;
  if ((e = getenv("WEFT_SOAK_SEED")) && *e) {
    if (strcmp(e, "random") == 0) {
      CFG.seed = (uint64_t)weft_now() ^ ((uint64_t)getpid() << 32);
      CFG.seed &= 0xffffffffffffull;
    } else {
      CFG.seed = parse_u64(e, CFG.seed);
    }
  }
  CFG.scale = 1;
  if ((e = getenv("WEFT_TIMEOUT_SCALE")) && atof(e) > 0) CFG.scale = atof(e);
  CFG.iters = (e = getenv("WEFT_SOAK_ITERS")) && *e ? (long)parse_u64(e, 0) : -1;
  CFG.only = (e = getenv("WEFT_SOAK_ITER")) && *e ? (long)parse_u64(e, 0) : -1;
  CFG.budget = SOAK_TSAN ? 1 : CFG.scale > 1 ? 6 : 3;
  if ((e = getenv("WEFT_SOAK_TIME")) && *e) CFG.budget = atof(e);
  CFG.maxfail = (int)parse_u64(getenv("WEFT_SOAK_MAXFAIL"), 3);
  CFG.trace = (int)parse_u64(getenv("WEFT_SOAK_TRACE"), 0);
  CFG.realtime = parse_u64(getenv("WEFT_SOAK_REALTIME"), 0) != 0;
  if ((e = getenv("WEFT_SOAK_SKIP"))) snprintf(CFG.skip, sizeof CFG.skip, "%s", e);
}

static bool skipped(const char *tag) {
  const char *p = CFG.skip;
  while (*p) {
    const char *q = strchr(p, ',');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n && strncmp(tag, p, n) == 0) return true;
    if (!q) break;
    p = q + 1;
  }
  return false;
}

/* Failures of the current program, by invariant tag: how often, and the
 * first schedule that broke it. */
typedef struct tagrec {
  const char *tag;
  long count;
  long iter;
  char msg[400];
} tagrec;

static tagrec TAGS[64];
static int NTAGS;

/* ================================================================== */
/* A schedule                                                          */
/* ================================================================== */

/* What a worker is blocked in (for the lost-wakeup check and reports). */
enum {
  OP_NONE,
  OP_SEM,
  OP_LOCK,
  OP_COND,
  OP_QPUT,
  OP_QGET,
  OP_QJOIN,
  OP_SEND,
  OP_RECV,
  OP_EVENT,
  OP_BARRIER,
  OP_JOIN,
  OP_YIELD,
  OP_GCLOSE,
  OP_GATHER,
  OP_RACE,
  OP_WAIT,
  OP_ASC,
  OP_THREAD,
  OP_START,
  OP_N
};
static const char *const OPNAME[OP_N] = {
    "nothing", "sem_acquire", "lock_acquire", "cond_wait", "queue_put",
    "queue_get", "queue_join", "chan_send", "chan_recv", "event_wait",
    "barrier_wait", "join", "yield", "group_close", "gather", "race",
    "wait", "as_completed", "to_thread", "group_start"};

#define MAXW 32

/* Worker roles: the end phase of a program (a queue's shutdown, a
 * condition's "no more tokens") begins once every R_PROD worker (or one
 * marked prod) has returned. */
enum { R_OTHER, R_PROD };

typedef struct soak soak;
typedef struct sc_ctx sc_ctx;

typedef struct wk {
  soak *S;
  int id;
  char name[16];
  weft_task *h;   /* spawn handle, or group child handle while alive */
  bool hvalid;    /* h may be passed to weft_cancel */
  bool grp;       /* a group child (borrowed handle) */
  bool detached;
  bool spawned, alive, returned, joined;
  int ran, cleanups;
  int result;
  int role;
  bool outside;   /* cancelled by weft_cancel from another task */
  long order;     /* completion order (combinators) */
  bool prod;      /* the end phase waits for it (R_PROD, or set so) */
  bool started;   /* a weft_group_start child that called weft_started */
  /* the operation it is blocked in, for the lost-wakeup check */
  int op;
  unsigned long epoch, sus;
  bool stuck_reported;
  /* scopes it has open, and the one the director may expire or cancel */
  sc_ctx *sc_top;
  sc_ctx *reg;
  /* program data */
  int holding;
  void *p;
} wk;

struct soak {
  const char *prog;
  long iter;
  uint64_t rs[4];
  int nw;
  wk w[MAXW];
  /* the root task's watchdog scope (cancelled on a hang) */
  weft_scope watch;
  bool watch_open;
  weft_task *director;
  bool root_done;    /* the root has finished its part */
  long step, max_steps;
  int hangs;
  bool unwinding;    /* everything was cancelled after a failure */
  long unwind_step;  /* the director step it began at */
  int inflight;      /* thread jobs: the loop may sleep meanwhile */
  bool keep;         /* threads may still touch the state: never free it */
  int fails;
  /* program hooks (any may be NULL) */
  void (*check)(soak *S);           /* per director step */
  bool (*avail)(soak *S, wk *w);    /* w's wait could complete now */
  void (*chaos)(soak *S);           /* a random action of the program */
  void (*cancel_more)(soak *S);     /* unwinding: shut down what waits */
  void (*stall)(soak *S);           /* every live worker waits: unblock */
  uint64_t stall_sig;               /* the workers' state last step */
  int stall_steps;                  /* how long it has not changed */
  void (*end_phase)(soak *S);       /* once every R_PROD worker returned */
  bool spawned_all;                 /* the root spawned every R_PROD one */
  bool ended;                       /* end_phase was called */
  int p_cancel, p_scope;            /* per-mille per step, generic chaos */
};

/* ---- random numbers: xoshiro256** seeded by splitmix64 --------------- */

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t str_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

static void rng_seed(soak *S) {
  uint64_t x = CFG.seed ^ str_hash(S->prog) ^
               ((uint64_t)S->iter * 0xd1b54a32d192ed03ull);
  for (int i = 0; i < 4; i++) S->rs[i] = splitmix(&x);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t rnd(soak *S) {
  uint64_t *s = S->rs;
  uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return r;
}

/* Uniform in [0, n). */
static int rn(soak *S, int n) {
  return n <= 1 ? 0 : (int)((rnd(S) >> 33) % (uint64_t)n);
}
/* True with probability pm per mille. */
static bool pm(soak *S, int pm) { return rn(S, 1000) < pm; }

/* ---- reporting -------------------------------------------------------- */

static void exe_path(char *buf, size_t n) {
  char tmp[PATH_MAX];
  ssize_t r = readlink("/proc/self/exe", tmp, sizeof tmp - 1);
  if (r <= 0) {
    snprintf(buf, n, "./build/bin/test_soak");
    return;
  }
  tmp[r] = '\0';
  /* Under qemu or valgrind /proc/self/exe is the emulator. */
  if (!strstr(tmp, "test_soak")) {
    snprintf(buf, n, "./build/bin/test_soak");
    return;
  }
  char cwd[PATH_MAX];
  size_t lc = getcwd(cwd, sizeof cwd) ? strlen(cwd) : 0;
  if (lc && strncmp(tmp, cwd, lc) == 0 && tmp[lc] == '/')
    snprintf(buf, n, "./%s", tmp + lc + 1);
  else
    snprintf(buf, n, "%s", tmp);
}

static void print_replay(const soak *S) {
  char exe[PATH_MAX + 8];
  exe_path(exe, sizeof exe);
  fprintf(stderr,
          "  replay: WEFT_SOAK_SEED=0x%" PRIx64 " WEFT_SOAK_ITER=%ld "
          "WEFT_SOAK_TRACE=1 %s --filter 'soak/%s'\n",
          CFG.seed, S->iter, exe, S->prog);
  fflush(stderr);
}

/* Records a broken invariant. The schedule goes on (its other checks may
 * tell more); the driver reports it when weft_run returns. */
static void fail(soak *S, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(soak *S, const char *tag, const char *fmt, ...) {
  if (skipped(tag)) return;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  S->fails++;
  tagrec *r = NULL;
  for (int i = 0; i < NTAGS; i++)
    if (strcmp(TAGS[i].tag, tag) == 0) r = &TAGS[i];
  if (!r && NTAGS < (int)(sizeof TAGS / sizeof TAGS[0])) {
    r = &TAGS[NTAGS++];
    r->tag = tag;
    r->count = 0;
  }
  if (r && r->count++ == 0) {
    r->iter = S->iter;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
  }
  if (S->fails <= 3)
    fprintf(stderr, "soak/%s: FAIL [%s] schedule %ld, step %ld: %s\n", S->prog,
            tag, S->iter, S->step, msg);
}

#define TRACE(S, ...)                                                     \
  do {                                                                    \
    if (CFG.trace) {                                                      \
      fprintf(stderr, "[%ld:%ld] ", (S)->iter, (S)->step);                \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
    }                                                                     \
  } while (0)

/* Names a code for messages (weft_strerror is wordier). */
static const char *cn(int rc) {
  static __thread char buf[8][24];
  static __thread int k;
  switch (rc) {
    case 0: return "0";
    case -ECANCELED: return "-ECANCELED";
    case -ETIMEDOUT: return "-ETIMEDOUT";
    case -ESHUTDOWN: return "-ESHUTDOWN";
    case -EAGAIN: return "-EAGAIN";
    case -EPIPE: return "-EPIPE";
    case -EBADF: return "-EBADF";
    case -EIO: return "-EIO";
    case -EPROTO: return "-EPROTO";
    case -ENOMEM: return "-ENOMEM";
    case -EOWNERDEAD: return "-EOWNERDEAD";
    case -EOVERFLOW: return "-EOVERFLOW";
    case -EINVAL: return "-EINVAL";
    case -EIDRM: return "-EIDRM";
    case -ENOENT: return "-ENOENT";
    case WEFT_EGROUP: return "WEFT_EGROUP";
    case WEFT_EEND: return "WEFT_EEND";
    default: break;
  }
  char *b = buf[k++ & 7];
  snprintf(b, sizeof buf[0], "%d", rc);
  return b;
}

/* One line per live worker: where it is. */
static void describe(soak *S, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i < S->nw && off + 40 < n; i++) {
    wk *w = &S->w[i];
    if (!w->spawned || w->returned) continue;
    off += (size_t)snprintf(buf + off, n - off, " %s:%s", w->name,
                            w->ran ? OPNAME[w->op] : "not-started");
  }
  if (!off) snprintf(buf, n, " (no worker left)");
}

/* ================================================================== */
/* Workers                                                             */
/* ================================================================== */

static wk *wk_new(soak *S, int role, const char *prefix) {
  if (S->nw >= MAXW) return NULL;
  wk *w = &S->w[S->nw];
  memset(w, 0, sizeof *w);
  w->S = S;
  w->id = S->nw++;
  w->role = role;
  snprintf(w->name, sizeof w->name, "%s%d", prefix, w->id);
  w->prod = role == R_PROD;
  return w;
}

/* First thing in every worker body. */
static void wk_enter(wk *w) {
  if (++w->ran != 1)
    fail(w->S, "task.ran_once", "%s: its function was entered %d times",
         w->name, w->ran);
  TRACE(w->S, "%s: starts", w->name);
}

/* Last thing: every worker has exactly one cleanup (counted here) and
 * returns through this. */
static int wk_exit(wk *w, int rc) {
  soak *S = w->S;
  if (++w->cleanups != 1)
    fail(S, "task.cleanup_once", "%s: cleanup ran %d times", w->name,
         w->cleanups);
  if (w->sc_top)
    fail(S, "test.scopes", "%s: returns with a scope open", w->name);
  w->result = rc;
  w->returned = true;
  w->alive = false;
  w->op = OP_NONE;
  if (w->grp || w->detached) w->hvalid = false; /* the record goes now */
  TRACE(S, "%s: returns %s", w->name, cn(rc));
  return rc;
}

static void op_begin(wk *w, int op) {
  w->op = op;
  w->epoch++;
  TRACE(w->S, "%s: %s ...", w->name, OPNAME[op]);
}

static int op_end(wk *w, int rc) {
  TRACE(w->S, "%s: %s -> %s", w->name, OPNAME[w->op], cn(rc));
  w->op = OP_NONE;
  return rc;
}

/* rc = OP(w, OP_SEM, weft_sem_acquire(s)); */
#define OP(w, op, call) (op_begin((w), (op)), op_end((w), (call)))

static weft_task *wk_spawn(wk *w, weft_fn fn, bool eager) {
  weft_spawn_opts o = {.name = w->name, .eager = eager};
  w->spawned = w->alive = true;
  weft_task *t = weft_spawn(fn, w, &o);
  if (!t) {
    fail(w->S, "api.spawn", "weft_spawn(%s): errno %d", w->name, errno);
    w->spawned = w->alive = false;
    return NULL;
  }
  w->h = t;
  w->hvalid = true;
  return t;
}

/* Spawns w into g. NULL (and w not spawned) if refused; errno kept. */
static weft_task *wk_gspawn(wk *w, weft_group *g, weft_fn fn, bool eager) {
  weft_spawn_opts o = {.name = w->name, .eager = eager};
  w->spawned = w->alive = true;
  w->grp = true;
  w->hvalid = false;
  weft_task *t = weft_group_spawn(g, fn, w, &o);
  if (!t) {
    int e = errno;
    w->spawned = w->alive = false;
    errno = e;
    return NULL;
  }
  if (!w->returned) { /* an eager child may be gone already */
    w->h = t;
    w->hvalid = true;
  }
  return t;
}

/* ================================================================== */
/* Scopes, and the rules for what their close reports                  */
/* ================================================================== */

/* Kinds of scope a worker puts around an operation. */
enum {
  SK_NONE,        /* no scope */
  SK_PLAIN,       /* no deadline */
  SK_PAST,        /* deadline SOAK_PAST: fires at the next loop turn */
  SK_REG,         /* open_after(1 h); the director may expire or cancel it */
  SK_SHIELD,      /* shielded, no deadline; the director may cancel it */
  SK_SHIELD_PAST, /* shielded, with a past deadline */
  SK_N
};
static const char *const SKNAME[SK_N] = {"none", "plain", "past", "reg",
                                         "shield", "shield-past"};

struct sc_ctx {
  weft_scope s;
  sc_ctx *up;       /* the worker's enclosing sc_ctx */
  sc_ctx *prev_reg; /* the registered scope before this one */
  int kind;
  bool saw_own;  /* a checkpoint right in this scope returned -ECANCELED */
  bool saw_any;  /* ... or one in a scope nested inside it */
  bool complex;  /* a compound call ran inside, or a call returned another
                    error: a -ECANCELED may have been swallowed */
  bool xcancel;  /* the director called weft_scope_cancel on it */
  bool expired;  /* the director moved its deadline into the past */
};

static bool is_shield(int k) { return k == SK_SHIELD || k == SK_SHIELD_PAST; }

/* A random kind: none half of the time. */
static int pick_kind(soak *S) {
  static const int k[] = {SK_NONE, SK_NONE, SK_NONE, SK_NONE, SK_NONE,
                          SK_PLAIN, SK_PAST, SK_PAST, SK_REG, SK_REG,
                          SK_SHIELD, SK_SHIELD_PAST};
  return k[rn(S, (int)(sizeof k / sizeof k[0]))];
}

/* Every code a checkpoint returned in w goes through here: a -ECANCELED
 * counts as a delivery in w's innermost scope. Another error may hide
 * one (a condition wait cut short by the deadline, then -EOWNERDEAD from
 * the lock it re-takes): the scope's delivery is unknown then. */
static int note(wk *w, int rc) {
  if (rc == -ECANCELED && w->sc_top) {
    w->sc_top->saw_own = true;
    for (sc_ctx *c = w->sc_top; c; c = c->up) c->saw_any = true;
  } else if (rc < 0 && w->sc_top) {
    for (sc_ctx *c = w->sc_top; c; c = c->up) c->complex = true;
  }
  return rc;
}

static void sc_open(wk *w, sc_ctx *c, int kind) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  if (kind == SK_NONE) return;
  soak *S = w->S;
  int rc = 0;
  switch (kind) {
    case SK_PLAIN: rc = weft_scope_open(&c->s, WEFT_FOREVER); break;
    case SK_PAST:
      rc = CFG.realtime ? weft_scope_open_after(&c->s, WEFT_US(rn(S, 31)))
                        : weft_scope_open(&c->s, SOAK_PAST);
      break;
    case SK_REG: rc = weft_scope_open_after(&c->s, WEFT_SEC(3600)); break;
    case SK_SHIELD: rc = weft_scope_open_shielded(&c->s, WEFT_FOREVER); break;
    case SK_SHIELD_PAST:
      rc = weft_scope_open_shielded(&c->s, SOAK_PAST);
      break;
  }
  if (rc) fail(S, "api.scope_open", "%s: open returned %s", w->name, cn(rc));
  c->up = w->sc_top;
  w->sc_top = c;
  if (kind == SK_REG || kind == SK_SHIELD) {
    c->prev_reg = w->reg;
    w->reg = c;
  }
  TRACE(S, "%s: opens a %s scope", w->name, SKNAME[kind]);
}

/* Closes c and checks what it returned against the rules:
 *   - 0 or -ETIMEDOUT, and -ETIMEDOUT only for a scope whose own deadline
 *     fired (weft_scope_cancelled was true);
 *   - [the lead's rule] an unshielded scope reports -ETIMEDOUT only when no
 *     enclosing scope's cancellation is in effect, and only if a checkpoint
 *     inside actually returned -ECANCELED (scope.timeout.*);
 *   - conversely, a deadline that fired and cut a simple wait short right
 *     in this scope, with no outer cancellation, is reported.
 * "Outer cancellation in effect" is read with weft_check_cancel after the
 * close, half of the time only: it is a checkpoint (a delivery) itself. */
static int sc_close(wk *w, sc_ctx *c) {
  if (c->kind == SK_NONE) return 0;
  soak *S = w->S;
  if (w->sc_top != c) fail(S, "test.scopes", "%s: closes out of order", w->name);
  bool cancelled = weft_scope_cancelled(&c->s);
  if (w->reg == c) w->reg = c->prev_reg;
  w->sc_top = c->up;
  int crc = weft_scope_close(&c->s);
  int outer = -1;
  if (rn(S, 2)) {
    int k = note(w, weft_check_cancel());
    outer = k == -ECANCELED;
  }
  TRACE(S, "%s: closes its %s scope: %s (cancelled %d, saw %d/%d, outer %d)",
        w->name, SKNAME[c->kind], cn(crc), cancelled, c->saw_own, c->saw_any,
        outer);
  bool shield = is_shield(c->kind);
  bool deadline = c->kind == SK_PAST || c->kind == SK_SHIELD_PAST ||
                  c->kind == SK_REG;
  if (crc != 0 && crc != -ETIMEDOUT) {
    fail(S, "scope.close.rc", "%s: weft_scope_close returned %s", w->name,
         cn(crc));
  } else if (crc == -ETIMEDOUT) {
    if (!deadline || (c->kind == SK_REG && !c->expired))
      fail(S, "scope.close.timeout_no_deadline",
           "%s: a %s scope whose deadline never came closed with -ETIMEDOUT",
           w->name, SKNAME[c->kind]);
    else if (!cancelled)
      fail(S, "scope.close.timeout_not_cancelled",
           "%s: -ETIMEDOUT from a %s scope that weft_scope_cancelled said "
           "was not cancelled",
           w->name, SKNAME[c->kind]);
    if (!shield && outer == 1)
      fail(S, "scope.timeout.outer",
           "%s: its %s scope closed with -ETIMEDOUT while an enclosing "
           "cancellation was in effect",
           w->name, SKNAME[c->kind]);
    if (!c->saw_any && !c->complex)
      fail(S, "scope.timeout.unseen",
           "%s: its %s scope closed with -ETIMEDOUT but no checkpoint inside "
           "returned -ECANCELED",
           w->name, SKNAME[c->kind]);
  } else if (deadline && cancelled && !c->xcancel && c->saw_own &&
             !c->complex && (shield || outer == 0) &&
             (c->kind != SK_REG || c->expired)) {
    fail(S, "scope.timeout.missing",
         "%s: the deadline of its %s scope fired and a checkpoint in it "
         "returned -ECANCELED, no outer cancellation, but close returned 0",
         w->name, SKNAME[c->kind]);
  }
  return crc;
}

/* ================================================================== */
/* The director, hangs, the root's frame                               */
/* ================================================================== */

static bool any_alive(soak *S) {
  for (int i = 0; i < S->nw; i++)
    if (S->w[i].alive) return true;
  return false;
}

static bool producers_done(soak *S) {
  if (!S->spawned_all) return false;
  for (int i = 0; i < S->nw; i++)
    if (S->w[i].prod && S->w[i].spawned && !S->w[i].returned)
      return false;
  return true;
}

/* After a failure: cancel everything so that the schedule ends. */
static void cancel_all(soak *S) {
  if (S->unwinding) return;
  S->unwinding = true;
  S->unwind_step = S->step;
  TRACE(S, "unwinding: cancelling everything");
  for (int i = 0; i < S->nw; i++) {
    wk *w = &S->w[i];
    if (w->hvalid && w->h) {
      w->outside = true;
      weft_cancel(w->h);
    }
    for (sc_ctx *c = w->reg; c; c = c->prev_reg) { /* shields too */
      c->xcancel = true;
      weft_scope_cancel(&c->s);
    }
  }
  if (S->cancel_more) S->cancel_more(S);
  if (S->watch_open) weft_scope_cancel(&S->watch);
}

static void hang_cb(void *arg) { cancel_all(arg); }

/* The loop is about to sleep. In these schedules nothing is ever waited
 * for by time, so unless thread jobs are out, a loop that sleeps for long
 * is one whose tasks all wait for something that will not come. */
static void on_before_poll(int64_t timeout, void *arg) {
  soak *S = arg;
  if (S->inflight > 0 || (timeout >= 0 && timeout < WEFT_MS(100))) return;
  char d[600];
  describe(S, d, sizeof d);
  if (++S->hangs == 1) {
    fail(S, "hang", "every task waits, nothing can wake them:%s", d);
    print_replay(S);
    weft_loop_call(weft_loop_current(), hang_cb, S);
  } else if (S->hangs == 2) {
    /* Cancelling everything did not help: something waits without a
     * way out. Nothing more can be learnt here. */
    fprintf(stderr,
            "soak/%s: schedule %ld still hangs after cancelling every "
            "task:%s\n",
            S->prog, S->iter, d);
    print_replay(S);
    weft_dump_tasks(stderr, WEFT_DUMP_TREE);
    fflush(stderr);
    abort();
  }
}

static const weft_instrument SOAK_INSTR = {.before_poll = on_before_poll};

/* The lost-wakeup check. A worker in a wait that could complete now
 * (avail) is either about to be woken by whoever made it possible, or is
 * already woken and queued to run: the wait lists hand things to waiters
 * and make them ready at once. The director yields between steps and goes
 * to the back of the run queue, so by its next step every such worker has
 * run. One still in the same wait (same epoch), while the wait could
 * still complete, was never woken. (Both steps: a condition waiter woken
 * by a notify may run and find the lock taken by another one meanwhile.) */
static void stuck_check(soak *S) {
  for (int i = 0; i < S->nw; i++) {
    wk *w = &S->w[i];
    bool a = w->op != OP_NONE && S->avail && S->avail(S, w);
    if (a && w->sus && w->sus == w->epoch && !w->stuck_reported) {
      w->stuck_reported = true;
      fail(S, "lost_wakeup",
           "%s: still in %s a full pass after it could have completed, and "
           "it still could (nobody woke it)",
           w->name, OPNAME[w->op]);
      cancel_all(S);
    }
    w->sus = a ? w->epoch : 0;
  }
}

/* Random cancellations any program gets. */
static void generic_chaos(soak *S) {
  if (S->unwinding || !S->nw) return;
  if (pm(S, S->p_cancel)) {
    wk *w = &S->w[rn(S, S->nw)];
    if (w->hvalid && w->h && !w->returned) {
      TRACE(S, "director: weft_cancel(%s)", w->name);
      w->outside = true;
      int rc = weft_cancel(w->h);
      if (rc) fail(S, "api.cancel", "weft_cancel(%s): %s", w->name, cn(rc));
    }
  }
  if (pm(S, S->p_scope)) {
    wk *w = &S->w[rn(S, S->nw)];
    sc_ctx *c = w->reg;
    if (c && !w->returned) {
      if (c->kind == SK_REG && rn(S, 2)) {
        TRACE(S, "director: expires %s's scope", w->name);
        int rc = weft_scope_reschedule(&c->s, SOAK_PAST);
        if (rc == 0)
          c->expired = true;
        else if (rc != -EALREADY)
          fail(S, "api.reschedule", "%s: reschedule: %s", w->name, cn(rc));
      } else {
        TRACE(S, "director: cancels %s's %s scope", w->name, SKNAME[c->kind]);
        c->xcancel = true;
        int rc = weft_scope_cancel(&c->s);
        if (rc) fail(S, "api.scope_cancel", "%s: %s", w->name, cn(rc));
      }
    }
  }
}

/* A worker that just woke someone (release, put, notify...) cancels a
 * random worker now and then: the woken one is cancelled before it runs,
 * the classic race of hand-offs. */
static void cancel_someone(wk *by, int per_mille) {
  soak *S = by->S;
  if (S->unwinding || !pm(S, per_mille)) return;
  wk *w = &S->w[rn(S, S->nw)];
  if (w != by && w->hvalid && w->h && !w->returned) {
    TRACE(S, "%s: weft_cancel(%s)", by->name, w->name);
    w->outside = true;
    int rc = weft_cancel(w->h);
    if (rc) fail(S, "api.cancel", "weft_cancel(%s): %s", w->name, cn(rc));
  }
}

/* A schedule can stall by its own design: the only consumer was
 * cancelled and producers wait on a full queue, every permit holder is
 * gone... When every live worker has been blocked in a wait for three
 * steps with nothing moving, the program's stall hook unblocks them (a
 * shutdown, a new permit): random cancellations would, but slowly. The
 * lost-wakeup checks come first: a wait that could complete is a bug, not
 * a stall. */
static void stall_check(soak *S) {
  uint64_t sig = 0;
  bool blocked = true, live = false;
  for (int i = 0; i < S->nw; i++) {
    wk *w = &S->w[i];
    sig = (sig ^ (w->epoch * 31 + (uint64_t)w->op + (w->returned ? 7 : 0))) *
          0x100000001b3ull;
    if (!w->spawned || w->returned) continue;
    live = true;
    if (!w->ran || w->op == OP_NONE || w->op == OP_YIELD) blocked = false;
  }
  if (!live || !blocked || S->inflight || sig != S->stall_sig) {
    S->stall_sig = sig;
    S->stall_steps = 0;
    return;
  }
  if (++S->stall_steps >= 3 && S->stall && !S->unwinding) {
    TRACE(S, "director: stalled");
    S->stall(S);
    S->stall_steps = 0;
  }
}

/* The director: one step per pass of the run queue, until every worker
 * has returned (and the program has nothing more to do). */
static int director(void *arg) {
  soak *S = arg;
  for (S->step = 1;; S->step++) {
    if (!any_alive(S) && S->root_done) break;
    if (S->step > S->max_steps && !S->unwinding) {
      char d[600];
      describe(S, d, sizeof d);
      fail(S, "progress", "%ld director steps and still running:%s",
           S->max_steps, d);
      cancel_all(S);
    }
    if (S->unwinding && S->step > S->unwind_step + 1000)
      break; /* it did not unwind: the root's joins hang, the hang check
              * reports it */
    if (S->check) S->check(S);
    stuck_check(S);
    stall_check(S);
    if (!S->ended && producers_done(S)) {
      S->ended = true;
      TRACE(S, "director: end phase");
      if (S->end_phase) S->end_phase(S);
    }
    if (!S->unwinding) {
      if (S->chaos) S->chaos(S);
      generic_chaos(S);
    }
    /* The director is never cancelled: it watches the unwinding too.
     * While thread jobs run it sleeps a little: they take real time. */
    weft_scope sh;
    weft_scope_open_shielded(&sh, WEFT_FOREVER);
    if (S->inflight)
      weft_sleep(WEFT_US(20));
    else
      weft_yield();
    weft_scope_close(&sh);
  }
  return 0;
}

/* The root's frame: a watchdog scope around everything (a livelock ends
 * there), and the director. */
static void soak_begin(soak *S) {
  weft_scope_open(&S->watch, weft_now() + (int64_t)(WEFT_SEC(20) * CFG.scale));
  S->watch_open = true;
  weft_spawn_opts o = {.name = "director"};
  S->director = weft_spawn(director, S, &o);
  if (!S->director) fail(S, "api.spawn", "director: errno %d", errno);
}

/* Joins a worker's handle (spawn) in one of several ways, and checks what
 * the join says against what the worker returned. Kinds: 0 join, 1
 * join_until(past), 2 join_until(forever), 3 cancel then join, 4 detach. */
static void join_worker(soak *S, wk *w, int kind) {
  if (!w->hvalid || !w->h || w->grp || w->joined || w->detached) return;
  weft_task *h = w->h;
  int rc;
  switch (kind) {
    case 4:
      TRACE(S, "root: detaches %s", w->name);
      w->detached = true;
      if (w->returned) w->hvalid = false;
      rc = weft_detach(h);
      if (rc) fail(S, "api.detach", "%s: %s", w->name, cn(rc));
      return;
    case 1: {
      bool was_done = w->returned;
      rc = weft_join_until(h, SOAK_PAST);
      w->joined = true;
      w->hvalid = false;
      TRACE(S, "root: join_until(%s, past) -> %s (it returned %s)", w->name,
            cn(rc), cn(w->result));
      if (!w->returned) {
        fail(S, "join_until.waits", "%s: join_until returned %s before it "
             "returned", w->name, cn(rc));
      } else if (S->unwinding) {
        /* the root may be cancelled: -ECANCELED is right then */
      } else if (w->result == -ECANCELED && !was_done) {
        /* -ETIMEDOUT if the deadline cancelled it, -ECANCELED if someone
         * else did first */
        if (rc != -ETIMEDOUT && rc != -ECANCELED)
          fail(S, "join_until.cancelled", "%s ended -ECANCELED, join_until "
               "returned %s", w->name, cn(rc));
      } else if (rc != w->result) {
        fail(S, "join_until.result",
             "%s returned %s (%s) but weft_join_until(past) returned %s",
             w->name, cn(w->result),
             was_done ? "before the call" : "once cancelled by the deadline",
             cn(rc));
      }
      return;
    }
    default: {
      if (kind == 3) {
        TRACE(S, "root: cancels and joins %s", w->name);
        w->outside = true;
        weft_cancel(h);
      }
      /* Shielded: a join that returns -ECANCELED because the root was
       * cancelled cannot be told from one that returns the task's
       * -ECANCELED, and the root is cancelled only when unwinding. */
      weft_scope sh;
      weft_scope_open_shielded(&sh, WEFT_FOREVER);
      rc = kind == 2 ? weft_join_until(h, WEFT_FOREVER) : weft_join(h);
      weft_scope_close(&sh);
      w->joined = true;
      w->hvalid = false;
      TRACE(S, "root: join(%s) -> %s", w->name, cn(rc));
      if (!w->returned)
        fail(S, "join.waits", "%s: join returned %s before it returned",
             w->name, cn(rc));
      else if (rc != w->result)
        fail(S, "join.result", "%s returned %s but its join returned %s",
             w->name, cn(w->result), cn(rc));
    }
  }
}

/* Joins every spawned (not group) worker in a random order and way. */
static void join_all(soak *S, int p_until_past) {
  int order[MAXW], n = S->nw; /* the director may add detached ones */
  for (int i = 0; i < n; i++) order[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = rn(S, i + 1), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (int i = 0; i < n; i++) {
    wk *w = &S->w[order[i]];
    if (!w->spawned || w->grp) continue;
    for (int k = rn(S, 4); k > 0; k--) weft_yield();
    int r = rn(S, 100), kind;
    if (r < p_until_past)
      kind = 1;
    else if (r < p_until_past + 10)
      kind = 2;
    else if (r < p_until_past + 20)
      kind = 3;
    else if (r < p_until_past + 25)
      kind = 4;
    else
      kind = 0;
    join_worker(S, w, kind);
  }
}

/* The end of the root: waits for the director (which waits for every
 * worker, detached ones included), closes the watchdog. */
static void soak_end(soak *S) {
  S->root_done = true;
  if (S->director) {
    weft_scope sh;
    weft_scope_open_shielded(&sh, WEFT_FOREVER);
    int rc = weft_join(S->director);
    weft_scope_close(&sh);
    if (rc) fail(S, "api.join", "director: %s", cn(rc));
  }
  int rc = weft_scope_close(&S->watch);
  S->watch_open = false;
  if (rc == -ETIMEDOUT)
    fail(S, "watchdog", "the schedule ran for %.0f s",
         20 * CFG.scale);
  for (int i = 0; i < S->nw; i++) {
    wk *w = &S->w[i];
    if (!w->spawned) continue;
    if (!w->returned)
      fail(S, "task.returned", "%s never returned", w->name);
    else if (w->ran != 1 || w->cleanups != 1)
      fail(S, "task.cleanup_once", "%s: ran %d, cleanups %d", w->name, w->ran,
           w->cleanups);
  }
}

/* ================================================================== */
/* The driver                                                          */
/* ================================================================== */

typedef struct soak_prog {
  const char *name;
  size_t size;         /* of the program's state, which starts with soak */
  long iters;          /* default schedules per run */
  long max_steps;      /* director steps before "no progress" */
  void (*setup)(soak *S);    /* before weft_run: make objects */
  weft_fn main;
  void (*teardown)(soak *S); /* after: free them, last checks */
} soak_prog;

static void soak_drive(const soak_prog *p) {
  cfg_load();
  NTAGS = 0;
  long iters = CFG.iters >= 0 ? CFG.iters : p->iters;
  if (CFG.iters < 0 && CFG.scale > 1) {
    iters = (long)((double)iters / (4 * CFG.scale));
    if (iters < 20) iters = 20;
  }
  long first = 0, last = iters;
  if (CFG.only >= 0) {
    first = CFG.only;
    last = CFG.only + 1;
  }
  weft_config cfg;
  weft_config_init(&cfg);
  int64_t t0 = weft_now();
  long ran = 0, failed = 0, max_steps = 0;
  bool out_of_time = false;
  for (long it = first; it < last; it++) {
    if (CFG.budget > 0 && CFG.only < 0 &&
        (double)(weft_now() - t0) / 1e9 > CFG.budget) {
      out_of_time = true;
      break;
    }
    soak *S = calloc(1, p->size);
    cr_assert_not_null(S);
    S->prog = p->name;
    S->iter = it;
    S->max_steps = p->max_steps;
    S->p_cancel = 30;
    S->p_scope = 60;
    rng_seed(S);
    if (p->setup) p->setup(S);
    cfg.instrument = &SOAK_INSTR;
    cfg.instrument_arg = S;
    int rc = weft_run_with(&cfg, p->main, S);
    if (rc) fail(S, "api.run", "weft_run returned %s", cn(rc));
    if (p->teardown) p->teardown(S);
    ran++;
    if (S->step > max_steps) max_steps = S->step;
    if (S->fails) {
      failed++;
      print_replay(S);
    }
    if (!S->keep) free(S);
    if (failed >= CFG.maxfail) break;
  }
  double dt = (double)(weft_now() - t0) / 1e9;
  fprintf(stderr,
          "soak/%s: %ld schedule(s) from %ld, seed 0x%" PRIx64 ", %.2f s%s, "
          "at most %ld steps: %ld failed\n",
          p->name, ran, first, CFG.seed, dt,
          out_of_time ? " (time budget reached)" : "", max_steps, failed);
  if (failed) {
    char exe[PATH_MAX + 8];
    exe_path(exe, sizeof exe);
    for (int i = 0; i < NTAGS; i++)
      fprintf(stderr,
              "soak/%s: [%s] broken %ld time(s); first in schedule %ld: %s\n"
              "  replay: WEFT_SOAK_SEED=0x%" PRIx64
              " WEFT_SOAK_ITER=%ld WEFT_SOAK_TRACE=1 %s --filter 'soak/%s'\n",
              p->name, TAGS[i].tag, TAGS[i].count, TAGS[i].iter, TAGS[i].msg,
              CFG.seed, TAGS[i].iter, exe, p->name);
    fflush(stderr);
  }
  cr_assert_eq(failed, 0, "soak/%s: %ld schedule(s) broke an invariant "
               "(first: [%s])", p->name, failed, NTAGS ? TAGS[0].tag : "?");
}

/* ================================================================== */
/* soak/sem: semaphores, bounded and not                               */
/* ================================================================== */
/*
 * Workers take a permit (acquire, in a random kind of scope, or
 * try_acquire), hold it over a few yields and give it back; some end
 * early when cancelled. The root joins them in random ways (join_until
 * with a past deadline cancels a worker at that point). The director
 * cancels workers, expires or cancels their scopes, and takes a permit
 * itself now and then.
 * Invariants: value + held <= initial at every step (permits handed to a
 * woken waiter are in neither count until it runs), == initial at the
 * end; a bounded semaphore never refuses the release of a held permit and
 * refuses one past its bound; no waiter stays in acquire while value > 0
 * (lost wakeup); acquire returns 0 or -ECANCELED.
 */

typedef struct semp {
  soak S;
  weft_sem *s;
  size_t init;
  bool bounded;
  int held;
  int dir_held;
} semp;

static void sem_give(semp *P, wk *w) {
  P->held--;
  w->holding--;
  int rc = weft_sem_release(P->s);
  TRACE(&P->S, "%s: release -> %s", w->name, cn(rc));
  cancel_someone(w, 150);
  if (rc)
    fail(&P->S, "sem.release", "%s: release of a held permit: %s", w->name,
         cn(rc));
}

static int sem_worker(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  semp *P = (semp *)S;
  wk_enter(w);
  int rc = 0;
  int cycles = 1 + rn(S, 6);
  for (int c = 0; c < cycles; c++) {
    int arc;
    if (rn(S, 10) == 0) {
      arc = weft_sem_try_acquire(P->s);
      TRACE(S, "%s: try_acquire -> %s", w->name, cn(arc));
      if (arc == 0) {
        P->held++;
        w->holding++;
      } else if (arc != -EAGAIN) {
        fail(S, "sem.try_acquire", "%s: %s", w->name, cn(arc));
      }
    } else {
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      arc = note(w, OP(w, OP_SEM, weft_sem_acquire(P->s)));
      if (arc == 0) { /* count it before anything can suspend */
        P->held++;
        w->holding++;
      }
      int crc = sc_close(w, &sc);
      if (arc != 0 && arc != -ECANCELED)
        fail(S, "sem.acquire", "%s: acquire returned %s", w->name, cn(arc));
      if (crc == -ETIMEDOUT && rn(S, 3) == 0) { /* a TimeoutError escapes */
        rc = -ETIMEDOUT;
        break;
      }
    }
    if (arc == 0) {
      if (P->held + (int)weft_sem_value(P->s) > (int)P->init)
        fail(S, "sem.conserve", "value %zu + held %d > initial %zu",
             weft_sem_value(P->s), P->held, P->init);
      for (int k = rn(S, 4); k > 0; k--)
        if (note(w, OP(w, OP_YIELD, weft_yield())) == -ECANCELED) break;
      sem_give(P, w);
    }
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
    if (rn(S, 3) == 0) note(w, OP(w, OP_YIELD, weft_yield()));
  }
  while (w->holding) sem_give(P, w); /* the cleanup */
  return wk_exit(w, rc);
}

static bool sem_avail(soak *S, wk *w) {
  return w->op == OP_SEM && weft_sem_value(((semp *)S)->s) > 0;
}

static void sem_check(soak *S) {
  semp *P = (semp *)S;
  size_t v = weft_sem_value(P->s);
  if ((size_t)P->held + v > P->init)
    fail(S, "sem.conserve", "value %zu + held %d > initial %zu", v, P->held,
         P->init);
  if (weft_sem_locked(P->s) != (v == 0))
    fail(S, "sem.locked", "locked() is %d with value %zu",
         weft_sem_locked(P->s), v);
}

static void sem_chaos(soak *S) {
  semp *P = (semp *)S;
  if (P->dir_held && pm(S, 300)) {
    TRACE(S, "director: releases its permit");
    P->dir_held--;
    P->held--;
    int rc = weft_sem_release(P->s);
    if (rc) fail(S, "sem.release", "director's release: %s", cn(rc));
  } else if (pm(S, 60)) {
    int rc = weft_sem_try_acquire(P->s);
    TRACE(S, "director: try_acquire -> %s", cn(rc));
    if (rc == 0) {
      P->dir_held++;
      P->held++;
    }
  }
  /* A bounded semaphore with every permit home refuses one more. */
  if (P->bounded && P->held == 0 && weft_sem_value(P->s) == P->init &&
      pm(S, 100)) {
    int rc = weft_sem_release(P->s);
    if (rc != -EOVERFLOW)
      fail(S, "sem.bound", "release past the bound returned %s", cn(rc));
    if (rc == 0) P->init++;
  }
}

/* Every permit is gone (an unbounded semaphore may start with none):
 * one more. */
static void sem_stall(soak *S) {
  semp *P = (semp *)S;
  if (P->bounded) return;
  TRACE(S, "director: adds a permit");
  P->init++;
  int rc = weft_sem_release(P->s);
  if (rc) fail(S, "sem.release", "director's new permit: %s", cn(rc));
}

static void sem_setup(soak *S) {
  semp *P = (semp *)S;
  P->bounded = rn(S, 2);
  P->init = (size_t)(P->bounded ? 1 + rn(S, 3) : rn(S, 4));
  P->s = P->bounded ? weft_sem_new_bounded(P->init) : weft_sem_new(P->init);
  S->check = sem_check;
  S->avail = sem_avail;
  S->chaos = sem_chaos;
  S->stall = sem_stall;
}

static int sem_main(void *arg) {
  semp *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  TRACE(S, "sem: %zu permits, %s", P->init, P->bounded ? "bounded" : "unbounded");
  int n = 2 + rn(S, 6);
  for (int i = 0; i < n; i++) {
    wk *w = wk_new(S, 0, "w");
    wk_spawn(w, sem_worker, rn(S, 5) == 0);
    if (rn(S, 3) == 0) weft_yield();
  }
  S->spawned_all = true;
  join_all(S, 25);
  soak_end(S);
  while (P->dir_held) {
    P->dir_held--;
    P->held--;
    weft_sem_release(P->s);
  }
  if (weft_sem_value(P->s) != P->init || P->held != 0)
    fail(S, "sem.conserve", "at the end: value %zu, held %d, initial %zu",
         weft_sem_value(P->s), P->held, P->init);
  return 0;
}

static void sem_teardown(soak *S) {
  semp *P = (semp *)S;
  int rc = weft_sem_free(P->s);
  if (rc) fail(S, "api.free", "weft_sem_free: %s", cn(rc));
}

Test(soak, sem, .timeout = 900) {
  static const soak_prog p = {"sem", sizeof(semp), 2000, 3000, sem_setup,
                              sem_main, sem_teardown};
  soak_drive(&p);
}

/* ================================================================== */
/* soak/lock: locks and conditions                                     */
/* ================================================================== */
/*
 * A lock (sometimes the condition's own) guards a count of tokens.
 * Lockers hold the lock over a few yields; producers add tokens and
 * notify as many waiters (or all); consumers wait for a token with
 * weft_cond_wait_for or a weft_cond_wait loop. Once every producer has
 * returned, a closer (shielded) marks the shop closed and notifies all.
 * In some schedules a locker returns holding the lock, which breaks it.
 * Invariants: one owner at a time; an acquire that returns 0 finds the
 * lock free in our books; a condition wait returns holding the lock on 0
 * and -ECANCELED (not on -EOWNERDEAD), and wait_for's predicate holds on
 * 0; -EOWNERDEAD only once the lock is broken, and always after; release
 * by the owner succeeds, by another task is -EPERM; no task stays in an
 * acquire of a free lock, or in a condition wait with tokens there and
 * the lock free (lost wakeup).
 */

typedef struct lockp {
  soak S;
  weft_lock *l;
  weft_cond *c;
  bool own_lock;
  int owner; /* worker id, -1: nobody (in our books) */
  int tokens;
  bool closed;
  bool broken;
  bool will_break;
  long closed_step, broken_step; /* director step of the notify_all / exit */
  uint64_t sig;  /* the consumers' state at the last director step */
  bool quiet;    /* the lock was free and no consumer moved since */
  bool draining; /* producers and lockers are done; no closer yet */
} lockp;

enum { LK_LOCKER = 10, LK_CONSUMER, LK_CLOSER };

static void lk_took(lockp *P, wk *w, const char *how) {
  if (P->owner != -1)
    fail(&P->S, "lock.exclusive", "%s: %s returned 0 while w%d holds it",
         w->name, how, P->owner);
  if (!weft_lock_locked(P->l))
    fail(&P->S, "lock.locked", "%s: holds the lock, locked() is false",
         w->name);
  P->owner = w->id;
  w->holding = 1;
}

static void lk_check_code(lockp *P, wk *w, const char *how, int rc) {
  if (rc == -EOWNERDEAD && !P->broken)
    fail(&P->S, "lock.ownerdead", "%s: %s returned -EOWNERDEAD, lock not "
         "broken", w->name, how);
  else if (rc == 0 && P->broken)
    fail(&P->S, "lock.ownerdead", "%s: %s returned 0 on a broken lock",
         w->name, how);
  else if (rc != 0 && rc != -ECANCELED && rc != -EOWNERDEAD)
    fail(&P->S, "lock.rc", "%s: %s returned %s", w->name, how, cn(rc));
}

/* Acquires (blocking, in a random scope, or try). 0 when held. */
static int lk_acquire(lockp *P, wk *w, bool may_try) {
  soak *S = &P->S;
  int rc;
  if (may_try && rn(S, 8) == 0) {
    rc = weft_lock_try_acquire(P->l);
    TRACE(S, "%s: try_acquire -> %s", w->name, cn(rc));
    if (rc == -EAGAIN) {
      if (!weft_lock_locked(P->l))
        fail(S, "lock.try", "%s: try_acquire -EAGAIN on a free lock", w->name);
      return rc;
    }
    lk_check_code(P, w, "try_acquire", rc);
    if (rc == 0) lk_took(P, w, "try_acquire");
    return rc;
  }
  sc_ctx sc;
  sc_open(w, &sc, pick_kind(S));
  rc = note(w, OP(w, OP_LOCK, weft_lock_acquire(P->l)));
  if (rc == 0) lk_took(P, w, "acquire");
  sc_close(w, &sc);
  lk_check_code(P, w, "acquire", rc);
  return rc;
}

static void lk_release(lockp *P, wk *w) {
  if (P->owner != w->id)
    fail(&P->S, "lock.exclusive", "%s: releases, but w%d holds it in our books",
         w->name, P->owner);
  P->owner = -1;
  w->holding = 0;
  int rc = weft_lock_release(P->l);
  TRACE(&P->S, "%s: release -> %s", w->name, cn(rc));
  if (rc) fail(&P->S, "lock.release", "%s: release by the owner: %s", w->name,
               cn(rc));
}

static bool lk_pred(void *arg) {
  lockp *P = arg;
  return P->tokens > 0 || P->closed;
}

/* One condition wait, with the books kept. */
static int lk_cond_wait(lockp *P, wk *w, bool wait_for) {
  soak *S = &P->S;
  sc_ctx sc;
  sc_open(w, &sc, pick_kind(S));
  P->owner = -1; /* the wait gives the lock up */
  w->holding = 0;
  int rc;
  if (wait_for) {
    rc = note(w, OP(w, OP_COND, weft_cond_wait_for(P->c, lk_pred, P)));
  } else {
    rc = 0;
    while (!lk_pred(P) && rc == 0)
      rc = note(w, OP(w, OP_COND, weft_cond_wait(P->c)));
  }
  if (rc == 0 || rc == -ECANCELED) lk_took(P, w, "cond wait");
  sc_close(w, &sc);
  if (rc == 0 && !lk_pred(P))
    fail(S, "cond.pred", "%s: wait_for returned 0, no token and not closed",
         w->name);
  lk_check_code(P, w, "cond wait", rc);
  return rc;
}

static int lk_worker(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  lockp *P = (lockp *)S;
  wk_enter(w);
  int rc = 0;
  int rounds = 1 + rn(S, 4);
  for (int r = 0; r < rounds && rc == 0; r++) {
    int arc = lk_acquire(P, w, w->role == LK_LOCKER);
    if (arc == -EAGAIN) {
      note(w, OP(w, OP_YIELD, weft_yield()));
      continue;
    }
    if (arc) {
      rc = arc;
      break;
    }
    switch (w->role) {
      case R_PROD: {
        int k = 1 + rn(S, 2);
        P->tokens += k;
        int n = rn(S, 3) == 0 ? weft_cond_notify_all(P->c)
                              : weft_cond_notify(P->c, (size_t)k);
        TRACE(S, "%s: adds %d tokens (now %d), notify -> %d", w->name, k,
              P->tokens, n);
        if (n < 0) fail(S, "cond.notify", "%s: notify: %s", w->name, cn(n));
        if (rn(S, 3) == 0) { /* a waiter cancelled just after its notify */
          wk *v = &S->w[rn(S, S->nw)];
          if (v->op == OP_COND && v->hvalid && !v->returned) {
            TRACE(S, "%s: weft_cancel(%s)", w->name, v->name);
            v->outside = true;
            weft_cancel(v->h);
          }
        }
        cancel_someone(w, 150);
        break;
      }
      case LK_CONSUMER: {
        int wrc = lk_cond_wait(P, w, rn(S, 4) != 0);
        if (wrc == 0 && P->tokens > 0) {
          P->tokens--;
          TRACE(S, "%s: takes a token (%d left)", w->name, P->tokens);
        }
        if (wrc == 0 && P->closed && P->tokens == 0) r = rounds;
        if (wrc) rc = wrc;
        break;
      }
      default: break;
    }
    if (w->holding) {
      for (int k = rn(S, 3); k > 0; k--) {
        note(w, OP(w, OP_YIELD, weft_yield()));
        if (P->owner != w->id)
          fail(S, "lock.exclusive", "%s: lost the lock to w%d while holding "
               "it", w->name, P->owner);
      }
      if (P->will_break && w->role == LK_LOCKER && !P->broken &&
          rn(S, 3) == 0) {
        TRACE(S, "%s: returns holding the lock", w->name);
        P->broken = true; /* when it returns, a moment from now */
        P->broken_step = S->step;
        P->owner = -1;
        w->holding = 0;
        return wk_exit(w, 0);
      }
      lk_release(P, w);
    }
    if (weft_check_cancel() == -ECANCELED) rc = -ECANCELED;
    /* Someone who does not hold it may not release it. */
    if (!P->broken && rn(S, 20) == 0) {
      int e = weft_lock_release(P->l);
      if (e != -EPERM)
        fail(S, "lock.eperm", "%s: release without holding: %s", w->name,
             cn(e));
    }
  }
  if (w->holding) lk_release(P, w); /* the cleanup */
  if (rc == -EOWNERDEAD) rc = 0;
  return wk_exit(w, rc);
}

/* Marks the shop closed and wakes every consumer; shielded, so that a
 * cancellation cannot leave consumers waiting for ever. */
static int lk_closer(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  lockp *P = (lockp *)S;
  wk_enter(w);
  weft_scope sh;
  weft_scope_open_shielded(&sh, WEFT_FOREVER);
  int rc = OP(w, OP_LOCK, weft_lock_acquire(P->l));
  if (rc == 0) {
    lk_took(P, w, "acquire");
    P->closed = true;
    P->closed_step = S->step;
    weft_cond_notify_all(P->c);
    lk_release(P, w);
  } else if (rc != -EOWNERDEAD || !P->broken) {
    fail(S, "lock.rc", "%s: shielded acquire: %s", w->name, cn(rc));
  }
  P->closed = true;
  weft_scope_close(&sh);
  return wk_exit(w, 0);
}

static void lk_end_phase(soak *S) { ((lockp *)S)->draining = true; }

/* A lock waiter is handed the lock, so a free lock has none. A condition
 * waiter woken by a notify still has to take the lock, and tokens are
 * not handed to a particular waiter: only "closed" (notify_all) and
 * "broken" (every waiter woken) are sure to end every wait, and only once
 * the waiters woken then have run (two director steps later). */
static bool lk_avail(soak *S, wk *w) {
  lockp *P = (lockp *)S;
  bool free_ = !weft_lock_locked(P->l);
  bool broken = P->broken && S->step >= P->broken_step + 2;
  if (w->op == OP_LOCK) return broken || (free_ && !P->broken);
  if (w->op == OP_COND)
    return broken ||
           (free_ && P->closed && P->closed_step && S->step >= P->closed_step + 2);
  return false;
}

/* A lost notification. Consumers only start waiting with no token
 * there, and every token added is notified, so a notified consumer runs
 * and takes it (or finds it taken and waits again). Once producers and
 * lockers are done, the director waits until no consumer moves for a
 * whole pass with the lock free (same ops, epochs, tokens): a consumer
 * still waiting then, with a token there, missed its notification. Then
 * the closer ends the schedule. */
static int lk_closer(void *arg);

static void lk_drain(soak *S) {
  lockp *P = (lockp *)S;
  uint64_t sig = 0x9e3779b97f4a7c15ull * (uint64_t)(P->tokens + 1);
  for (int i = 0; i < S->nw; i++) {
    wk *w = &S->w[i];
    if (w->role != LK_CONSUMER) continue;
    sig = (sig ^ (w->epoch * 31 + (uint64_t)w->op + (w->returned ? 7 : 0))) *
          0x100000001b3ull;
  }
  bool quiet = !weft_lock_locked(P->l);
  if (quiet && P->quiet && sig == P->sig && !S->unwinding) {
    for (int i = 0; i < S->nw && P->tokens > 0 && !P->broken; i++) {
      wk *w = &S->w[i];
      if (w->role == LK_CONSUMER && w->op == OP_COND) {
        fail(S, "cond.lost_notify",
             "%s: still waits on the condition with %d token(s) there and "
             "the lock free, once everyone else is done",
             w->name, P->tokens);
        break;
      }
    }
    P->draining = false;
    wk *c = wk_new(S, LK_CLOSER, "closer");
    if (c && wk_spawn(c, lk_closer, false)) join_worker(S, c, 4);
  }
  P->quiet = quiet;
  P->sig = sig;
}

static void lk_check(soak *S) {
  lockp *P = (lockp *)S;
  if (P->draining) lk_drain(S);
  if (P->owner != -1 && !P->broken && !weft_lock_locked(P->l))
    fail(S, "lock.locked", "w%d holds the lock, locked() is false", P->owner);
  if (P->tokens < 0) fail(S, "cond.tokens", "%d tokens", P->tokens);
}

static void lk_setup(soak *S) {
  lockp *P = (lockp *)S;
  P->own_lock = rn(S, 2);
  if (P->own_lock) {
    P->c = weft_cond_new(NULL);
    P->l = weft_cond_lock(P->c);
  } else {
    P->l = weft_lock_new();
    P->c = weft_cond_new(P->l);
  }
  P->owner = -1;
  P->will_break = rn(S, 25) == 0;
  S->check = lk_check;
  S->avail = lk_avail;
  S->end_phase = lk_end_phase;
}

static int lk_main(void *arg) {
  lockp *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  int n = 3 + rn(S, 6);
  for (int i = 0; i < n; i++) {
    static const int roles[] = {LK_LOCKER, R_PROD, LK_CONSUMER, LK_CONSUMER};
    wk *w = wk_new(S, roles[i < 3 ? i : rn(S, 4)], "w");
    w->prod = w->role != LK_CONSUMER;
    wk_spawn(w, lk_worker, rn(S, 5) == 0);
    if (rn(S, 3) == 0) weft_yield();
  }
  S->spawned_all = true;
  join_all(S, 20);
  soak_end(S);
  if (P->owner != -1) fail(S, "lock.exclusive", "w%d still holds the lock "
                           "at the end", P->owner);
  if (!P->broken && weft_lock_locked(P->l))
    fail(S, "lock.locked", "locked at the end, nobody holds it");
  return 0;
}

static void lk_teardown(soak *S) {
  lockp *P = (lockp *)S;
  int rc = weft_cond_free(P->c);
  if (rc) fail(S, "api.free", "weft_cond_free: %s", cn(rc));
  if (!P->own_lock && (rc = weft_lock_free(P->l)))
    fail(S, "api.free", "weft_lock_free: %s", cn(rc));
}

Test(soak, lock, .timeout = 900) {
  static const soak_prog p = {"lock", sizeof(lockp), 2000, 3000, lk_setup,
                              lk_main, lk_teardown};
  soak_drive(&p);
}

/* ================================================================== */
/* soak/queue: FIFO, LIFO and priority queues                          */
/* ================================================================== */
/*
 * Producers put numbered items (in a random kind of scope, or try_put),
 * consumers get them (get or try_get), hold them over a few yields and
 * mark them done; a joiner may wait in weft_queue_join. The queue is
 * FIFO, LIFO or priority, bounded (1-4) or not. The director shuts it
 * down at a random step now and then, and always once every producer has
 * returned: gracefully or immediately (both, sometimes), or it frees the
 * queue with tasks waiting on it.
 * Invariants: every item whose put returned 0 is delivered exactly once,
 * or is still queued at the end, or was dropped by an immediate shutdown
 * or the free (counted from the size just before); an item whose put
 * failed is never delivered; a consumer sees each producer's items in
 * order (FIFO queue); get returns WEFT_EEND only after a shutdown and
 * then on an empty queue, put -ESHUTDOWN only after one, -EIDRM only
 * after the free; size never exceeds the capacity, full/empty agree with
 * size; at the end nothing is unfinished (join returns at once, one more
 * task_done is -EOVERFLOW); no getter waits on a non-empty or shut-down
 * queue, no putter on a queue with room, nobody on a freed one (lost
 * wakeup).
 */

typedef struct qitem {
  int32_t p, seq;
  uint32_t key;
} qitem;

enum { QS_NONE, QS_PUTTING, QS_IN, QS_FAILED };
enum { Q_CONSUMER = 10, Q_JOINER };
#define QMAXSEQ 16

typedef struct queuep {
  soak S;
  weft_queue *q;
  int kind; /* 0 FIFO, 1 LIFO, 2 priority */
  size_t cap;
  unsigned char st[MAXW][QMAXSEQ];
  unsigned char got[MAXW][QMAXSEQ];
  int last[MAXW][MAXW]; /* consumer x producer: last seq seen + 1 */
  long n_in, n_got, n_dropped;
  bool shut, shut_now;
  bool free_at_end; /* end with weft_queue_free, waiters there */
  bool freed;       /* then nobody touches q again */
} queuep;

static const char *const QKIND[] = {"FIFO", "LIFO", "priority"};

static int q_cmp(const void *a, const void *b) {
  const qitem *x = a, *y = b;
  return x->key < y->key ? -1 : x->key > y->key;
}

/* Shuts the queue down (immediate: the items left are dropped). */
static void q_shutdown(queuep *P, bool immediate, const char *who) {
  soak *S = &P->S;
  size_t n = weft_queue_size(P->q);
  int rc = weft_queue_shutdown(P->q, immediate);
  TRACE(S, "%s: shutdown(%s) with %zu item(s) -> %s", who,
        immediate ? "immediate" : "graceful", n, cn(rc));
  if (rc) fail(S, "queue.shutdown", "shutdown: %s", cn(rc));
  P->shut = true;
  if (immediate) {
    P->n_dropped += (long)n;
    P->shut_now = true;
    if (weft_queue_size(P->q))
      fail(S, "queue.shutdown", "%zu item(s) left after an immediate "
           "shutdown", weft_queue_size(P->q));
  }
}

/* Frees the queue, tasks may wait on it: they wake with -EIDRM. The items
 * left are dropped. */
static void q_free(queuep *P, const char *who) {
  size_t n = weft_queue_size(P->q);
  int rc = weft_queue_free(P->q);
  TRACE(&P->S, "%s: frees the queue with %zu item(s) -> %s", who, n, cn(rc));
  if (rc) fail(&P->S, "api.free", "weft_queue_free: %s", cn(rc));
  P->n_dropped += (long)n;
  P->freed = P->shut = P->shut_now = true;
}

/* A consumer (or the root, w NULL) received it. */
static void q_deliver(queuep *P, wk *w, const qitem *it) {
  soak *S = &P->S;
  const char *who = w ? w->name : "root";
  if (it->p < 0 || it->p >= S->nw || it->seq < 0 || it->seq >= QMAXSEQ) {
    fail(S, "queue.phantom", "%s: got an item that was never put (%d/%d)",
         who, it->p, it->seq);
    return;
  }
  int st = P->st[it->p][it->seq];
  if (st != QS_PUTTING && st != QS_IN)
    fail(S, "queue.phantom", "%s: got item %d/%d whose put %s", who, it->p,
         it->seq, st == QS_FAILED ? "failed" : "never began");
  if (++P->got[it->p][it->seq] > 1)
    fail(S, "queue.once", "%s: item %d/%d delivered %d times", who, it->p,
         it->seq, P->got[it->p][it->seq]);
  P->n_got++;
  if (w && P->kind == 0) {
    if (it->seq < P->last[w->id][it->p])
      fail(S, "queue.fifo", "%s: item %d/%d after %d/%d", who, it->p, it->seq,
           it->p, P->last[w->id][it->p] - 1);
    P->last[w->id][it->p] = it->seq + 1;
  }
  TRACE(S, "%s: got %d/%d", who, it->p, it->seq);
}

static int q_producer(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  queuep *P = (queuep *)S;
  wk_enter(w);
  int rc = 0, n = 1 + rn(S, QMAXSEQ / 2);
  for (int seq = 0; seq < n && !P->freed; seq++) {
    qitem it = {w->id, seq, (uint32_t)rn(S, 4)};
    P->st[w->id][seq] = QS_PUTTING;
    bool was_shut = P->shut;
    int prc;
    if (rn(S, 6) == 0) {
      prc = weft_queue_try_put(P->q, &it);
      TRACE(S, "%s: try_put %d -> %s", w->name, seq, cn(prc));
      if (prc == -EAGAIN && !(P->cap && weft_queue_size(P->q) >= P->cap))
        fail(S, "queue.try_put", "%s: -EAGAIN with room", w->name);
    } else {
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      prc = note(w, OP(w, OP_QPUT, weft_queue_put(P->q, &it)));
      P->st[w->id][seq] = prc == 0 ? QS_IN : QS_FAILED; /* before any yield */
      sc_close(w, &sc);
    }
    P->st[w->id][seq] = prc == 0 ? QS_IN : QS_FAILED;
    if (prc == 0) {
      P->n_in++;
      if (was_shut)
        fail(S, "queue.put_after_shutdown", "%s: put %d returned 0 after a "
             "shutdown", w->name, seq);
      cancel_someone(w, 100);
    } else {
      if (P->got[w->id][seq])
        fail(S, "queue.failed_put_delivered", "%s: put %d returned %s but "
             "the item was delivered", w->name, seq, cn(prc));
      if (prc == -ESHUTDOWN && !P->shut)
        fail(S, "queue.shutdown_rc", "%s: put -ESHUTDOWN, no shutdown",
             w->name);
      else if (prc == -EIDRM && !P->freed)
        fail(S, "queue.eidrm", "%s: put -EIDRM, queue not freed", w->name);
      else if (prc != -ESHUTDOWN && prc != -ECANCELED && prc != -EAGAIN &&
               prc != -EIDRM)
        fail(S, "queue.put_rc", "%s: put %s", w->name, cn(prc));
    }
    if (prc == -ESHUTDOWN || prc == -EIDRM) break;
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
    if (rn(S, 3) == 0) note(w, OP(w, OP_YIELD, weft_yield()));
  }
  return wk_exit(w, rc);
}

static void q_done(queuep *P, wk *w) {
  w->holding--;
  if (P->freed) return;
  int rc = weft_queue_task_done(P->q);
  if (rc) fail(&P->S, "queue.task_done", "%s: task_done: %s", w->name, cn(rc));
}

static int q_consumer(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  queuep *P = (queuep *)S;
  wk_enter(w);
  int rc = 0;
  for (int i = 0; i < 40 && !P->freed; i++) {
    qitem it;
    int grc;
    if (rn(S, 6) == 0) {
      grc = weft_queue_try_get(P->q, &it);
      TRACE(S, "%s: try_get -> %s", w->name, cn(grc));
      if (grc == -EAGAIN && (weft_queue_size(P->q) || P->shut))
        fail(S, "queue.try_get", "%s: -EAGAIN with %zu item(s), shut %d",
             w->name, weft_queue_size(P->q), P->shut);
      if (grc == 0) {
        w->holding++;
        q_deliver(P, w, &it);
      }
    } else {
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      grc = note(w, OP(w, OP_QGET, weft_queue_get(P->q, &it)));
      if (grc == 0) { /* counted before anything can suspend */
        w->holding++;
        q_deliver(P, w, &it);
      }
      sc_close(w, &sc);
    }
    if (grc == WEFT_EEND) {
      if (!P->shut)
        fail(S, "queue.shutdown_rc", "%s: get WEFT_EEND, no shutdown",
             w->name);
      else if (!P->freed && weft_queue_size(P->q))
        fail(S, "queue.shutdown_rc", "%s: get WEFT_EEND with %zu item(s) "
             "queued", w->name, weft_queue_size(P->q));
      break;
    }
    if (grc == -EIDRM) {
      if (!P->freed)
        fail(S, "queue.eidrm", "%s: get -EIDRM, queue not freed", w->name);
      break;
    }
    if (grc != 0 && grc != -ECANCELED && grc != -EAGAIN)
      fail(S, "queue.get_rc", "%s: get %s", w->name, cn(grc));
    if (w->holding) {
      for (int k = rn(S, 3); k > 0; k--) note(w, OP(w, OP_YIELD, weft_yield()));
      q_done(P, w);
    }
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
    if (grc == -EAGAIN) note(w, OP(w, OP_YIELD, weft_yield()));
  }
  while (w->holding) q_done(P, w); /* the cleanup */
  return wk_exit(w, rc);
}

static int q_joiner(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  queuep *P = (queuep *)S;
  wk_enter(w);
  if (P->freed) return wk_exit(w, 0); /* started too late */
  sc_ctx sc;
  sc_open(w, &sc, pick_kind(S));
  int rc = note(w, OP(w, OP_QJOIN, weft_queue_join(P->q)));
  sc_close(w, &sc);
  if (rc == -EIDRM && P->freed) rc = 0;
  if (rc != 0 && rc != -ECANCELED)
    fail(S, "queue.join_rc", "%s: join %s", w->name, cn(rc));
  return wk_exit(w, rc == -ECANCELED ? rc : 0);
}

static bool q_avail(soak *S, wk *w) {
  queuep *P = (queuep *)S;
  if (P->freed) return w->op == OP_QGET || w->op == OP_QPUT || w->op == OP_QJOIN;
  size_t n = weft_queue_size(P->q);
  if (w->op == OP_QGET) return n > 0 || P->shut;
  if (w->op == OP_QPUT) return P->shut || !P->cap || n < P->cap;
  return false;
}

static void q_check(soak *S) {
  queuep *P = (queuep *)S;
  if (P->freed) return;
  size_t n = weft_queue_size(P->q);
  if (P->cap && n > P->cap)
    fail(S, "queue.capacity", "%zu items in a queue of %zu", n, P->cap);
  if (weft_queue_full(P->q) != (P->cap && n >= P->cap) ||
      weft_queue_empty(P->q) != (n == 0))
    fail(S, "queue.queries", "size %zu, full %d, empty %d", n,
         weft_queue_full(P->q), weft_queue_empty(P->q));
}

static void q_chaos(soak *S) {
  queuep *P = (queuep *)S;
  if (P->freed) return;
  if (!P->shut && pm(S, 4)) q_shutdown(P, rn(S, 3) == 0, "director");
  else if (P->shut && !P->shut_now && pm(S, 4)) q_shutdown(P, true, "director");
}

static void q_end_phase(soak *S) {
  queuep *P = (queuep *)S;
  if (P->free_at_end && !P->freed)
    q_free(P, "director");
  else if (!P->shut_now)
    q_shutdown(P, rn(S, 3) == 0, "director");
}

static void q_stall(soak *S) {
  queuep *P = (queuep *)S;
  if (P->free_at_end && !P->freed)
    q_free(P, "director (stalled)");
  else if (!P->shut_now)
    q_shutdown(P, rn(S, 3) == 0, "director (stalled)");
}

static void q_cancel_more(soak *S) {
  queuep *P = (queuep *)S;
  if (!P->shut_now) q_shutdown(P, true, "unwinding");
}

static void q_setup(soak *S) {
  queuep *P = (queuep *)S;
  P->kind = rn(S, 3);
  P->cap = rn(S, 3) == 0 ? 0 : (size_t)(1 + rn(S, 4));
  P->free_at_end = rn(S, 8) == 0;
  P->q = P->kind == 0   ? weft_queue_new(P->cap, sizeof(qitem))
         : P->kind == 1 ? weft_queue_new_lifo(P->cap, sizeof(qitem))
                        : weft_queue_new_priority(P->cap, sizeof(qitem), q_cmp);
  S->check = q_check;
  S->avail = q_avail;
  S->chaos = q_chaos;
  S->end_phase = q_end_phase;
  S->cancel_more = q_cancel_more;
  S->stall = q_stall;
}

static int q_main(void *arg) {
  queuep *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  TRACE(S, "queue: %s, capacity %zu", QKIND[P->kind], P->cap);
  int np = 1 + rn(S, 3), nc = 1 + rn(S, 3);
  for (int i = 0; i < np + nc; i++) {
    bool prod = i < np;
    wk *w = wk_new(S, prod ? R_PROD : Q_CONSUMER, prod ? "p" : "c");
    wk_spawn(w, prod ? q_producer : q_consumer, rn(S, 5) == 0);
    if (rn(S, 3) == 0) weft_yield();
  }
  if (rn(S, 3) == 0) {
    wk *w = wk_new(S, Q_JOINER, "j");
    wk_spawn(w, q_joiner, false);
  }
  S->spawned_all = true;
  join_all(S, 20);
  soak_end(S);
  /* What is left in the queue counts as delivered to the root. */
  qitem it;
  long left = 0;
  while (!P->freed && weft_queue_try_get(P->q, &it) == 0) {
    q_deliver(P, NULL, &it);
    left++;
    if (weft_queue_task_done(P->q))
      fail(S, "queue.task_done", "root: task_done of a drained item");
  }
  TRACE(S, "root: %ld item(s) left in the queue", left);
  for (int p = 0; p < S->nw; p++)
    for (int q = 0; q < QMAXSEQ; q++) {
      if (P->st[p][q] == QS_PUTTING)
        fail(S, "queue.put_rc", "item %d/%d: its put never returned", p, q);
      if (P->st[p][q] == QS_FAILED && P->got[p][q])
        fail(S, "queue.failed_put_delivered", "item %d/%d", p, q);
    }
  if (P->n_in != P->n_got + P->n_dropped)
    fail(S, "queue.accounting", "%ld put, %ld delivered (%ld left at the end), "
         "%ld dropped by immediate shutdowns or the free", P->n_in, P->n_got,
         left, P->n_dropped);
  if (P->freed) return 0;
  weft_scope sh;
  weft_scope_open_shielded(&sh, WEFT_FOREVER);
  int jrc = weft_queue_join(P->q);
  weft_scope_close(&sh);
  int drc = weft_queue_task_done(P->q);
  if (jrc != 0 || drc != -EOVERFLOW)
    fail(S, "queue.unfinished", "at the end: join %s, one more task_done %s",
         cn(jrc), cn(drc));
  return 0;
}

static void q_teardown(soak *S) {
  queuep *P = (queuep *)S;
  if (P->freed) return;
  int rc = weft_queue_free(P->q);
  if (rc) fail(S, "api.free", "weft_queue_free: %s", cn(rc));
}

Test(soak, queue, .timeout = 900) {
  static const soak_prog p = {"queue", sizeof(queuep), 2000, 3000, q_setup,
                              q_main, q_teardown};
  soak_drive(&p);
}

/* ================================================================== */
/* soak/chan: channels                                                 */
/* ================================================================== */
/*
 * A channel (rendezvous, capacity 1-3, or unbounded); each sender and
 * each receiver has a handle of its own (clones), closed by its owner at
 * the end, or by the director while the owner is blocked on it (the owner
 * then gets -EBADF and leaves it). The root closes the first two handles
 * at random points.
 * Invariants: every item is received at most once, and only if its send
 * returned 0 (or was under way); a send that failed was not received; a
 * receiver sees each sender's items in order; once a receiver got
 * WEFT_EEND, every item sent has been received by the end;
 * -EPIPE only when every receive handle is closed, WEFT_EEND only
 * when every send handle is; no receiver waits once every send handle is
 * closed, no sender once every receive handle is, and nobody on a handle
 * that was closed (lost wakeup).
 */

enum { C_RECEIVER = 10 };

typedef struct chanp {
  soak S;
  weft_chan_tx *tx0;
  weft_chan_rx *rx0;
  size_t cap;
  int ntx, nrx; /* open handles */
  unsigned char st[MAXW][QMAXSEQ];
  unsigned char got[MAXW][QMAXSEQ];
  int last[MAXW][MAXW];
  long n_in, n_got;
  bool eoc;     /* a receiver got WEFT_EEND */
  void *handle[MAXW];
  bool hclosed[MAXW]; /* closed by the director */
} chanp;

static void ch_close(chanp *P, wk *w, void *h, bool tx, const char *who) {
  soak *S = &P->S;
  int rc = tx ? weft_chan_tx_close(h) : weft_chan_rx_close(h);
  if (tx)
    P->ntx--;
  else
    P->nrx--;
  TRACE(S, "%s: closes %s's %s handle -> %s (%d tx, %d rx open)", who,
        w ? w->name : "the first", tx ? "send" : "receive", cn(rc), P->ntx,
        P->nrx);
  if (rc) fail(S, "chan.close", "%s: close: %s", who, cn(rc));
}

static int ch_sender(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  chanp *P = (chanp *)S;
  wk_enter(w);
  weft_chan_tx *tx = P->handle[w->id];
  int rc = 0, n = 1 + rn(S, QMAXSEQ / 2);
  for (int seq = 0; seq < n && !P->hclosed[w->id]; seq++) {
    qitem it = {w->id, seq, 0};
    P->st[w->id][seq] = QS_PUTTING;
    int src;
    if (rn(S, 6) == 0) {
      src = weft_chan_try_send(tx, &it);
      TRACE(S, "%s: try_send %d -> %s", w->name, seq, cn(src));
    } else {
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      src = note(w, OP(w, OP_SEND, weft_chan_send(tx, &it)));
      P->st[w->id][seq] = src == 0 ? QS_IN : QS_FAILED;
      sc_close(w, &sc);
    }
    P->st[w->id][seq] = src == 0 ? QS_IN : QS_FAILED;
    if (src == 0) {
      P->n_in++;
      cancel_someone(w, 100);
    } else {
      if (P->got[w->id][seq])
        fail(S, "chan.failed_send_received", "%s: send %d returned %s but "
             "the item was received", w->name, seq, cn(src));
      if (src == -EPIPE && P->nrx)
        fail(S, "chan.epipe", "%s: -EPIPE with %d receive handle(s) open",
             w->name, P->nrx);
      if (src == -EBADF && !P->hclosed[w->id])
        fail(S, "chan.ebadf", "%s: -EBADF, its handle is open", w->name);
      if (src != -EPIPE && src != -EBADF && src != -ECANCELED &&
          src != -EAGAIN)
        fail(S, "chan.send_rc", "%s: send %s", w->name, cn(src));
    }
    if (src == -EPIPE || src == -EBADF) break;
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
    if (rn(S, 3) == 0) note(w, OP(w, OP_YIELD, weft_yield()));
  }
  if (!P->hclosed[w->id]) ch_close(P, w, tx, true, w->name); /* cleanup */
  return wk_exit(w, rc);
}

static void ch_deliver(chanp *P, wk *w, const qitem *it) {
  soak *S = &P->S;
  if (it->p < 0 || it->p >= S->nw || it->seq < 0 || it->seq >= QMAXSEQ) {
    fail(S, "chan.phantom", "%s: got an item never sent", w->name);
    return;
  }
  int st = P->st[it->p][it->seq];
  if (st != QS_PUTTING && st != QS_IN)
    fail(S, "chan.phantom", "%s: got item %d/%d whose send %s", w->name,
         it->p, it->seq, st == QS_FAILED ? "failed" : "never began");
  if (++P->got[it->p][it->seq] > 1)
    fail(S, "chan.once", "%s: item %d/%d received %d times", w->name, it->p,
         it->seq, P->got[it->p][it->seq]);
  if (it->seq < P->last[w->id][it->p])
    fail(S, "chan.order", "%s: item %d/%d after %d/%d", w->name, it->p,
         it->seq, it->p, P->last[w->id][it->p] - 1);
  P->last[w->id][it->p] = it->seq + 1;
  P->n_got++;
  TRACE(S, "%s: got %d/%d", w->name, it->p, it->seq);
}

static int ch_receiver(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  chanp *P = (chanp *)S;
  wk_enter(w);
  weft_chan_rx *rx = P->handle[w->id];
  int rc = 0;
  for (int i = 0; i < 40 && !P->hclosed[w->id]; i++) {
    qitem it;
    int rrc;
    if (rn(S, 6) == 0) {
      rrc = weft_chan_try_recv(rx, &it);
      TRACE(S, "%s: try_recv -> %s", w->name, cn(rrc));
    } else {
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      rrc = note(w, OP(w, OP_RECV, weft_chan_recv(rx, &it)));
      sc_close(w, &sc);
    }
    if (rrc == 0) ch_deliver(P, w, &it);
    if (rrc == WEFT_EEND) {
      if (P->ntx)
        fail(S, "chan.eoc", "%s: end of channel with %d send handle(s) open",
             w->name, P->ntx);
      P->eoc = true;
      break;
    }
    if (rrc == -EBADF) {
      if (!P->hclosed[w->id])
        fail(S, "chan.ebadf", "%s: -EBADF, its handle is open", w->name);
      break;
    }
    if (rrc != 0 && rrc != -ECANCELED && rrc != -EAGAIN)
      fail(S, "chan.recv_rc", "%s: recv %s", w->name, cn(rrc));
    if (rrc == 0)
      for (int k = rn(S, 2); k > 0; k--) note(w, OP(w, OP_YIELD, weft_yield()));
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
    if (rrc == -EAGAIN) note(w, OP(w, OP_YIELD, weft_yield()));
  }
  if (!P->hclosed[w->id]) ch_close(P, w, rx, false, w->name); /* cleanup */
  return wk_exit(w, rc);
}

static bool ch_avail(soak *S, wk *w) {
  chanp *P = (chanp *)S;
  if (w->op == OP_RECV) return P->hclosed[w->id] || P->ntx == 0;
  if (w->op == OP_SEND) return P->hclosed[w->id] || P->nrx == 0;
  return false;
}

/* Closes the handle a worker is blocked on. */
static void ch_chaos(soak *S) {
  chanp *P = (chanp *)S;
  if (!pm(S, 15)) return;
  wk *w = &S->w[rn(S, S->nw)];
  if ((w->op == OP_SEND || w->op == OP_RECV) && !P->hclosed[w->id]) {
    P->hclosed[w->id] = true;
    ch_close(P, w, P->handle[w->id], w->op == OP_SEND, "director");
  }
}

static void ch_cancel_more(soak *S) {
  chanp *P = (chanp *)S;
  if (P->tx0) ch_close(P, NULL, P->tx0, true, "unwinding");
  if (P->rx0) ch_close(P, NULL, P->rx0, false, "unwinding");
  P->tx0 = NULL;
  P->rx0 = NULL;
}

static void ch_setup(soak *S) {
  chanp *P = (chanp *)S;
  int k = rn(S, 4);
  P->cap = k == 0 ? 0 : k == 3 ? WEFT_CHAN_UNBOUNDED : (size_t)k;
  weft_chan_ends ch = weft_chan_open(P->cap, sizeof(qitem));
  if (!ch.tx) fail(S, "chan.open", "weft_chan_open: %s", cn(-errno));
  P->tx0 = ch.tx;
  P->rx0 = ch.rx;
  P->ntx = P->nrx = 1;
  S->avail = ch_avail;
  S->chaos = ch_chaos;
  S->cancel_more = ch_cancel_more;
}

static int ch_main(void *arg) {
  chanp *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  TRACE(S, "chan: capacity %zd", P->cap == WEFT_CHAN_UNBOUNDED ? -1 : (ssize_t)P->cap);
  int ns = 1 + rn(S, 3), nr = 1 + rn(S, 3);
  int close_tx_at = rn(S, ns + nr + 1), close_rx_at = rn(S, ns + nr + 1);
  for (int i = 0; i <= ns + nr; i++) {
    if (i == close_tx_at && P->tx0) {
      ch_close(P, NULL, P->tx0, true, "root");
      P->tx0 = NULL;
    }
    if (i == close_rx_at && P->rx0) {
      ch_close(P, NULL, P->rx0, false, "root");
      P->rx0 = NULL;
    }
    if (i == ns + nr) break;
    bool snd = i < ns;
    wk *w = wk_new(S, snd ? R_PROD : C_RECEIVER, snd ? "s" : "r");
    /* A clone from a handle still open. */
    void *h = NULL;
    if (snd) {
      weft_chan_tx *from = P->tx0;
      for (int j = 0; !from && j < w->id; j++)
        if (S->w[j].role == R_PROD && !S->w[j].returned && !P->hclosed[j])
          from = P->handle[j];
      if (from) h = weft_chan_tx_clone(from);
      if (h) P->ntx++;
    } else {
      weft_chan_rx *from = P->rx0;
      for (int j = 0; !from && j < w->id; j++)
        if (S->w[j].role == C_RECEIVER && !S->w[j].returned && !P->hclosed[j])
          from = P->handle[j];
      if (from) h = weft_chan_rx_clone(from);
      if (h) P->nrx++;
    }
    if (!h) { /* every handle of that side is gone already */
      S->nw--;
      continue;
    }
    P->handle[w->id] = h;
    wk_spawn(w, snd ? ch_sender : ch_receiver, rn(S, 5) == 0);
    if (rn(S, 3) == 0) weft_yield();
  }
  if (P->tx0) ch_close(P, NULL, P->tx0, true, "root");
  if (P->rx0) ch_close(P, NULL, P->rx0, false, "root");
  P->tx0 = NULL;
  P->rx0 = NULL;
  S->spawned_all = true;
  join_all(S, 20);
  soak_end(S);
  for (int p = 0; p < S->nw; p++)
    for (int q = 0; q < QMAXSEQ; q++)
      if (P->st[p][q] == QS_PUTTING)
        fail(S, "chan.send_rc", "item %d/%d: its send never returned", p, q);
  if (P->eoc && P->n_in != P->n_got)
    fail(S, "chan.complete", "a receiver got to the end of the channel, but "
         "%ld item(s) were sent and %ld received", P->n_in, P->n_got);
  if (P->ntx || P->nrx)
    fail(S, "chan.close", "%d send, %d receive handle(s) left open", P->ntx,
         P->nrx);
  return 0;
}

Test(soak, chan, .timeout = 900) {
  static const soak_prog p = {"chan", sizeof(chanp), 2000, 3000, ch_setup,
                              ch_main, NULL};
  soak_drive(&p);
}

/* ================================================================== */
/* soak/evbar: events and barriers                                     */
/* ================================================================== */
/*
 * Waiters wait on an event that setters (and the director) set and clear;
 * parties go round a barrier of 1-4 parties, leaving when cancelled; the
 * director aborts or resets the barrier now and then, and sets the event
 * and aborts the barrier once the setters are done.
 * Invariants: an event wait returns 0 only if the event was set when it
 * began or has been set since; nobody waits on a set event; barrier
 * indices are in [0, parties), and every round hands out each index once
 * (at the end each index was returned as often as parties - 1, the
 * releaser's); n_waiting never exceeds the parties in wait, nor parties -
 * 1; -EPIPE only after an abort or a reset; nobody waits on a broken
 * barrier (lost wakeup).
 */

enum { EV_WAITER = 10, EV_PARTY };

typedef struct evp {
  soak S;
  weft_event *e;
  weft_barrier *b;
  size_t parties;
  long sets;       /* weft_event_set calls that set it */
  long resets;     /* aborts and resets of the barrier */
  bool broken;
  long count[4];   /* barrier indices returned */
} evp;

static void ev_set(evp *P, const char *who) {
  if (!weft_event_is_set(P->e)) P->sets++;
  int rc = weft_event_set(P->e);
  TRACE(&P->S, "%s: sets the event", who);
  if (rc) fail(&P->S, "event.rc", "set: %s", cn(rc));
}

static void ev_clear(evp *P, const char *who) {
  int rc = weft_event_clear(P->e);
  TRACE(&P->S, "%s: clears the event", who);
  if (rc) fail(&P->S, "event.rc", "clear: %s", cn(rc));
}

static int ev_worker(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  evp *P = (evp *)S;
  wk_enter(w);
  int rc = 0, rounds = 1 + rn(S, 4);
  for (int r = 0; r < rounds; r++) {
    if (w->role == R_PROD) {
      for (int k = rn(S, 3); k > 0; k--) note(w, OP(w, OP_YIELD, weft_yield()));
      if (rn(S, 3))
        ev_set(P, w->name);
      else
        ev_clear(P, w->name);
      cancel_someone(w, 100);
    } else if (w->role == EV_WAITER) {
      bool was = weft_event_is_set(P->e);
      long sets = P->sets;
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      int wrc = note(w, OP(w, OP_EVENT, weft_event_wait(P->e)));
      sc_close(w, &sc);
      if (wrc == 0 && !was && P->sets == sets)
        fail(S, "event.spurious", "%s: wait returned 0, the event was not set "
             "since it began", w->name);
      if (wrc != 0 && wrc != -ECANCELED)
        fail(S, "event.rc", "%s: wait %s", w->name, cn(wrc));
    } else {
      long resets = P->resets;
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      int idx = note(w, OP(w, OP_BARRIER, weft_barrier_wait(P->b)));
      sc_close(w, &sc);
      if (idx >= 0) {
        if ((size_t)idx >= P->parties)
          fail(S, "barrier.index", "%s: index %d of %zu parties", w->name, idx,
               P->parties);
        else
          P->count[idx]++;
      } else if (idx == -EPIPE) {
        if (P->resets == resets && !P->broken)
          fail(S, "barrier.epipe", "%s: -EPIPE, no abort or reset", w->name);
        if (P->broken) break;
      } else if (idx != -ECANCELED) {
        fail(S, "barrier.rc", "%s: wait %s", w->name, cn(idx));
      }
    }
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
    if (rn(S, 3) == 0) note(w, OP(w, OP_YIELD, weft_yield()));
  }
  return wk_exit(w, rc);
}

static bool ev_avail(soak *S, wk *w) {
  evp *P = (evp *)S;
  if (w->op == OP_EVENT) return weft_event_is_set(P->e);
  if (w->op == OP_BARRIER) return P->broken;
  return false;
}

static void ev_check(soak *S) {
  evp *P = (evp *)S;
  size_t n = weft_barrier_n_waiting(P->b), in = 0;
  for (int i = 0; i < S->nw; i++) in += S->w[i].op == OP_BARRIER;
  if (n > in || n >= P->parties)
    fail(S, "barrier.n_waiting", "n_waiting %zu with %zu in wait, %zu parties",
         n, in, P->parties);
  if (weft_barrier_broken(P->b) != P->broken)
    fail(S, "barrier.broken", "broken() is %d", weft_barrier_broken(P->b));
}

static void ev_abort(evp *P, const char *who) {
  P->broken = true;
  P->resets++;
  TRACE(&P->S, "%s: aborts the barrier", who);
  int rc = weft_barrier_abort(P->b);
  if (rc) fail(&P->S, "barrier.rc", "abort: %s", cn(rc));
}

static void ev_chaos(soak *S) {
  evp *P = (evp *)S;
  if (pm(S, 20)) ev_set(P, "director");
  if (pm(S, 10)) ev_clear(P, "director");
  if (pm(S, 5)) {
    P->broken = false;
    P->resets++;
    TRACE(S, "director: resets the barrier");
    int rc = weft_barrier_reset(P->b);
    if (rc) fail(S, "barrier.rc", "reset: %s", cn(rc));
  }
  if (!P->broken && pm(S, 3)) ev_abort(P, "director");
}

static void ev_end_phase(soak *S) {
  evp *P = (evp *)S;
  ev_set(P, "director");
  ev_abort(P, "director");
}

/* Waiters on a clear event, parties short of a full round: set it, and
 * reset or abort the barrier. */
static void ev_stall(soak *S) {
  evp *P = (evp *)S;
  ev_set(P, "director (stalled)");
  if (rn(S, 2)) {
    P->broken = false;
    P->resets++;
    TRACE(S, "director: resets the barrier");
    weft_barrier_reset(P->b);
  } else if (!P->broken) {
    ev_abort(P, "director (stalled)");
  }
}

static void ev_setup(soak *S) {
  evp *P = (evp *)S;
  P->e = weft_event_new();
  P->parties = (size_t)(1 + rn(S, 4));
  P->b = weft_barrier_new(P->parties);
  S->check = ev_check;
  S->avail = ev_avail;
  S->chaos = ev_chaos;
  S->end_phase = ev_end_phase;
  S->cancel_more = ev_end_phase;
  S->stall = ev_stall;
}

static int ev_main(void *arg) {
  evp *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  TRACE(S, "barrier of %zu parties", P->parties);
  int ns = 1 + rn(S, 2), nw = 1 + rn(S, 3), np = (int)P->parties + rn(S, 3);
  for (int i = 0; i < ns + nw + np; i++) {
    int role = i < ns ? R_PROD : i < ns + nw ? EV_WAITER : EV_PARTY;
    wk *w = wk_new(S, role, role == R_PROD ? "s" : role == EV_WAITER ? "w" : "b");
    wk_spawn(w, ev_worker, rn(S, 5) == 0);
    if (rn(S, 3) == 0) weft_yield();
  }
  S->spawned_all = true;
  join_all(S, 20);
  soak_end(S);
  for (size_t i = 0; i + 1 < P->parties; i++)
    if (P->count[i] != P->count[P->parties - 1])
      fail(S, "barrier.indices", "index %zu returned %ld times, index %zu "
           "(the releaser's) %ld times", i, P->count[i], P->parties - 1,
           P->count[P->parties - 1]);
  return 0;
}

static void ev_teardown(soak *S) {
  evp *P = (evp *)S;
  int rc = weft_event_free(P->e);
  if (rc) fail(S, "api.free", "weft_event_free: %s", cn(rc));
  if ((rc = weft_barrier_free(P->b)))
    fail(S, "api.free", "weft_barrier_free: %s", cn(rc));
}

Test(soak, evbar, .timeout = 900) {
  static const soak_prog p = {"evbar", sizeof(evp), 2000, 3000, ev_setup,
                              ev_main, ev_teardown};
  soak_drive(&p);
}

/* ================================================================== */
/* soak/group: groups, nested scopes and shields                       */
/* ================================================================== */
/*
 * "Top" workers (spawned, joined by the root in random ways) each run a
 * group, sometimes inside a scope of a random kind. A group's children
 * run short random scripts: yields, waits on a shared gate semaphore in
 * random scopes, nested scopes, nested groups (two levels down), spawns of
 * siblings into their group, weft_group_cancel of their group, failing
 * with a code, and a shielded cleanup. The group's body yields, spawns
 * late children, starts children with weft_group_start (which report
 * readiness after a few yields, or fail or return before), and now and
 * then cancels the group or fails it (weft_group_fail). The director
 * cancels workers, expires and cancels their scopes, cancels groups, and
 * hands out gate permits.
 * Invariants, at each close: it waited for every child; the error list is
 * exactly the children's failures (codes < 0 other than -ECANCELED) and
 * the body's, each once, by name (group.errors.*); close returns
 * WEFT_EGROUP if anything failed, else -ECANCELED if an enclosing
 * cancellation is in effect, else 0; after a failure (or a cancel) of the
 * group, every checkpoint of its body and of its children outside shields
 * returns -ECANCELED; [the lead's rule] spawning into a group after a
 * failure is refused with ESHUTDOWN, and allowed before (also after
 * weft_group_cancel); weft_group_start returns 0 and the child's value
 * once it reports readiness, else the child's code (WEFT_ENOTSTARTED for
 * 0) once it has returned, and such an early failure is not the group's;
 * weft_started works once; a checkpoint in a fresh shield returns 0; the
 * scope rules of sc_close; no group close or start waits once what it
 * waits for has happened (lost wakeup).
 */

#define GMAXNODES 12

typedef struct gnode {
  weft_group *g;
  wk *owner;
  int depth;
  bool open, failed, cancelled;
  bool ecanceled; /* a child ended -ECANCELED without being cancelled */
  int live; /* children spawned, not returned */
  int nbody;
  int body_code[4];
} gnode;

typedef struct groupp {
  soak S;
  weft_sem *gate;
  int nn;
  gnode node[GMAXNODES];
} groupp;

enum { G_TOP = 10, G_CHILD, G_START };

static int g_child(void *arg);
static int g_start_child(void *arg);

static const int GCODES[] = {-EIO, -EPROTO, -ENOENT, -EPIPE};

/* A checkpoint of a group's body or child, outside any scope of its own:
 * after a failure or a cancel of the group it must return -ECANCELED. */
static void g_yield(wk *w, gnode *n, const char *where) {
  bool must = n->failed || n->cancelled;
  int rc = note(w, OP(w, OP_YIELD, weft_yield()));
  if (must && rc == 0)
    fail(w->S, "group.cancel_reaches",
         "%s: a checkpoint of %s returned 0 after its group %s", w->name, where,
         n->failed ? "failed" : "was cancelled");
}

/* Spawns a child into n; checks the spawn against the rule. */
static void g_spawn(groupp *P, gnode *n) {
  soak *S = &P->S;
  if (S->nw >= MAXW - 1 || !n->open) return;
  wk *c = wk_new(S, G_CHILD, "c");
  c->p = n;
  bool failed = n->failed;
  errno = 0;
  n->live++; /* an eager child may return before the spawn does */
  weft_task *t = wk_gspawn(c, n->g, g_child, rn(S, 4) == 0);
  int e = errno;
  TRACE(S, "spawns %s into group %d: %s", c->name, (int)(n - P->node),
        t || c->returned ? "ok" : strerror(e));
  if (!c->spawned) n->live--;
  if (c->spawned) {
    if (failed)
      fail(S, "group.spawn_after_failure",
           "%s: weft_group_spawn into a group that failed succeeded", c->name);
  } else {
    S->nw--; /* not spawned: forget it */
    if (failed && e != ESHUTDOWN)
      fail(S, "group.spawn_after_failure",
           "spawn into a group that failed: errno %d, want ESHUTDOWN", e);
    else if (!failed && !(e == ESHUTDOWN && n->ecanceled))
      fail(S, "group.spawn", "spawn into an open group refused: errno %d (%s)",
           e, n->cancelled ? "cancelled, not failed" : "not failed");
  }
}

/* weft_group_start in w (the group's body): checks what it returns
 * against what the child did. */
static void g_start(groupp *P, gnode *n, wk *w) {
  soak *S = &P->S;
  if (S->nw >= MAXW - 1 || !n->open) return;
  wk *c = wk_new(S, G_START, "s");
  c->p = n;
  c->spawned = c->alive = c->grp = true; /* no handle: never cancelled */
  n->live++;
  bool failed = n->failed;
  void *val = NULL;
  weft_spawn_opts o = {.name = c->name};
  sc_ctx sc;
  sc_open(w, &sc, pick_kind(S));
  sc.complex = true; /* start returns the child's code */
  w->p = c;          /* for the lost-wakeup check */
  int rc = note(w, OP(w, OP_START, weft_group_start(n->g, g_start_child, c, &o,
                                                    &val)));
  w->p = n;
  bool cancelled = weft_check_cancel() == -ECANCELED;
  sc_close(w, &sc);
  TRACE(S, "%s: group_start(%s) -> %s", w->name, c->name, cn(rc));
  if (!c->ran) { /* never spawned */
    n->live--;
    c->spawned = c->alive = false;
    if (failed && rc != -ESHUTDOWN)
      fail(S, "group.spawn_after_failure", "%s: weft_group_start into a "
           "group that failed returned %s, want -ESHUTDOWN", w->name, cn(rc));
    else if (!failed && rc != -ECANCELED && !(rc == -ESHUTDOWN && n->ecanceled))
      fail(S, "group.start", "%s: its child never ran, start returned %s",
           w->name, cn(rc));
    return;
  }
  if (failed)
    fail(S, "group.spawn_after_failure", "%s: weft_group_start into a group "
         "that failed ran its child", w->name);
  if (rc == 0) {
    if (!c->started || val != c)
      fail(S, "group.start", "%s: start returned 0, child started %d, value "
           "%s", w->name, c->started, val == c ? "right" : "wrong");
  } else if (c->started) {
    fail(S, "group.start", "%s: the child started, start returned %s", w->name,
         cn(rc));
  } else if (!c->returned) {
    fail(S, "group.start", "%s: start returned %s before its child did",
         w->name, cn(rc));
  } else if (rc != (c->result < 0 ? c->result : WEFT_ENOTSTARTED) &&
             !(rc == -ECANCELED && cancelled)) {
    fail(S, "group.start", "%s: the child returned %s before it started, "
         "start returned %s", w->name, cn(c->result), cn(rc));
  }
}

/* Compares the error list of a closed group with what its children
 * returned and its body reported. */
static int g_check_errors(groupp *P, gnode *n, wk *owner, weft_errors *e) {
  soak *S = &P->S;
  size_t ne = weft_errors_count(e);
  bool used[32] = {0};
  int expected = 0;
  char missing[200] = "";
  for (int i = 0; i < S->nw; i++) {
    wk *c = &S->w[i];
    if (c->p != n || !c->spawned) continue;
    if (c->role != G_CHILD && !(c->role == G_START && c->started)) continue;
    if (c->result >= 0 || c->result == -ECANCELED) continue;
    expected++;
    bool found = false;
    for (size_t k = 0; k < ne && k < 32 && !found; k++) {
      const char *name;
      int code;
      weft_errors_get(e, k, &name, &code, NULL);
      if (!used[k] && code == c->result && strcmp(name, c->name) == 0)
        found = used[k] = true;
    }
    if (!found)
      snprintf(missing + strlen(missing), sizeof missing - strlen(missing),
               " %s:%s", c->name, cn(c->result));
  }
  for (int b = 0; b < n->nbody; b++) {
    expected++;
    bool found = false;
    for (size_t k = 0; k < ne && k < 32 && !found; k++) {
      const char *name;
      int code;
      weft_errors_get(e, k, &name, &code, NULL);
      if (!used[k] && code == n->body_code[b] && strcmp(name, owner->name) == 0)
        found = used[k] = true;
    }
    if (!found)
      snprintf(missing + strlen(missing), sizeof missing - strlen(missing),
               " body(%s):%s", owner->name, cn(n->body_code[b]));
  }
  if (*missing)
    fail(S, "group.errors.missing", "group of %s: failures missing from the "
         "list:%s", owner->name, missing);
  for (size_t k = 0; k < ne && k < 32; k++) {
    if (used[k]) continue;
    const char *name;
    int code;
    weft_errors_get(e, k, &name, &code, NULL);
    if (code == -ECANCELED)
      fail(S, "group.errors.ecanceled", "group of %s: %s is in the error list "
           "with -ECANCELED", owner->name, name);
    else
      fail(S, "group.errors.spurious", "group of %s: %s:%s is in the error "
           "list, it did not return that", owner->name, name, cn(code));
  }
  return expected;
}

/* Opens a group in w, runs its body, closes it and checks the outcome. */
static int g_node(wk *w, int depth) {
  soak *S = w->S;
  groupp *P = (groupp *)S;
  if (P->nn >= GMAXNODES) return 0;
  gnode *n = &P->node[P->nn++];
  memset(n, 0, sizeof *n);
  n->owner = w;
  n->depth = depth;
  n->g = weft_group_open();
  if (!n->g) {
    fail(S, "api.group_open", "%s: errno %d", w->name, errno);
    return 0;
  }
  n->open = true;
  TRACE(S, "%s: opens group %d (depth %d)", w->name, (int)(n - P->node), depth);
  for (int k = 1 + rn(S, 3); k > 0; k--) g_spawn(P, n);
  for (int k = rn(S, 5); k > 0; k--) {
    int a = rn(S, 100);
    if (a < 40) {
      g_yield(w, n, "the body");
    } else if (a < 60) {
      g_spawn(P, n);
    } else if (a < 75) {
      g_start(P, n, w);
    } else if (a < 85) {
      TRACE(S, "%s: cancels its group %d", w->name, (int)(n - P->node));
      n->cancelled = true;
      int rc = weft_group_cancel(n->g);
      if (rc) fail(S, "api.group_cancel", "%s: %s", w->name, cn(rc));
    } else if (a < 92 && n->nbody < 4) {
      int code = GCODES[rn(S, 4)];
      TRACE(S, "%s: its body fails with %s", w->name, cn(code));
      int rc = weft_group_fail(n->g, code, "body of %s", w->name);
      if (rc) fail(S, "api.group_fail", "%s: %s", w->name, cn(rc));
      n->body_code[n->nbody++] = code;
      n->failed = true;
    }
  }
  weft_errors *e = NULL;
  w->p = n; /* for the lost-wakeup check */
  int rc = OP(w, OP_GCLOSE, weft_group_close(n->g, &e));
  n->open = false;
  int outer = -1;
  if (rn(S, 2)) outer = note(w, weft_check_cancel()) == -ECANCELED;
  if (n->live)
    fail(S, "group.close.waits", "%s: close returned with %d child(ren) "
         "running", w->name, n->live);
  int expected = g_check_errors(P, n, w, e);
  if (expected && rc != WEFT_EGROUP)
    fail(S, "group.close.rc", "%s: %d failure(s), close returned %s", w->name,
         expected, cn(rc));
  else if (!expected && rc == WEFT_EGROUP && weft_errors_count(e) == 0)
    fail(S, "group.close.rc", "%s: WEFT_EGROUP with an empty list", w->name);
  else if (!expected && rc != WEFT_EGROUP) {
    if (rc != 0 && rc != -ECANCELED)
      fail(S, "group.close.rc", "%s: close returned %s", w->name, cn(rc));
    else if (outer >= 0 && rc != (outer ? -ECANCELED : 0))
      fail(S, "group.close.rc", "%s: nothing failed, outer cancellation %s in "
           "effect, close returned %s", w->name, outer ? "is" : "is not",
           cn(rc));
  }
  weft_errors_free(e);
  return rc;
}

/* A child's script; returns what the child returns. */
static int g_child_run(wk *w) {
  soak *S = w->S;
  groupp *P = (groupp *)S;
  gnode *n = w->p;
  int rc = 0;
  for (int k = 1 + rn(S, 4); k > 0 && rc == 0; k--) {
    int a = rn(S, 100);
    if (a < 30) {
      g_yield(w, n, "a child");
    } else if (a < 50) {
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      int arc = note(w, OP(w, OP_SEM, weft_sem_acquire(P->gate)));
      if (arc == 0) {
        note(w, OP(w, OP_YIELD, weft_yield()));
        weft_sem_release(P->gate);
      }
      if (sc_close(w, &sc) == -ETIMEDOUT && rn(S, 2)) rc = -ETIMEDOUT;
    } else if (a < 65) {
      sc_ctx sc;
      int kind = pick_kind(S);
      sc_open(w, &sc, kind == SK_NONE ? SK_PAST : kind);
      for (int j = 1 + rn(S, 2); j > 0; j--)
        note(w, OP(w, OP_YIELD, weft_yield()));
      if (sc_close(w, &sc) == -ETIMEDOUT && rn(S, 2)) rc = -ETIMEDOUT;
    } else if (a < 75 && n->depth < 2) {
      gnode *saved = w->p;
      int grc = g_node(w, n->depth + 1);
      w->p = saved;
      if (grc == WEFT_EGROUP && rn(S, 2)) rc = grc;
    } else if (a < 85) {
      g_spawn(P, n);
    } else if (a < 89) {
      if (n->open) {
        TRACE(S, "%s: cancels its group", w->name);
        n->cancelled = true;
        weft_group_cancel(n->g);
      }
    } else {
      rc = weft_fail(GCODES[rn(S, 4)], "%s failed", w->name);
    }
    if (rc == 0 && weft_check_cancel() == -ECANCELED) rc = -ECANCELED;
  }
  return rc;
}

/* The end of a child that ran as a member of its group. */
static int g_child_end(wk *w, int rc) {
  soak *S = w->S;
  gnode *n = w->p;
  if (rn(S, 3) == 0) { /* a cleanup that needs a checkpoint: shielded */
    weft_scope sh;
    weft_scope_open_shielded(&sh, WEFT_FOREVER);
    int yrc = OP(w, OP_YIELD, weft_yield());
    int crc = weft_scope_close(&sh);
    if (yrc != 0 || crc != 0)
      fail(S, "scope.shield", "%s: in a fresh shield a yield returned %s and "
           "close %s", w->name, cn(yrc), cn(crc));
  }
  /* Now and then a child ends -ECANCELED without being cancelled (it
   * caught a cancellation of its own and passes it on): asyncio never
   * counts that as a failure either. */
  if (rc == 0 && rn(S, 40) == 0) {
    rc = -ECANCELED;
    n->ecanceled = true; /* if the group counts it as a failure */
  }
  if (rc < 0 && rc != -ECANCELED) n->failed = true; /* recorded as it returns */
  n->live--;
  return wk_exit(w, rc);
}

static int g_child(void *arg) {
  wk *w = arg;
  wk_enter(w);
  return g_child_end(w, g_child_run(w));
}

/* A child of weft_group_start: a few yields, then it reports readiness
 * (and goes on as any child), or fails, or returns 0, before that. */
static int g_start_child(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  gnode *n = w->p;
  wk_enter(w);
  int rc = 0;
  for (int k = rn(S, 3); k > 0 && rc == 0; k--)
    rc = note(w, OP(w, OP_YIELD, weft_yield()));
  int a = rn(S, 10);
  if (rc == 0 && a >= 2) {
    w->started = true;
    TRACE(S, "%s: started", w->name);
    int src = weft_started(w);
    int again = weft_started(w);
    if (src != 0 || again != -EINVAL)
      fail(S, "group.start", "%s: weft_started returned %s, then %s", w->name,
           cn(src), cn(again));
    return g_child_end(w, g_child_run(w));
  }
  if (rc == 0 && a == 0) rc = weft_fail(GCODES[rn(S, 4)], "%s: not started", w->name);
  n->live--;
  return wk_exit(w, rc); /* the starter's result, not the group's */
}

static int g_top(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  wk_enter(w);
  sc_ctx sc;
  sc_open(w, &sc, pick_kind(S));
  sc.complex = true; /* the group's scope is in between */
  int rc = g_node(w, 0);
  int crc = sc_close(w, &sc);
  if (crc == -ETIMEDOUT && rc == 0) rc = crc;
  return wk_exit(w, rc);
}

static bool g_avail(soak *S, wk *w) {
  (void)S;
  if (w->op == OP_START) {
    wk *c = w->p;
    return c->started || c->returned;
  }
  return w->op == OP_GCLOSE && ((gnode *)w->p)->live == 0;
}

static void g_chaos(soak *S) {
  groupp *P = (groupp *)S;
  if (pm(S, 150)) {
    int rc = weft_sem_release(P->gate);
    TRACE(S, "director: a gate permit -> %s", cn(rc));
  }
  if (P->nn && pm(S, 12)) {
    gnode *n = &P->node[rn(S, P->nn)];
    if (n->open) {
      TRACE(S, "director: cancels group %d", (int)(n - P->node));
      n->cancelled = true;
      int rc = weft_group_cancel(n->g);
      if (rc) fail(S, "api.group_cancel", "%s", cn(rc));
    }
  }
}

static void g_stall(soak *S) { weft_sem_release(((groupp *)S)->gate); }

static void g_cancel_more(soak *S) {
  groupp *P = (groupp *)S;
  for (int i = 0; i < P->nn; i++)
    if (P->node[i].open) weft_group_cancel(P->node[i].g);
}

static void g_setup(soak *S) {
  groupp *P = (groupp *)S;
  P->gate = weft_sem_new(1);
  S->avail = g_avail;
  S->chaos = g_chaos;
  S->cancel_more = g_cancel_more;
  S->stall = g_stall;
  S->p_cancel = 40;
}

static int g_main(void *arg) {
  groupp *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  for (int i = 1 + rn(S, 2); i > 0; i--) {
    wk *w = wk_new(S, G_TOP, "t");
    wk_spawn(w, g_top, rn(S, 4) == 0);
    if (rn(S, 2)) weft_yield();
  }
  S->spawned_all = true;
  join_all(S, 25);
  soak_end(S);
  return 0;
}

static void g_teardown(soak *S) {
  groupp *P = (groupp *)S;
  weft_sem_free(P->gate);
}

Test(soak, group, .timeout = 900) {
  static const soak_prog p = {"group", sizeof(groupp), 2000, 3000, g_setup,
                              g_main, g_teardown};
  soak_drive(&p);
}

/* ================================================================== */
/* soak/combine: gather, race, wait, as_completed                      */
/* ================================================================== */
/*
 * Callers run combinators, each in a random kind of scope, over 1-4
 * leaves. A leaf yields, may wait at a gate semaphore, and returns a value
 * (>= 0), fails with a code, or ends -ECANCELED once cancelled. gather
 * (both modes) and race run the leaves as their own children; wait and
 * as_completed watch leaves the caller spawned and then joins. The
 * director cancels callers and leaves (a leaf cancelled so is "cancelled
 * from outside") and expires or cancels the callers' scopes.
 * Invariants: results[i] is what leaf i returned, or -ECANCELED for one
 * that never ran; every leaf that ran has returned when gather or race
 * does; gather returns the first failure (in completion order), else
 * -ECANCELED if the caller was cancelled, else [the lead's rule] -ECANCELED
 * if a leaf was cancelled from outside, else 0; with WEFT_GATHER_ALL 0
 * unless the caller was cancelled; race returns the first success and its
 * index, else the first failure, else -ECANCELED; wait's count and done[]
 * match the leaves that returned, and without a deadline its condition
 * holds; as_completed returns each leaf once, only when it is done, then
 * WEFT_EEND, and -ETIMEDOUT only with every finished leaf returned; joins
 * return the leaves' results; no caller stays in wait or as_completed
 * with its condition met (lost wakeup).
 */

enum { CB_CALLER = 10, CB_LEAF };

typedef struct cbop {
  int kind; /* 0 gather, 1 gather ALL, 2 race, 3 wait, 4 as_completed */
  int n;
  int leaf[4];       /* worker ids */
  int mode;          /* wait */
  bool returned[4];  /* as_completed: handed out */
} cbop;

typedef struct combp {
  soak S;
  weft_sem *gate;
  long order;
  cbop ops[MAXW];
} combp;

static int cb_leaf(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  combp *P = (combp *)S;
  if (!w->spawned) { /* gather/race children: we learn of them here */
    w->spawned = w->alive = true;
    w->h = weft_current();
    w->hvalid = true;
    w->grp = true;
  }
  wk_enter(w);
  int rc = 0;
  for (int k = rn(S, 4); k > 0 && rc == 0; k--) {
    if (rn(S, 4) == 0) {
      sc_ctx sc;
      sc_open(w, &sc, pick_kind(S));
      int arc = note(w, OP(w, OP_SEM, weft_sem_acquire(P->gate)));
      if (arc == 0) weft_sem_release(P->gate);
      sc_close(w, &sc);
    } else {
      note(w, OP(w, OP_YIELD, weft_yield()));
    }
    if (weft_check_cancel() == -ECANCELED) rc = -ECANCELED;
  }
  if (rc == 0) {
    int a = rn(S, 100);
    rc = a < 55 ? rn(S, 10) : a < 85 ? weft_fail(GCODES[rn(S, 4)], "leaf") : 0;
  }
  w->order = ++P->order;
  return wk_exit(w, rc);
}

/* New leaves for an operation. */
static int cb_leaves(combp *P, cbop *op, int n) {
  soak *S = &P->S;
  op->n = 0;
  for (int i = 0; i < n && S->nw < MAXW; i++) {
    wk *l = wk_new(S, CB_LEAF, "l");
    op->leaf[op->n++] = l->id;
  }
  return op->n;
}

static wk *cb_l(combp *P, cbop *op, int i) { return &P->S.w[op->leaf[i]]; }

static void cb_gather_race(combp *P, wk *w, cbop *op) {
  soak *S = &P->S;
  weft_call calls[4];
  int results[4] = {99, 99, 99, 99};
  for (int i = 0; i < op->n; i++)
    calls[i] = (weft_call){cb_leaf, cb_l(P, op, i)};
  size_t winner = 99;
  sc_ctx sc;
  sc_open(w, &sc, pick_kind(S));
  sc.complex = true;
  int rc;
  if (op->kind == 2)
    rc = note(w, OP(w, OP_RACE, weft_race(calls, (size_t)op->n, results, &winner)));
  else
    rc = note(w, OP(w, OP_GATHER,
                    weft_gather(calls, (size_t)op->n, results,
                                op->kind == 1 ? WEFT_GATHER_ALL : 0)));
  bool caller = note(w, weft_check_cancel()) == -ECANCELED;
  sc_close(w, &sc);
  const char *what = op->kind == 2 ? "race" : op->kind == 1 ? "gather(ALL)" : "gather";
  /* Per leaf. */
  wk *first_fail = NULL, *first_win = NULL, *first_out = NULL;
  for (int i = 0; i < op->n; i++) {
    wk *l = cb_l(P, op, i);
    if (!l->ran) {
      if (results[i] != -ECANCELED)
        fail(S, "combine.results", "%s: %s: leaf %s never ran, results[%d] = %s",
             w->name, what, l->name, i, cn(results[i]));
      continue;
    }
    if (!l->returned) {
      fail(S, "combine.waits", "%s: %s returned with %s still running",
           w->name, what, l->name);
      continue;
    }
    if (results[i] != l->result)
      fail(S, "combine.results", "%s: %s: %s returned %s, results[%d] = %s",
           w->name, what, l->name, cn(l->result), i, cn(results[i]));
    if (l->result < 0 && l->result != -ECANCELED &&
        (!first_fail || l->order < first_fail->order))
      first_fail = l;
    if (l->result >= 0 && (!first_win || l->order < first_win->order))
      first_win = l;
    if (l->result == -ECANCELED && l->outside &&
        (!first_out || l->order < first_out->order))
      first_out = l;
  }
  TRACE(S, "%s: %s -> %s (caller cancelled %d, first failure %s, first "
        "success %s, outside cancel %s)", w->name, what, cn(rc), caller,
        first_fail ? first_fail->name : "-", first_win ? first_win->name : "-",
        first_out ? first_out->name : "-");
  if (op->kind == 2) {
    if (first_win) {
      if (rc != first_win->result || winner >= (size_t)op->n ||
          op->leaf[winner] != first_win->id)
        fail(S, "race.winner", "%s: %s won first with %s, race returned %s, "
             "winner %zu", w->name, first_win->name, cn(first_win->result),
             cn(rc), winner);
    } else if (winner != (size_t)op->n) {
      fail(S, "race.winner", "%s: nobody won, winner = %zu", w->name, winner);
    } else if (caller) {
      if (rc != -ECANCELED)
        fail(S, "race.rc", "%s: caller cancelled, nobody won, race returned "
             "%s", w->name, cn(rc));
    } else if (rc != (first_fail ? first_fail->result : -ECANCELED)) {
      fail(S, "race.rc", "%s: nobody won, first failure %s, race returned %s",
           w->name, first_fail ? cn(first_fail->result) : "none", cn(rc));
    }
  } else if (op->kind == 1) {
    if (rc != (caller ? -ECANCELED : 0))
      fail(S, "gather.rc", "%s: gather(ALL) returned %s, caller %s", w->name,
           cn(rc), caller ? "cancelled" : "not cancelled");
  } else if (first_fail) {
    bool lenient = caller || (first_out && first_out->order < first_fail->order);
    if (rc != first_fail->result && !(lenient && rc == -ECANCELED))
      fail(S, "gather.rc", "%s: first failure %s:%s, gather returned %s",
           w->name, first_fail->name, cn(first_fail->result), cn(rc));
  } else if (caller) {
    if (rc != -ECANCELED)
      fail(S, "gather.rc", "%s: caller cancelled, gather returned %s",
           w->name, cn(rc));
  } else if (first_out) {
    if (rc != -ECANCELED)
      fail(S, "gather.outside_cancel", "%s: %s was cancelled from outside, "
           "gather returned %s", w->name, first_out->name, cn(rc));
  } else if (rc != 0) {
    fail(S, "gather.rc", "%s: no failure, no cancellation, gather returned %s",
         w->name, cn(rc));
  }
}

static bool cb_wait_met(combp *P, cbop *op) {
  int done = 0, failed = 0;
  for (int i = 0; i < op->n; i++) {
    wk *l = cb_l(P, op, i);
    done += l->returned;
    failed += l->returned && l->result < 0 && l->result != -ECANCELED;
  }
  if (op->mode == WEFT_FIRST_COMPLETED) return done > 0;
  if (op->mode == WEFT_FIRST_EXCEPTION) return failed > 0 || done == op->n;
  return done == op->n;
}

static void cb_wait(combp *P, wk *w, cbop *op) {
  soak *S = &P->S;
  weft_task *tasks[4];
  bool done[4] = {0};
  for (int i = 0; i < op->n; i++) {
    wk *l = cb_l(P, op, i);
    tasks[i] = wk_spawn(l, cb_leaf, rn(S, 4) == 0);
    if (!tasks[i]) return;
  }
  op->mode = 1 + rn(S, 3);
  bool past = rn(S, 5) == 0;
  sc_ctx sc;
  sc_open(w, &sc, pick_kind(S));
  sc.complex = true; /* weft_wait parks in a scope of its own */
  int rc = note(w, OP(w, OP_WAIT, weft_wait_until(tasks, (size_t)op->n, op->mode,
                                            done,
                                            past ? SOAK_PAST : WEFT_FOREVER)));
  bool caller = note(w, weft_check_cancel()) == -ECANCELED;
  sc_close(w, &sc);
  if (rc >= 0) {
    int count = 0;
    for (int i = 0; i < op->n; i++) {
      count += done[i];
      if (done[i] != cb_l(P, op, i)->returned)
        fail(S, "wait.done", "%s: done[%d] = %d, %s %s", w->name, i, done[i],
             cb_l(P, op, i)->name,
             cb_l(P, op, i)->returned ? "returned" : "runs");
    }
    if (rc != count)
      fail(S, "wait.count", "%s: wait returned %d, %d done", w->name, rc,
           count);
    if (!past && !caller && !cb_wait_met(P, op))
      fail(S, "wait.mode", "%s: wait (mode %d, no deadline) returned %d with "
           "its condition unmet", w->name, op->mode, rc);
  } else if (rc != -ECANCELED || !caller) {
    fail(S, "wait.rc", "%s: wait returned %s (caller %scancelled)", w->name,
         cn(rc), caller ? "" : "not ");
  }
  for (int i = 0; i < op->n; i++) join_worker(S, cb_l(P, op, i), rn(S, 5));
}

static void cb_asc(combp *P, wk *w, cbop *op) {
  soak *S = &P->S;
  weft_task *tasks[4];
  for (int i = 0; i < op->n; i++) {
    wk *l = cb_l(P, op, i);
    tasks[i] = wk_spawn(l, cb_leaf, rn(S, 4) == 0);
    if (!tasks[i]) return;
  }
  bool past = rn(S, 5) == 0;
  weft_as_completed it;
  int rc = weft_as_completed_init_until(&it, tasks, (size_t)op->n,
                                  past ? SOAK_PAST : WEFT_FOREVER);
  if (rc) fail(S, "asc.init", "%s: init %s", w->name, cn(rc));
  int got = 0;
  while (rc == 0) {
    weft_task *t = NULL;
    sc_ctx sc;
    sc_open(w, &sc, pick_kind(S));
    sc.complex = true; /* next() parks in a scope of its own */
    rc = note(w, OP(w, OP_ASC, weft_as_completed_next(&it, &t)));
    sc_close(w, &sc);
    if (rc == 0) {
      int i = 0;
      while (i < op->n && tasks[i] != t) i++;
      if (i == op->n) {
        fail(S, "asc.task", "%s: next returned a task it does not watch",
             w->name);
        break;
      }
      wk *l = cb_l(P, op, i);
      if (op->returned[i])
        fail(S, "asc.once", "%s: next returned %s twice", w->name, l->name);
      if (!l->returned || !weft_task_done(t))
        fail(S, "asc.done", "%s: next returned %s, not done", w->name, l->name);
      op->returned[i] = true;
      got++;
      TRACE(S, "%s: as_completed gives %s", w->name, l->name);
      join_worker(S, l, rn(S, 3) ? 0 : 1);
    } else if (rc == WEFT_EEND) {
      if (got != op->n)
        fail(S, "asc.end", "%s: WEFT_EEND after %d of %d", w->name, got, op->n);
    } else if (rc == -ETIMEDOUT) {
      for (int i = 0; i < op->n; i++)
        if (cb_l(P, op, i)->returned && !op->returned[i])
          fail(S, "asc.timeout", "%s: -ETIMEDOUT with %s finished, not "
               "returned", w->name, cb_l(P, op, i)->name);
      if (!past) fail(S, "asc.timeout", "%s: -ETIMEDOUT, no deadline", w->name);
    } else if (rc != -ECANCELED) {
      fail(S, "asc.rc", "%s: next returned %s", w->name, cn(rc));
    }
  }
  weft_as_completed_close(&it);
  for (int i = 0; i < op->n; i++)
    if (!op->returned[i]) join_worker(S, cb_l(P, op, i), rn(S, 5));
}

static int cb_caller(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  combp *P = (combp *)S;
  wk_enter(w);
  cbop *op = &P->ops[w->id];
  int rc = 0;
  for (int k = 1 + rn(S, 2); k > 0; k--) {
    memset(op, 0, sizeof *op);
    op->kind = rn(S, 5);
    if (!cb_leaves(P, op, 1 + rn(S, 4))) break;
    w->p = op;
    TRACE(S, "%s: combinator %d over %d leaves", w->name, op->kind, op->n);
    if (op->kind <= 2)
      cb_gather_race(P, w, op);
    else if (op->kind == 3)
      cb_wait(P, w, op);
    else
      cb_asc(P, w, op);
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
  }
  return wk_exit(w, rc);
}

static bool cb_avail(soak *S, wk *w) {
  combp *P = (combp *)S;
  cbop *op = w->p;
  if (w->op == OP_WAIT) return cb_wait_met(P, op);
  if (w->op == OP_ASC)
    for (int i = 0; i < op->n; i++)
      if (cb_l(P, op, i)->returned && !op->returned[i]) return true;
  return false;
}

static void cb_chaos(soak *S) {
  combp *P = (combp *)S;
  if (pm(S, 150)) weft_sem_release(P->gate);
}

static void cb_stall(soak *S) { weft_sem_release(((combp *)S)->gate); }

static void cb_setup(soak *S) {
  combp *P = (combp *)S;
  P->gate = weft_sem_new(1);
  S->avail = cb_avail;
  S->chaos = cb_chaos;
  S->stall = cb_stall;
  S->p_cancel = 60;
}

static int cb_main(void *arg) {
  combp *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  for (int i = 1 + rn(S, 3); i > 0; i--) {
    wk *w = wk_new(S, CB_CALLER, "k");
    wk_spawn(w, cb_caller, rn(S, 4) == 0);
    if (rn(S, 2)) weft_yield();
  }
  S->spawned_all = true;
  /* Callers only: leaves are joined by their callers. */
  int n = S->nw;
  for (int i = 0; i < n; i++)
    if (S->w[i].role == CB_CALLER) join_worker(S, &S->w[i], rn(S, 5));
  soak_end(S);
  return 0;
}

static void cb_teardown(soak *S) { weft_sem_free(((combp *)S)->gate); }

Test(soak, combine, .timeout = 900) {
  static const soak_prog p = {"combine", sizeof(combp), 2000, 3000, cb_setup,
                              cb_main, cb_teardown};
  soak_drive(&p);
}

/* ================================================================== */
/* soak/thread: the executor and to_thread                             */
/* ================================================================== */
/*
 * Callers run blocking jobs (a few microseconds of spinning or sleeping)
 * with weft_executor_run, on an executor of the schedule's (1-2 threads)
 * or the default pool, with a cleanup, or with weft_to_thread, in random
 * scopes, while the director cancels them and, now and then, has a task
 * shut the executor down (dropping queued jobs, or waiting for them).
 * The jobs run on real threads, so a schedule replays the same decisions
 * but not necessarily the same interleaving.
 * Invariants: a job's function runs at most once; executor_run returns 0
 * with the function's value and no cleanup, or an error with exactly one
 * cleanup (by the end), whose status is 0 exactly when the function ran
 * (and then carries its value), and a job whose cleanup says it did not
 * run never runs; to_thread returns 0 with the value or -ECANCELED; only
 * the documented codes come back; shutdown returns 0 (or -ECANCELED
 * while waiting); after a shutdown, runs on the executor fail with
 * -ESHUTDOWN.
 */

#define TMAXJOBS (MAXW * 3)

typedef struct tjob {
  atomic_int ran, done, cleanups;
  atomic_int status;
  void *_Atomic cres;
  int rc;
  int spin_us;
  bool to_thread, on_ex;
  void *result;
} tjob;

typedef struct threadp {
  soak S;
  weft_executor *ex;
  bool shut;
  int njobs;
  tjob job[TMAXJOBS];
} threadp;

static void *t_fn(void *arg) {
  tjob *j = arg;
  atomic_fetch_add(&j->ran, 1);
  if (j->spin_us > 50) {
    usleep((useconds_t)(j->spin_us - 50));
  } else {
    int64_t end = weft_now() + WEFT_US(j->spin_us);
    while (weft_now() < end) {
    }
  }
  atomic_store(&j->done, 1);
  return (void *)((uintptr_t)j | 1);
}

static void t_cleanup(void *arg, void *result, int status) {
  tjob *j = arg;
  atomic_store(&j->status, status);
  atomic_store(&j->cres, result);
  atomic_fetch_add(&j->cleanups, 1);
}

static int t_caller(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  threadp *P = (threadp *)S;
  wk_enter(w);
  int rc = 0;
  for (int k = 1 + rn(S, 3); k > 0 && P->njobs < TMAXJOBS; k--) {
    tjob *j = &P->job[P->njobs++];
    j->spin_us = rn(S, 150);
    j->to_thread = rn(S, 4) == 0;
    j->on_ex = !j->to_thread && rn(S, 4) != 0;
    bool shut = P->shut;
    sc_ctx sc;
    sc_open(w, &sc, pick_kind(S));
    sc.complex = true; /* a job's completion is not a checkpoint's return */
    S->inflight++;
    if (j->to_thread)
      j->rc = note(w, OP(w, OP_THREAD, weft_to_thread(t_fn, j, &j->result)));
    else
      j->rc = note(w, OP(w, OP_THREAD,
                         weft_executor_run(j->on_ex ? P->ex : NULL, t_fn, j,
                                           t_cleanup, &j->result)));
    S->inflight--;
    sc_close(w, &sc);
    void *want = (void *)((uintptr_t)j | 1);
    if (j->rc == 0) {
      if (j->result != want || atomic_load(&j->ran) != 1)
        fail(S, "exec.ok", "%s: job %d returned 0, result %p (want %p), ran "
             "%d times", w->name, (int)(j - P->job), j->result, want,
             atomic_load(&j->ran));
      if (j->on_ex && shut)
        fail(S, "exec.shutdown", "%s: a job ran on an executor shut down "
             "before", w->name);
    } else if (j->rc != -ECANCELED && j->rc != -ESHUTDOWN &&
               j->rc != -ENOMEM && j->rc != -EAGAIN) {
      fail(S, "exec.rc", "%s: job %d: %s", w->name, (int)(j - P->job),
           cn(j->rc));
    } else if (j->rc == -ESHUTDOWN && !(j->on_ex && P->shut)) {
      fail(S, "exec.rc", "%s: job %d: -ESHUTDOWN, executor not shut down",
           w->name, (int)(j - P->job));
    }
    if (j->on_ex && shut && j->rc != -ESHUTDOWN && j->rc != -ECANCELED)
      fail(S, "exec.shutdown", "%s: a run after the shutdown returned %s",
           w->name, cn(j->rc));
    TRACE(S, "%s: job %d (%s) -> %s", w->name, (int)(j - P->job),
          j->to_thread ? "to_thread" : j->on_ex ? "executor" : "default pool",
          cn(j->rc));
    if (weft_check_cancel() == -ECANCELED) {
      rc = -ECANCELED;
      break;
    }
  }
  return wk_exit(w, rc);
}

static int t_shutdowner(void *arg) {
  wk *w = arg;
  soak *S = w->S;
  threadp *P = (threadp *)S;
  wk_enter(w);
  int how = rn(S, 2) ? WEFT_EXECUTOR_DROP : WEFT_EXECUTOR_WAIT;
  P->shut = true;
  S->inflight++;
  int rc = OP(w, OP_THREAD, weft_executor_shutdown(P->ex, how));
  S->inflight--;
  TRACE(S, "%s: shutdown(%s) -> %s", w->name,
        how == WEFT_EXECUTOR_DROP ? "drop" : "wait", cn(rc));
  if (rc != 0 && rc != -ECANCELED)
    fail(S, "exec.shutdown_rc", "%s: shutdown returned %s", w->name, cn(rc));
  return wk_exit(w, 0);
}

static void t_chaos(soak *S) {
  threadp *P = (threadp *)S;
  if (!P->shut && pm(S, 25)) {
    wk *w = wk_new(S, R_OTHER, "x");
    if (w && wk_spawn(w, t_shutdowner, false)) join_worker(S, w, 4);
  }
}

static void t_setup(soak *S) {
  threadp *P = (threadp *)S;
  P->ex = weft_executor_new((size_t)(1 + rn(S, 2)));
  if (!P->ex) fail(S, "api.executor_new", "errno %d", errno);
  S->chaos = t_chaos;
  S->p_cancel = 60;
}

static int t_main(void *arg) {
  threadp *P = arg;
  soak *S = &P->S;
  soak_begin(S);
  for (int i = 1 + rn(S, 4); i > 0; i--) {
    wk *w = wk_new(S, R_OTHER, "k");
    wk_spawn(w, t_caller, rn(S, 4) == 0);
    if (rn(S, 2)) weft_yield();
  }
  S->spawned_all = true;
  join_all(S, 25);
  soak_end(S);
  /* Every job done: the executor's by its shutdown, to_thread's (and the
   * default pool's cleanups) by waiting for them. */
  weft_scope sh;
  weft_scope_open_shielded(&sh, WEFT_FOREVER);
  S->inflight++;
  int rc = weft_executor_shutdown(P->ex, WEFT_EXECUTOR_WAIT);
  if (rc) fail(S, "exec.shutdown_rc", "final shutdown: %s", cn(rc));
  int64_t limit = weft_now() + (int64_t)(WEFT_SEC(10) * CFG.scale);
  for (int i = 0; i < P->njobs; i++) {
    tjob *j = &P->job[i];
    while (weft_now() < limit &&
           ((atomic_load(&j->ran) && !atomic_load(&j->done)) ||
            (!j->to_thread && j->rc && !atomic_load(&j->cleanups))))
      weft_sleep(WEFT_US(100));
  }
  S->inflight--;
  weft_scope_close(&sh);
  for (int i = 0; i < P->njobs; i++) {
    tjob *j = &P->job[i];
    int ran = atomic_load(&j->ran), cl = atomic_load(&j->cleanups);
    int st = atomic_load(&j->status);
    if (ran > 1) fail(S, "exec.ran_once", "job %d ran %d times", i, ran);
    if (ran && !atomic_load(&j->done)) {
      fail(S, "exec.hang", "job %d still runs after 10 s", i);
      S->keep = true;
    }
    if (j->to_thread) continue;
    if (j->rc == 0) {
      if (cl) fail(S, "exec.cleanup_once", "job %d returned 0, cleanup ran "
                   "%d times", i, cl);
    } else if (cl != 1) {
      fail(S, "exec.cleanup_once", "job %d returned %s, cleanup ran %d times",
           i, cn(j->rc), cl);
    } else if ((st == 0) != (ran == 1)) {
      fail(S, "exec.cleanup_status", "job %d: cleanup status %s, function "
           "ran %d times", i, cn(st), ran);
    } else if (st == 0 && atomic_load(&j->cres) != (void *)((uintptr_t)j | 1)) {
      fail(S, "exec.cleanup_status", "job %d: cleanup got result %p", i,
           atomic_load(&j->cres));
    }
  }
  return 0;
}

static void t_teardown(soak *S) {
  threadp *P = (threadp *)S;
  if (P->ex && !S->keep) weft_executor_free(P->ex);
}

Test(soak, thread, .timeout = 900) {
  static const soak_prog p = {"thread", sizeof(threadp), 500, 200000, t_setup,
                              t_main, t_teardown};
  soak_drive(&p);
}
