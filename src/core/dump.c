/*
 * The task dump (weft_dump_tasks; the weft-ps socket in ps.c): asyncio's
 * `ps` and `pstree` for a weft program.
 *
 * A loop's dump is made on the loop's own thread, since task records,
 * bodies and scopes are not shared: directly for the caller's loop, and
 * for another loop by a message through its inbox, which formats the dump
 * into memory there (between two of its tasks) and hands it back. A loop
 * whose task runs without a checkpoint cannot answer: after the timeout
 * it is listed as busy, and the request, shared by the two sides with a
 * count, is freed by whichever lets go last.
 *
 * The tree: a top-level task (the root task, or one made with weft_spawn)
 * has below it the tasks that hang under its root scope (group_start
 * children not ready yet) and then its next inner scope; each scope has
 * the tasks that hang under it (a group's children) and its inner scope;
 * and so on. Children are found from each task's parent scope: its root
 * scope's parent once it runs, else the scope it will hang under. The
 * walk keeps an explicit stack, since a chain of nested groups may be as
 * deep as the program likes and the dump may run on a task's small stack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

#define FORM_MASK 0xff

/* A node of the tree: a task or a scope. */
typedef struct node {
  weft_task *t;    /* a task, or NULL for a scope */
  weft__scope *s;  /* the scope (NULL for a task) */
} node;

/* A task and the scope it hangs under, sorted by that scope. */
typedef struct hang {
  weft__scope *under;
  weft_task *t;
} hang;

typedef struct dumper {
  weft_loop *L;
  FILE *f;
  int form;
  int64_t now;
  hang *hangs;
  size_t nhangs;
  size_t nrows; /* rows written (JSON: for the commas) */
  size_t nscopes;
} dumper;

/* The scope t hangs under: NULL for a top-level task. A group's scope is
 * the first member of struct weft_group (group.c). */
static weft__scope *hung_under(const weft_task *t) {
  if (t->stack) return weft__body(t)->root.parent;
  if (t->parent_scope) return t->parent_scope;
  if (t->group) return (weft__scope *)(void *)t->group;
  return NULL;
}

static bool listed(const weft_task *t) {
  if (t->state == WEFT__T_FREE) return false;
  /* A finished task whose handle is still held: a join is owed. */
  return t->state != WEFT__T_DONE || (t->flags & TF_HANDLE);
}

static int hang_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const hang *)a)->under;
  uintptr_t y = (uintptr_t)((const hang *)b)->under;
  if (x != y) return x < y ? -1 : 1;
  uint64_t i = ((const hang *)a)->t->id, j = ((const hang *)b)->t->id;
  return i < j ? -1 : i > j;
}

/* The tasks hanging under s: [*first, *first + return value). */
static size_t hanging(const dumper *d, const weft__scope *s, size_t *first) {
  size_t lo = 0, hi = d->nhangs;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if ((uintptr_t)d->hangs[mid].under < (uintptr_t)s)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t n = 0;
  while (lo + n < d->nhangs && d->hangs[lo + n].under == s) n++;
  *first = lo;
  return n;
}

/* ---- text helpers ----------------------------------------------------- */

static const char *state_name(const weft_task *t) {
  switch (t->state) {
    case WEFT__T_NEW: return "new";
    case WEFT__T_READY: return "ready";
    case WEFT__T_RUNNING: return "running";
    case WEFT__T_PARKED: return "waiting";
    default: return "done";
  }
}

static const char *events_name(unsigned ev) {
  bool r = ev & WEFT_READABLE, w = ev & WEFT_WRITABLE;
  return r && w ? "rw" : r ? "r" : w ? "w" : "";
}

/* A JSON string (quotes included): control characters and bytes that are
 * not ASCII are escaped as \u00XX, so that the output is valid whatever
 * the bytes of a name (a byte over 0x7f stands for the code point of the
 * same number: lossless, if not the UTF-8 reading). */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* A name for people: control characters become '?', so that a name
 * cannot break a line of the tree or the table. */
static void text_str(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

static void secs(FILE *f, int64_t ns) {
  fprintf(f, "%.3f s", (double)ns / 1e9);
}

/* ---- what a task waits on ---------------------------------------------- */

typedef struct wait_info {
  const char *on;      /* NULL: not waiting */
  const void *obj;
  char name[64];
  char detail[160];
  int fd;
  unsigned events;
  bool has_until;
  int64_t until;       /* relative to now */
  int64_t since;       /* how long */
} wait_info;

static void wait_of(const dumper *d, const weft_task *t, wait_info *w) {
  memset(w, 0, sizeof *w);
  w->fd = -1;
  if (t->state != WEFT__T_PARKED || !t->stack) return;
  const weft__task_body *b = weft__body(t);
  const weft__wait_kind *k = b->wait_kind;
  w->on = k ? k->what : "?";
  w->obj = b->wait_obj;
  weft__name_get(w->obj, w->name, sizeof w->name);
  if (k && k->describe && w->obj) {
    int n = k->describe(t, w->obj, w->detail, sizeof w->detail);
    if (n < 0) w->detail[0] = '\0';
  }
  if (b->wait_fd >= 0) {
    w->fd = b->wait_fd;
    w->events = b->wait_events;
  }
  if (weft__timer_armed(&b->tm)) {
    w->has_until = true;
    w->until = b->tm.when - d->now;
  }
  w->since = d->now - b->wait_since;
  if (w->since < 0) w->since = 0;
}

/* The wait as one phrase: "queue get 'jobs' (0x...): 3 of 10 items, fd 7 r,
 * until +1.250 s". */
static void wait_text(FILE *f, const wait_info *w) {
  fputs(w->on, f);
  if (w->name[0]) {
    fputs(" '", f);
    text_str(f, w->name);
    fputc('\'', f);
  }
  if (w->obj && w->on != weft__wk_join.what && w->on != weft__wk_started.what)
    fprintf(f, " (%p)", w->obj);
  bool colon = false;
#define SEP() (fputs(colon ? ", " : ": ", f), colon = true)
  if (w->detail[0]) {
    SEP();
    text_str(f, w->detail);
  }
  if (w->fd >= 0) {
    SEP();
    fprintf(f, "fd %d %s", w->fd, events_name(w->events));
  }
  if (w->has_until) {
    SEP();
    fputs("until +", f);
    secs(f, w->until);
  }
#undef SEP
}

/* ---- one task ---------------------------------------------------------- */

typedef struct task_info {
  size_t stack_used, stack_size;
  uint64_t runs;
  int64_t run_ns; /* -1: not measured */
} task_info;

static void info_of(const dumper *d, const weft_task *t, task_info *ti) {
  memset(ti, 0, sizeof *ti);
  ti->run_ns = -1;
  if (!t->stack) return;
  const weft__task_body *b = weft__body(t);
  ti->stack_used = weft__stack_resident(&d->L->stacks, t->stack);
  ti->stack_size = t->stack->size;
  ti->runs = b->nsteps;
  if (d->L->stats) {
    ti->run_ns = b->run_ns;
    /* The running task's current step counts too. */
    if (t->state == WEFT__T_RUNNING && b->stats_start)
      ti->run_ns += weft__fast_now(d->L) - b->stats_start;
  }
}

/* The task whose code encloses the scope t hangs under: its parent. */
static const weft_task *parent_task(const weft_task *t) {
  weft__scope *s = hung_under(t);
  return s ? s->task : NULL;
}

static void task_text(dumper *d, const weft_task *t) {
  FILE *f = d->f;
  fprintf(f, "task %" PRIu64 " ", t->id);
  text_str(f, weft_task_name(t));
  if (t->flags & TF_ROOT) fputs(" (main)", f);
  fputs("  ", f);
  if (t->state == WEFT__T_DONE) {
    /* A result >= 0 is a value, not an error code: no error text. */
    fprintf(f, "done, result %d", t->result);
    if (t->result < 0) fprintf(f, " (%s)", weft_strerror(t->result));
    fputs(", not joined", f);
  } else {
    wait_info w;
    wait_of(d, t, &w);
    if (w.on) {
      fputs("waiting ", f);
      secs(f, w.since);
      fputs(" on ", f);
      wait_text(f, &w);
    } else {
      fputs(state_name(t), f);
      if (t == d->L->current) fputs(" (the dumping task)", f);
    }
  }
  task_info ti;
  info_of(d, t, &ti);
  if (t->stack) {
    fprintf(f, "  stack %zu/%zu KiB  %" PRIu64 " runs", ti.stack_used / 1024,
            ti.stack_size / 1024, ti.runs);
    if (ti.run_ns >= 0) fprintf(f, "  %.3f ms", (double)ti.run_ns / 1e6);
  }
  if (t->joiner) fprintf(f, "  joined by task %" PRIu64, t->joiner->id);
  if (t->state == WEFT__T_NEW && (t->flags & TF_CANCEL)) fputs("  cancelled", f);
  fputc('\n', f);
}

static void scope_text(dumper *d, const weft__scope *s) {
  FILE *f = d->f;
  if (s->flags & SC_GROUP) {
    size_t first, n = hanging(d, s, &first);
    fprintf(f, "group %p (%zu %s)", (const void *)s, n,
            n == 1 ? "child" : "children");
  } else {
    fprintf(f, "scope %p", (const void *)s);
    if (s->timer.when != WEFT_FOREVER) {
      fputs(" deadline ", f);
      int64_t rel = s->timer.when - d->now;
      fputc(rel < 0 ? '-' : '+', f);
      secs(f, rel < 0 ? -rel : rel);
    }
  }
  if (s->flags & SC_SHIELD) fputs(" shielded", f);
  if (s->flags & SC_FIRED)
    fputs(" expired", f);
  if (s->flags & SC_CANCELLED)
    fputs(" cancelled", f);
  else if (s->flags & SC_EFFECTIVE)
    fputs(" cancelled (by an outer scope)", f);
  fputc('\n', f);
}

/* ---- JSON rows --------------------------------------------------------- */

static void json_opt_i64(FILE *f, const char *key, bool has, int64_t v) {
  fprintf(f, ",\"%s\":", key);
  if (has)
    fprintf(f, "%" PRId64, v);
  else
    fputs("null", f);
}

static void task_json(dumper *d, const weft_task *t) {
  FILE *f = d->f;
  fprintf(f, "%s\n{\"id\":%" PRIu64 ",\"name\":", d->nrows++ ? "," : "", t->id);
  json_str(f, weft_task_name(t));
  fprintf(f, ",\"state\":\"%s\"", state_name(t));
  weft__scope *under = hung_under(t);
  const weft_task *pt = parent_task(t);
  if (under)
    fprintf(f, ",\"parent\":{\"scope\":\"%p\",\"task\":%" PRIu64 "}",
            (void *)under, pt ? pt->id : 0);
  else
    fputs(",\"parent\":null", f);
  fprintf(f, ",\"main\":%s,\"group_child\":%s,\"handle\":%s",
          t->flags & TF_ROOT ? "true" : "false",
          t->flags & TF_GROUP ? "true" : "false",
          (t->flags & TF_HANDLE) && !(t->flags & TF_ROOT) ? "true" : "false");
  json_opt_i64(f, "joined_by", t->joiner, t->joiner ? (int64_t)t->joiner->id : 0);
  wait_info w;
  wait_of(d, t, &w);
  if (w.on) {
    fputs(",\"wait\":{\"on\":", f);
    json_str(f, w.on);
    fprintf(f, ",\"object\":");
    if (w.obj)
      fprintf(f, "\"%p\"", w.obj);
    else
      fputs("null", f);
    fputs(",\"name\":", f);
    if (w.name[0])
      json_str(f, w.name);
    else
      fputs("null", f);
    fputs(",\"detail\":", f);
    if (w.detail[0])
      json_str(f, w.detail);
    else
      fputs("null", f);
    json_opt_i64(f, "fd", w.fd >= 0, w.fd);
    fputs(",\"events\":", f);
    if (w.fd >= 0)
      fprintf(f, "\"%s\"", events_name(w.events));
    else
      fputs("null", f);
    json_opt_i64(f, "until_ns", w.has_until, w.until);
    fprintf(f, ",\"for_ns\":%" PRId64 "}", w.since);
  } else {
    fputs(",\"wait\":null", f);
  }
  task_info ti;
  info_of(d, t, &ti);
  json_opt_i64(f, "stack_used", t->stack, (int64_t)ti.stack_used);
  json_opt_i64(f, "stack_size", t->stack, (int64_t)ti.stack_size);
  fprintf(f, ",\"runs\":%" PRIu64, ti.runs);
  json_opt_i64(f, "run_ns", ti.run_ns >= 0, ti.run_ns);
  json_opt_i64(f, "result", t->state == WEFT__T_DONE, t->result);
  fprintf(f, ",\"cancelled\":%s}",
          (t->stack ? weft__body(t)->root.flags & SC_EFFECTIVE
                    : t->flags & TF_CANCEL)
              ? "true"
              : "false");
}

static void scope_json(dumper *d, const weft__scope *s) {
  FILE *f = d->f;
  fprintf(f, "%s\n{\"id\":\"%p\",\"kind\":\"%s\",\"task\":%" PRIu64,
          d->nscopes++ ? "," : "", (const void *)s,
          s->flags & SC_GROUP ? "group" : "scope", s->task->id);
  const weft__scope *p = s->parent;
  if (p && !(p->flags & SC_ROOT))
    fprintf(f, ",\"parent\":\"%p\"", (const void *)p);
  else
    fputs(",\"parent\":null", f);
  json_opt_i64(f, "deadline_ns", s->timer.when != WEFT_FOREVER,
               s->timer.when - d->now);
  fprintf(f, ",\"cancelled\":%s,\"effective\":%s,\"shielded\":%s,\"fired\":%s",
          s->flags & SC_CANCELLED ? "true" : "false",
          s->flags & SC_EFFECTIVE ? "true" : "false",
          s->flags & SC_SHIELD ? "true" : "false",
          s->flags & SC_FIRED ? "true" : "false");
  if (s->flags & SC_GROUP) {
    size_t first, n = hanging(d, s, &first);
    fprintf(f, ",\"children\":%zu", n);
  }
  fputc('}', f);
}

/* ---- the walk ---------------------------------------------------------- */

/* The children of a node, in order: the tasks hanging under its scope (a
 * task's: its root scope), then that scope's inner scope. */
static size_t children(const dumper *d, node x, node *out, size_t cap) {
  weft__scope *s = x.t ? (x.t->stack ? &weft__body(x.t)->root : NULL) : x.s;
  if (!s) return 0;
  size_t first, n = hanging(d, s, &first), k = 0;
  for (size_t i = 0; i < n; i++) {
    if (k < cap) out[k] = (node){d->hangs[first + i].t, NULL};
    k++;
  }
  if (s->inner) {
    if (k < cap) out[k] = (node){NULL, s->inner};
    k++;
  }
  return k;
}

typedef struct frame {
  node *kids;
  size_t n, i;
} frame;

typedef struct walker {
  frame *st;
  size_t depth, cap;
  char *prefix;
  size_t plen, pcap;
} walker;

static void walker_free(walker *w) {
  for (size_t i = 0; i < w->depth; i++) free(w->st[i].kids);
  free(w->st);
  free(w->prefix);
}

static int push(const dumper *d, walker *w, node x) {
  size_t n = children(d, x, NULL, 0);
  node *kids = NULL;
  if (n && !(kids = malloc(n * sizeof *kids))) return -ENOMEM;
  children(d, x, kids, n);
  if (w->depth == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 16;
    frame *a = realloc(w->st, cap * sizeof *a);
    if (!a) {
      free(kids);
      return -ENOMEM;
    }
    w->st = a;
    w->cap = cap;
  }
  w->st[w->depth++] = (frame){kids, n, 0};
  return 0;
}

static int prefix_add(walker *w, const char *s) {
  size_t n = strlen(s);
  if (w->plen + n + 1 > w->pcap) {
    size_t cap = (w->plen + n + 1) * 2;
    char *p = realloc(w->prefix, cap);
    if (!p) return -ENOMEM;
    w->prefix = p;
    w->pcap = cap;
  }
  memcpy(w->prefix + w->plen, s, n + 1);
  w->plen += n;
  return 0;
}

/* The tree's line of one node, below the prefix of its depth. */
static void emit(dumper *d, walker *w, node x, bool top, bool last) {
  FILE *f = d->f;
  fputs(w->prefix, f);
  fputs(top ? "" : last ? "`-- " : "|-- ", f);
  if (x.t)
    task_text(d, x.t);
  else
    scope_text(d, x.s);
}

/* The table's row of t. */
static void task_row(dumper *d, const weft_task *t) {
  FILE *f = d->f;
  const weft_task *pt = parent_task(t);
  char parent[24] = "-";
  if (pt) snprintf(parent, sizeof parent, "%" PRIu64, pt->id);
  fprintf(f, "%-4" PRIu64 " %-6" PRIu64 " %-6s ", d->L->seq, t->id, parent);
  /* The name, cut to 24 columns, control characters replaced. */
  char name[25];
  snprintf(name, sizeof name, "%s", weft_task_name(t));
  for (char *p = name; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
  fprintf(f, "%-24s %-8s ", name, state_name(t));
  wait_info w;
  wait_of(d, t, &w);
  task_info ti;
  info_of(d, t, &ti);
  if (ti.stack_size)
    fprintf(f, "%6zu ", ti.stack_used / 1024);
  else
    fprintf(f, "%6s ", "-");
  fprintf(f, "%6" PRIu64 " ", ti.runs);
  if (ti.run_ns >= 0)
    fprintf(f, "%9.3f ", (double)ti.run_ns / 1e6);
  else
    fprintf(f, "%9s ", "-");
  if (w.on) {
    fprintf(f, "%8.3f  ", (double)w.since / 1e9);
    wait_text(f, &w);
  } else if (t->state == WEFT__T_DONE) {
    fprintf(f, "%8s  result %d, not joined", "-", t->result);
  } else {
    fprintf(f, "%8s  -", "-");
  }
  fputc('\n', f);
}

static int walk(dumper *d, node root) {
  walker w = {0};
  int rc = prefix_add(&w, "");
  if (rc) return rc;
  /* The root itself. */
  if (d->form == WEFT_DUMP_TREE)
    emit(d, &w, root, true, true);
  else if (d->form == WEFT_DUMP_TABLE)
    task_row(d, root.t);
  else
    task_json(d, root.t);
  if ((rc = push(d, &w, root)) != 0) goto out;
  /* Prefix lengths per depth, to cut back when a frame is left. */
  size_t *plens = NULL, plcap = 0;
  while (w.depth) {
    frame *fr = &w.st[w.depth - 1];
    if (fr->i == fr->n) {
      free(fr->kids);
      w.depth--;
      if (w.depth && d->form == WEFT_DUMP_TREE) {
        w.plen = plens[w.depth - 1];
        w.prefix[w.plen] = '\0';
      }
      continue;
    }
    node x = fr->kids[fr->i++];
    bool last = fr->i == fr->n;
    if (d->form == WEFT_DUMP_TREE) {
      emit(d, &w, x, false, last);
      if (w.depth > plcap) {
        size_t cap = plcap ? plcap * 2 : 16;
        while (cap < w.depth) cap *= 2;
        size_t *a = realloc(plens, cap * sizeof *a);
        if (!a) {
          rc = -ENOMEM;
          break;
        }
        plens = a;
        plcap = cap;
      }
      plens[w.depth - 1] = w.plen;
      if ((rc = prefix_add(&w, last ? "    " : "|   ")) != 0) break;
    } else if (x.t) {
      if (d->form == WEFT_DUMP_TABLE)
        task_row(d, x.t);
      else
        task_json(d, x.t);
    }
    if ((rc = push(d, &w, x)) != 0) break;
  }
  free(plens);
out:
  walker_free(&w);
  return rc;
}

/* Collects and sorts who hangs where. */
static int prepare(dumper *d) {
  size_t n = 0;
  for (weft_task *t = d->L->all_head; t; t = t->all_next)
    if (listed(t) && hung_under(t)) n++;
  d->hangs = n ? malloc(n * sizeof *d->hangs) : NULL;
  if (n && !d->hangs) return -ENOMEM;
  for (weft_task *t = d->L->all_head; t; t = t->all_next)
    if (listed(t) && hung_under(t))
      d->hangs[d->nhangs++] = (hang){hung_under(t), t};
  /* qsort's array must not be NULL, even for no elements. */
  if (d->nhangs) qsort(d->hangs, d->nhangs, sizeof *d->hangs, hang_cmp);
  return 0;
}

/* The scopes of the JSON form: every open scope of every listed task. */
static void scopes_json(dumper *d) {
  for (weft_task *t = d->L->all_head; t; t = t->all_next) {
    if (!listed(t) || !t->stack || t->state == WEFT__T_DONE) continue;
    for (const weft__scope *s = weft__body(t)->root.inner; s; s = s->inner)
      scope_json(d, s);
  }
}

static size_t count_tasks(const weft_loop *L) {
  size_t n = 0;
  for (weft_task *t = L->all_head; t; t = t->all_next) n += listed(t);
  return n;
}

/* The dump of L, on L's thread. `first`: the first loop of a JSON list. */
static int dump_loop(weft_loop *L, FILE *f, int form, bool first) {
  dumper d = {.L = L, .f = f, .form = form};
  d.now = weft__clock();
  int rc = prepare(&d);
  if (rc) return rc;
  size_t ntasks = count_tasks(L);
  if (form == WEFT_DUMP_JSON) {
    fprintf(f, "%s{\"loop\":%" PRIu64 ",\"thread\":%d,\"now_ns\":%" PRId64
               ",\"measured\":%s,\"tasks\":[",
            first ? "" : ",\n", L->seq, L->tid, d.now,
            L->stats ? "true" : "false");
  } else if (form == WEFT_DUMP_TREE) {
    fprintf(f, "loop %" PRIu64 " (thread %d): %zu %s\n", L->seq, L->tid, ntasks,
            ntasks == 1 ? "task" : "tasks");
  }
  for (weft_task *t = L->all_head; t && !rc; t = t->all_next)
    if (listed(t) && !hung_under(t)) rc = walk(&d, (node){t, NULL});
  if (!rc && form == WEFT_DUMP_JSON) {
    fputs("],\"scopes\":[", f);
    scopes_json(&d);
    fputs("]}", f);
  }
  free(d.hangs);
  return rc;
}

static void table_header(FILE *f) {
  fprintf(f, "%-4s %-6s %-6s %-24s %-8s %6s %6s %9s %8s  %s\n", "LOOP", "ID",
          "PARENT", "NAME", "STATE", "STACK", "RUNS", "CPU_MS", "WAIT_S",
          "WAITING ON");
}

/* ---- other loops --------------------------------------------------------- */

typedef struct dreq {
  weft__msg msg; /* first: the inbox hands this back */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs;      /* the poster's and the loop's */
  bool done;
  int form;
  int rc;
  char *buf;
  size_t len;
} dreq;

static void dreq_unref(dreq *r) {
  pthread_mutex_lock(&r->mu);
  bool last = --r->refs == 0;
  pthread_mutex_unlock(&r->mu);
  if (!last) return;
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r->buf);
  free(r);
}

static void dreq_run(weft_loop *L, weft__msg *m) {
  dreq *r = (dreq *)m;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  int rc = f ? dump_loop(L, f, r->form, true) : -ENOMEM;
  if (f && fclose(f) != 0 && !rc) rc = -ENOMEM;
  pthread_mutex_lock(&r->mu);
  r->rc = rc;
  r->buf = buf;
  r->len = len;
  r->done = true;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  dreq_unref(r);
}

typedef struct loop_list {
  weft_loop **a;
  size_t n, cap;
  int rc;
} loop_list;

static int collect(weft_loop *L, void *arg) {
  loop_list *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    weft_loop **a = realloc(l->a, cap * sizeof *a);
    if (!a) {
      l->rc = -ENOMEM;
      return 1;
    }
    l->a = a;
    l->cap = cap;
  }
  l->a[l->n++] = weft_loop_ref(L);
  return 0;
}

static int seq_cmp(const void *a, const void *b) {
  uint64_t x = (*(weft_loop *const *)a)->seq, y = (*(weft_loop *const *)b)->seq;
  return x < y ? -1 : x > y;
}

/* One loop that is not the caller's, asked through its inbox. */
static int dump_other(weft_loop *L, FILE *f, int form, bool first,
                      int64_t timeout) {
  dreq *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  r->refs = 2;
  r->form = form;
  r->msg.run = dreq_run;
  const char *sep = form == WEFT_DUMP_JSON && !first ? ",\n" : "";
  if (weft__loop_post(L, &r->msg) != 0) {
    r->refs = 1;
    dreq_unref(r);
    if (form == WEFT_DUMP_JSON)
      fprintf(f, "%s{\"loop\":%" PRIu64 ",\"ended\":true}", sep, L->seq);
    else if (form == WEFT_DUMP_TREE)
      fprintf(f, "loop %" PRIu64 ": ended\n", L->seq);
    return 0;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t until = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + timeout;
  ts = weft__timespec(until);
  pthread_mutex_lock(&r->mu);
  while (!r->done)
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) break;
  bool done = r->done;
  pthread_mutex_unlock(&r->mu);
  int rc = 0;
  if (!done) {
    if (form == WEFT_DUMP_JSON)
      fprintf(f, "%s{\"loop\":%" PRIu64 ",\"thread\":%d,\"busy\":true}", sep,
              L->seq, L->tid);
    else if (form == WEFT_DUMP_TREE)
      fprintf(f,
              "loop %" PRIu64 " (thread %d): busy (did not answer within "
              "%" PRId64 " ms: a task runs without a checkpoint)\n",
              L->seq, L->tid, timeout / 1000000);
    else
      fprintf(f, "%-4" PRIu64 " busy: did not answer within %" PRId64 " ms\n",
              L->seq, timeout / 1000000);
  } else if ((rc = r->rc) == 0) {
    fputs(sep, f);
    fwrite(r->buf, 1, r->len, f);
  }
  dreq_unref(r);
  return rc;
}

static int finish(FILE *f, int rc) {
  if (fflush(f) != 0 || ferror(f)) return rc ? rc : -EIO;
  return rc;
}

int weft__dump_process(FILE *out, int flags, int64_t timeout) {
  int form = flags & FORM_MASK;
  loop_list l = {0};
  weft__loops_foreach(collect, &l);
  int rc = l.rc;
  if (!rc && l.n) qsort(l.a, l.n, sizeof *l.a, seq_cmp);
  weft_loop *self = weft__tls_loop;
  if (!rc) {
    if (form == WEFT_DUMP_JSON)
      fprintf(out, "{\"pid\":%d,\"loops\":[", (int)getpid());
    else if (form == WEFT_DUMP_TABLE)
      table_header(out);
  }
  for (size_t i = 0; i < l.n && !rc; i++) {
    if (l.a[i] == self)
      rc = dump_loop(self, out, form, i == 0);
    else
      rc = dump_other(l.a[i], out, form, i == 0, timeout);
  }
  if (!rc && form == WEFT_DUMP_JSON) fputs("]}\n", out);
  for (size_t i = 0; i < l.n; i++) weft_loop_unref(l.a[i]);
  free(l.a);
  return finish(out, rc);
}

int weft_dump_tasks(FILE *out, int flags) {
  int form = flags & FORM_MASK;
  if (!out || form > WEFT_DUMP_JSON || (flags & ~(FORM_MASK | WEFT_DUMP_ALL)))
    return -EINVAL;
  if (flags & WEFT_DUMP_ALL) return weft__dump_process(out, flags, WEFT_SEC(1));
  weft_loop *L = weft__tls_loop;
  if (!L) return weft__misuse(__func__, WEFT_ENOTASK);
  if (form == WEFT_DUMP_JSON)
    fprintf(out, "{\"pid\":%d,\"loops\":[", (int)getpid());
  else if (form == WEFT_DUMP_TABLE)
    table_header(out);
  int rc = dump_loop(L, out, form, true);
  if (!rc && form == WEFT_DUMP_JSON) fputs("]}\n", out);
  return finish(out, rc);
}
