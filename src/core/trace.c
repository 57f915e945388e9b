/*
 * Trace files (WEFT_TRACE=path, weft_config.trace_path): task spawns, run
 * steps, waits (with what they waited on) and exits, in the Chrome
 * trace-event JSON format (the "JSON Object Format": {"traceEvents":
 * [...]}), which Perfetto and chrome://tracing open. Each loop is a
 * "process" row (pid = the loop's number), each task a "thread" row
 * (tid = the task's id, named after the task).
 *
 * Cost on the loop's thread: an internal instrument writes one fixed-size
 * binary record per event into a buffer of the loop (a cheap clock: the
 * TSC where the loop trusts it, else CLOCK_MONOTONIC), so an event costs
 * a clock read and a few stores. A full buffer goes to the process's
 * writer thread, which turns records into JSON and writes the file; the
 * loop takes an empty buffer from its own small pool and never waits: if
 * the writer is behind and the pool is empty, events are dropped and
 * counted. The writer converts ticks to time with (clock, ticks) pairs
 * taken at the start and with each buffer, interpolating between the two
 * pairs around a tick: one mapping for the loop's whole life, so a tick
 * recorded twice (a step's end and the start of the wait that follows,
 * in the next buffer) gives the same time in both, and times never go
 * back. At the size limit the writer drops that event and every later
 * one (the file holds a beginning of the run, not a sample of it), and
 * the file always ends as valid JSON, with the counts in "otherData".
 *
 * A wait is the span from a park (the end of the step in which the task
 * parked) to the start of its next step: the park's time is kept in the
 * task body, and the record is written when the task runs again, with
 * what it waited on (still in the body; but an fd wait's fd is cleared at
 * the wake-up, so it is kept at the park: see tr_end). Object names are
 * read then, on the loop's thread (the object may be gone by the time the
 * writer runs).
 *
 * The file is made (truncated) when the first tracing loop of the process
 * starts and finished when the last one stops; the writer thread lives
 * that long. A forked child does not trace (its loops' tracing stops).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

#define RECS_PER_BUF 4096
#define BUFS_PER_LOOP 4
#define NAME_MAX_ 40
#define DEFAULT_MAX ((size_t)64 << 20)
#define TRAILER 256 /* room kept for the end of the file */
#define ANCHOR_BRACKET 20000 /* ticks (~5-10 us): a clock read this long
                                was preempted */

enum { R_LOOP, R_SPAWN, R_STEP, R_WAIT, R_EXIT };

typedef struct trec {
  uint8_t type;
  uint8_t events;  /* a wait's fd events */
  int32_t val;     /* a wait's fd (-1: none), an exit's result, a loop's tid */
  uint64_t id;     /* the task (a loop record: the loop's number) */
  uint64_t t0, t1; /* ticks */
  uint64_t aux;    /* spawn: parent's id; wait: the object's address */
  const char *what; /* a wait's kind */
  char name[NAME_MAX_]; /* spawn: the task's name; wait: the object's */
} trec;

typedef struct tbuf {
  struct tbuf *next;
  struct tloop *owner;
  size_t n;
  int64_t anchor_ns; /* a (clock, ticks) pair taken when it was handed */
  uint64_t anchor_ticks;
  trec r[RECS_PER_BUF];
} tbuf;

/* A (clock, ticks) pair: where the writer's time mapping bends. */
typedef struct anchor {
  uint64_t ticks;
  int64_t ns;
} anchor;

typedef struct tloop {
  weft_loop *L;   /* (the writer reads only seq: L may be gone) */
  uint64_t seq;
  tbuf *cur;
  tbuf *free;     /* empty buffers: under g.mu */
  atomic_int nfree; /* how many: changed under g.mu, read without it by a
                       loop that has no buffer, so that dropping an event
                       costs no lock */
  bool use_tsc;
  uint64_t dropped; /* no buffer free (read by the writer at the end) */
  uint64_t cached;  /* the time the last step ended, for the next step's
                       start when no poll came between (0: none): one
                       clock read per step, not two */
  int64_t start_ns; /* the first (clock, ticks) pair */
  uint64_t start_ticks;
  anchor *an;     /* the writer's: the start and every buffer's pair, in */
  size_t nan, can; /* order (one per buffer written: bounded by the file) */
  int nbufs;      /* buffers not yet freed (under g.mu) */
  bool stopped;   /* the loop is gone: the writer frees it with its last
                     buffer */
} tloop;

/* The process's trace file and writer. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  int users;          /* tracing loops */
  bool quit;
  pid_t pid;          /* the process that opened it (fork: not ours) */
  FILE *f;
  char *path;
  size_t max, bytes;
  uint64_t events, dropped_size;
  tbuf *head, *tail;  /* full buffers, in order */
  int64_t base_ns;    /* time 0 of the file */
  bool first;         /* no event written yet (commas) */
  bool full;          /* an event was dropped for size: so are the rest */
  uint64_t dropped_slow; /* added up from the loops that stopped */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static inline uint64_t ticks(const tloop *tl) {
#if defined(__x86_64__)
  if (weft__likely(tl->use_tsc)) return __builtin_ia32_rdtsc();
#endif
  (void)tl;
  return (uint64_t)weft__clock();
}

/* ---- the writer ---------------------------------------------------------- */

/* Adds buffer b's (clock, ticks) pair to its loop's mapping, before its
 * records are converted. A pair that does not move both forward (the TSC
 * read on another CPU, in theory) is left out. If memory runs out the
 * mapping keeps the pairs it has: later ticks are extrapolated from the
 * last two, still one mapping. The writer's thread only. */
static void anchor_add(tloop *tl, const tbuf *b) {
  if (!tl->use_tsc) return;
  if (!tl->nan) {
    tl->an = malloc(16 * sizeof *tl->an);
    if (!tl->an) return;
    tl->can = 16;
    tl->an[tl->nan++] = (anchor){tl->start_ticks, tl->start_ns};
  }
  const anchor *last = &tl->an[tl->nan - 1];
  if (b->anchor_ticks <= last->ticks || b->anchor_ns <= last->ns) return;
  if (tl->nan == tl->can) {
    anchor *a = realloc(tl->an, 2 * tl->can * sizeof *a);
    if (!a) return;
    tl->an = a;
    tl->can *= 2;
  }
  tl->an[tl->nan++] = (anchor){b->anchor_ticks, b->anchor_ns};
}

/* ns of ticks `t`: interpolated between the pairs around t (the first or
 * last two outside them). Most ticks are in the last span: looked at
 * first. */
static int64_t to_ns(const tloop *tl, uint64_t t) {
  if (!tl->use_tsc) return (int64_t)t;
  if (tl->nan < 2) { /* no rate known (or no memory): a guess of 1 GHz */
    return tl->start_ns + (int64_t)(t - tl->start_ticks);
  }
  size_t hi = tl->nan - 1;
  if (t < tl->an[hi - 1].ticks) {
    size_t lo = 0; /* the first pair past t, in [1, nan - 2] */
    hi = tl->nan - 2;
    while (lo + 1 < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (tl->an[mid].ticks > t)
        hi = mid;
      else
        lo = mid;
    }
    if (hi == 0) hi = 1;
  }
  const anchor *a = &tl->an[hi - 1], *z = &tl->an[hi];
  double rate = (double)(z->ns - a->ns) / (double)(z->ticks - a->ticks);
  return a->ns + (int64_t)((double)(int64_t)(t - a->ticks) * rate);
}

static double us(int64_t ns) { return (double)(ns - g.base_ns) / 1000.0; }

/* A JSON string's contents (no quotes): the writer's own escaping. */
static size_t json_esc(char *out, size_t cap, const char *s) {
  size_t k = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p && k + 7 < cap; p++) {
    if (*p == '"' || *p == '\\') {
      out[k++] = '\\';
      out[k++] = (char)*p;
    } else if (*p < 0x20 || *p >= 0x7f) {
      k += (size_t)snprintf(out + k, cap - k, "\\u%04x", *p);
    } else {
      out[k++] = (char)*p;
    }
  }
  out[k] = '\0';
  return k;
}

/* Writes one event (text of length n), or drops it past the limit. */
static void put(const char *text, int n) {
  if (n <= 0) return;
  if (g.full || g.bytes + (size_t)n + 2 + TRAILER > g.max) {
    g.full = true;
    g.dropped_size++;
    return;
  }
  if (!g.first) {
    fputs(",\n", g.f);
    g.bytes += 2;
  }
  g.first = false;
  fwrite(text, 1, (size_t)n, g.f);
  g.bytes += (size_t)n;
  g.events++;
}

static void write_rec(const tloop *tl, const trec *r) {
  char line[512], esc[4 * NAME_MAX_ + 8];
  uint64_t pid = tl->seq;
  int n;
  switch (r->type) {
    case R_LOOP:
      n = snprintf(line, sizeof line,
                   "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%" PRIu64
                   ",\"tid\":0,\"args\":{\"name\":\"weft loop %" PRIu64
                   " (thread %d)\"}}",
                   r->id, r->id, (int)r->val);
      put(line, n);
      break;
    case R_SPAWN:
      if (r->name[0])
        json_esc(esc, sizeof esc, r->name);
      else
        snprintf(esc, sizeof esc, "task-%" PRIu64, r->id);
      n = snprintf(line, sizeof line,
                   "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%" PRIu64
                   ",\"tid\":%" PRIu64 ",\"args\":{\"name\":\"%s\"}}",
                   pid, r->id, esc);
      put(line, n);
      n = snprintf(line, sizeof line,
                   "{\"ph\":\"i\",\"s\":\"t\",\"name\":\"spawn\",\"ts\":%.3f,"
                   "\"pid\":%" PRIu64 ",\"tid\":%" PRIu64
                   ",\"args\":{\"parent\":%" PRIu64 "}}",
                   us(to_ns(tl, r->t0)), pid, r->id, r->aux);
      put(line, n);
      break;
    case R_STEP: {
      int64_t a = to_ns(tl, r->t0), z = to_ns(tl, r->t1);
      n = snprintf(line, sizeof line,
                   "{\"ph\":\"X\",\"name\":\"run\",\"ts\":%.3f,\"dur\":%.3f,"
                   "\"pid\":%" PRIu64 ",\"tid\":%" PRIu64 "}",
                   us(a), z > a ? (double)(z - a) / 1000.0 : 0.0, pid, r->id);
      put(line, n);
      break;
    }
    case R_WAIT: {
      int64_t a = to_ns(tl, r->t0), z = to_ns(tl, r->t1);
      char args[256];
      int k = snprintf(args, sizeof args, "\"object\":");
      if (r->aux)
        k += snprintf(args + k, sizeof args - (size_t)k, "\"0x%" PRIx64 "\"",
                      r->aux);
      else
        k += snprintf(args + k, sizeof args - (size_t)k, "null");
      if (r->name[0]) {
        json_esc(esc, sizeof esc, r->name);
        k += snprintf(args + k, sizeof args - (size_t)k, ",\"name\":\"%s\"", esc);
      }
      if (r->val >= 0)
        snprintf(args + k, sizeof args - (size_t)k, ",\"fd\":%d,\"events\":\"%s%s\"",
                 (int)r->val, r->events & WEFT_READABLE ? "r" : "",
                 r->events & WEFT_WRITABLE ? "w" : "");
      json_esc(esc, sizeof esc, r->what ? r->what : "?");
      n = snprintf(line, sizeof line,
                   "{\"ph\":\"X\",\"name\":\"wait: %s\",\"ts\":%.3f,\"dur\":%.3f,"
                   "\"pid\":%" PRIu64 ",\"tid\":%" PRIu64 ",\"args\":{%s}}",
                   esc, us(a), z > a ? (double)(z - a) / 1000.0 : 0.0, pid,
                   r->id, args);
      put(line, n);
      break;
    }
    case R_EXIT:
      n = snprintf(line, sizeof line,
                   "{\"ph\":\"i\",\"s\":\"t\",\"name\":\"exit\",\"ts\":%.3f,"
                   "\"pid\":%" PRIu64 ",\"tid\":%" PRIu64
                   ",\"args\":{\"result\":%d}}",
                   us(to_ns(tl, r->t0)), pid, r->id, (int)r->val);
      put(line, n);
      break;
  }
}

static void tloop_free(tloop *tl) {
  free(tl->an);
  free(tl);
}

/* Gives b back to its loop, or frees it (and the loop's state with the
 * last one) once the loop has stopped. Under g.mu. */
static void recycle(tbuf *b) {
  tloop *tl = b->owner;
  b->n = 0;
  if (!tl->stopped) {
    b->next = tl->free;
    tl->free = b;
    atomic_fetch_add_explicit(&tl->nfree, 1, memory_order_relaxed);
    return;
  }
  free(b);
  if (--tl->nbufs == 0) tloop_free(tl);
}

static void *writer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g.mu);
  for (;;) {
    tbuf *b = g.head;
    if (!b) {
      if (g.quit) break;
      pthread_cond_wait(&g.cv, &g.mu);
      continue;
    }
    g.head = b->next;
    if (!g.head) g.tail = NULL;
    pthread_mutex_unlock(&g.mu);
    anchor_add(b->owner, b);
    for (size_t i = 0; i < b->n; i++) write_rec(b->owner, &b->r[i]);
    pthread_mutex_lock(&g.mu);
    recycle(b);
  }
  pthread_mutex_unlock(&g.mu);
  return NULL;
}

/* ---- the loop's side ------------------------------------------------------ */

/* Hands the current buffer to the writer and takes an empty one (NULL if
 * none is free: events are dropped until one is). */
static void hand_over(tloop *tl) {
  tbuf *b = tl->cur;
  pthread_mutex_lock(&g.mu);
  if (b && b->n) {
    /* Ticks on both sides of the clock read, and their middle: the pair's
     * error is half the read's time. A read that took long (preempted
     * between) is taken again, a few times at most: a worse pair only
     * bends the mapping a little, still in order. */
    uint64_t t0, t1;
    int64_t ns;
    for (int i = 0;; i++) {
      t0 = ticks(tl);
      ns = weft__clock();
      t1 = ticks(tl);
      if (t1 - t0 <= ANCHOR_BRACKET || i == 2) break;
    }
    b->anchor_ns = ns;
    b->anchor_ticks = t0 + (t1 - t0) / 2;
    b->next = NULL;
    if (g.tail)
      g.tail->next = b;
    else
      g.head = b;
    g.tail = b;
    pthread_cond_signal(&g.cv);
    b = NULL;
  }
  if (!b && (b = tl->free) != NULL) {
    tl->free = b->next;
    atomic_fetch_sub_explicit(&tl->nfree, 1, memory_order_relaxed);
  }
  tl->cur = b;
  pthread_mutex_unlock(&g.mu);
}

/* The next record to fill, or NULL (dropped). */
static inline trec *rec(tloop *tl) {
  tbuf *b = tl->cur;
  if (weft__unlikely(!b || b->n == RECS_PER_BUF)) {
    /* No buffer and none free yet: dropped without taking the lock (the
     * writer may hold it long enough for every event to wait). */
    if (!b && !atomic_load_explicit(&tl->nfree, memory_order_relaxed)) {
      tl->dropped++;
      return NULL;
    }
    hand_over(tl);
    if (!(b = tl->cur)) {
      tl->dropped++;
      return NULL;
    }
  }
  return &b->r[b->n++];
}

static void name_copy(char *dst, const char *src) {
  size_t n = strlen(src);
  if (n >= NAME_MAX_) n = NAME_MAX_ - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static void tr_spawned(weft_task *t, void *arg) {
  tloop *tl = arg;
  trec *r = rec(tl);
  if (!r) return;
  r->type = R_SPAWN;
  r->id = t->id;
  r->t0 = ticks(tl);
  weft_task *cur = tl->L->current;
  r->aux = cur ? cur->id : 0;
  /* Only a given name: weft_task_name would make "task-N" in memory. */
  if (t->x && t->x->name)
    name_copy(r->name, t->x->name);
  else
    r->name[0] = '\0';
}

static void tr_begin(weft_task *t, void *arg) {
  tloop *tl = arg;
  weft__task_body *b = weft__body(t);
  uint64_t now = tl->cached ? tl->cached : ticks(tl);
  tl->cached = 0;
  if (b->trace_park) {
    trec *r = rec(tl);
    if (r) {
      r->type = R_WAIT;
      r->id = t->id;
      r->t0 = b->trace_park;
      r->t1 = now;
      r->what = b->wait_kind ? b->wait_kind->what : NULL;
      r->aux = (uint64_t)(uintptr_t)b->wait_obj;
      r->val = b->trace_fd; /* kept at the park */
      r->events = (uint8_t)b->wait_events;
      weft__name_get(b->wait_obj, r->name, sizeof r->name);
    }
    b->trace_park = 0;
  }
  b->trace_start = now;
}

static void tr_end(weft_task *t, void *arg) {
  tloop *tl = arg;
  weft__task_body *b = weft__body(t);
  uint64_t now = ticks(tl);
  tl->cached = now;
  trec *r = rec(tl);
  if (r) {
    r->type = R_STEP;
    r->id = t->id;
    r->t0 = b->trace_start;
    r->t1 = now;
  }
  if (t->state == WEFT__T_PARKED) {
    b->trace_park = now;
    /* An fd wait's fd is cleared when the task is woken (fd.c), before
     * tr_begin reads the wait: kept here. wait_events stays as it was. */
    b->trace_fd = b->wait_fd;
  }
}

static void tr_exited(weft_task *t, void *arg) {
  tloop *tl = arg;
  trec *r = rec(tl);
  if (!r) return;
  r->type = R_EXIT;
  r->id = t->id;
  r->t0 = tl->cached ? tl->cached : ticks(tl); /* (right after its step) */
  r->val = t->result;
}

/* The loop may sleep now: the last step's end is no start for the next. */
static void tr_poll(int64_t timeout, void *arg) {
  (void)timeout;
  ((tloop *)arg)->cached = 0;
}

static const weft_instrument trace_instrument = {
    .before_poll = tr_poll,
    .task_spawned = tr_spawned,
    .step_begin = tr_begin,
    .step_end = tr_end,
    .task_exited = tr_exited,
};

/* ---- start and stop ------------------------------------------------------- */

static size_t max_bytes(const weft_config *cfg) {
  if (cfg->trace_max_bytes) return cfg->trace_max_bytes;
  const char *e = getenv("WEFT_TRACE_MAX");
  if (e && *e) {
    char *end;
    unsigned long long v = strtoull(e, &end, 10);
    if (*end == '\0' && v > 0) return (size_t)v;
  }
  return DEFAULT_MAX;
}

/* Opens the file and starts the writer: the first tracing loop. Under
 * g.mu. 0 or -errno. */
static int file_open(const char *path, size_t max) {
  FILE *f = fopen(path, "we");
  if (!f) return -errno;
  char *p = strdup(path);
  if (!p) {
    fclose(f);
    return -ENOMEM;
  }
  g.f = f;
  g.path = p;
  g.max = max < 2 * TRAILER ? 2 * TRAILER : max;
  g.bytes = 0;
  g.events = g.dropped_size = g.dropped_slow = 0;
  g.first = true;
  g.full = false;
  g.quit = false;
  g.head = g.tail = NULL;
  g.base_ns = weft__clock();
  g.pid = getpid();
  static const char head[] = "{\"traceEvents\":[\n";
  fputs(head, f);
  g.bytes = sizeof head - 1;
  /* The writer takes no signals meant for the program's threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&g.thread, NULL, writer_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) {
    fclose(f);
    free(p);
    g.f = NULL;
    g.path = NULL;
    return -rc;
  }
  pthread_setname_np(g.thread, "weft-trace");
  return 0;
}

void weft__trace_start(weft_loop *L, const weft_config *cfg) {
  const char *path = cfg->trace_path;
  if (!path) path = getenv("WEFT_TRACE");
  if (!path || !*path || L->ninstr >= WEFT__MAX_INSTR) return;
  tloop *tl = calloc(1, sizeof *tl);
  if (!tl) return;
  tl->L = L;
  tl->seq = L->seq;
  tl->use_tsc = false;
#if defined(__x86_64__)
  tl->use_tsc = L->tsc_usable;
#endif
  pthread_mutex_lock(&g.mu);
  int rc = 0;
  if (g.users && g.pid != getpid()) rc = -ECHILD; /* a fork's child */
  if (!rc && !g.users) rc = file_open(path, max_bytes(cfg));
  else if (!rc && strcmp(path, g.path) != 0)
    weft__fdprintf(2, "weft: trace: %s is being written: loop %" PRIu64
                      " traces into it, not into %s\n",
                   g.path, L->seq, path);
  for (int i = 0; !rc && i < BUFS_PER_LOOP; i++) {
    tbuf *b = malloc(sizeof *b);
    if (!b) break;
    /* Touched now, not at the first events: a page fault per 46 records
     * would cost more than the records. */
    memset(b, 0, sizeof *b);
    b->owner = tl;
    b->n = 0;
    b->next = tl->free;
    tl->free = b;
    tl->nbufs++;
  }
  atomic_store_explicit(&tl->nfree, tl->nbufs, memory_order_relaxed);
  if (!rc && !tl->nbufs) rc = -ENOMEM;
  if (!rc) g.users++;
  pthread_mutex_unlock(&g.mu);
  if (rc) {
    if (rc != -ECHILD)
      weft__fdprintf(2, "weft: trace: cannot open %s: %s\n", path,
                     weft_strerror(rc));
    for (tbuf *b = tl->free, *n; b; b = n) {
      n = b->next;
      free(b);
    }
    free(tl);
    return;
  }
  tl->start_ns = weft__clock();
  tl->start_ticks = ticks(tl);
  L->trace = tl;
  trec *r = rec(tl);
  if (r) {
    r->type = R_LOOP;
    r->id = L->seq;
    r->val = L->tid;
  }
  L->instr[L->ninstr].ins = &trace_instrument;
  L->instr[L->ninstr++].arg = tl;
}

void weft__trace_stop(weft_loop *L) {
  tloop *tl = L->trace;
  if (!tl) return;
  L->trace = NULL;
  weft_instrument_remove(&trace_instrument, tl);
  if (g.pid != getpid()) return; /* a fork's child: the writer is not here */
  hand_over(tl);
  pthread_mutex_lock(&g.mu);
  g.dropped_slow += tl->dropped;
  tl->stopped = true;
  /* Buffers not with the writer are freed now; it frees the others. */
  if (tl->cur) {
    tl->cur->next = tl->free;
    tl->free = tl->cur;
    tl->cur = NULL;
  }
  for (tbuf *b = tl->free, *n; b; b = n) {
    n = b->next;
    free(b);
    tl->nbufs--;
  }
  tl->free = NULL;
  if (tl->nbufs == 0) tloop_free(tl);
  bool last = --g.users == 0;
  if (last) {
    g.quit = true;
    pthread_cond_signal(&g.cv);
  }
  pthread_mutex_unlock(&g.mu);
  if (!last) return;
  pthread_join(g.thread, NULL);
  fprintf(g.f,
          "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"events\":%" PRIu64
          ",\"dropped_for_size\":%" PRIu64 ",\"dropped_slow_writer\":%" PRIu64
          "}}\n",
          g.events, g.dropped_size, g.dropped_slow);
  if (fclose(g.f) != 0)
    weft__fdprintf(2, "weft: trace: writing %s failed\n", g.path);
  g.f = NULL;
  free(g.path);
  g.path = NULL;
}
