/*
 * fuzz_stream.c -- libFuzzer target for weft's buffered streams
 * (src/io/stream.c), checked against a reference model.
 *
 * An input is a script. A writer task writes a data string into one end
 * of a stream pair (weft_stream_socketpair, or a pipe), in chunks of
 * sizes the input picks, yielding between some of them, then ends the
 * stream (write_eof or close). A reader task runs a sequence of reads on
 * the other end: readline, readuntil (one separator), readuntil_any
 * (two or three), readexactly, read, at_eof / read_buffered, some of them
 * inside a scope whose deadline is already due (such a read may return
 * -ECANCELED, and then must have consumed nothing). At the end it reads
 * everything left and expects the end of the stream.
 *
 * The model is the data written and a cursor. Since the whole data and
 * then the end always come, every read but read(n) has one right answer
 * (asyncio's semantics, weft's contract in include/weft/io.h):
 *   readuntil:  the shortest match ending with a separator, if its start
 *               is <= limit; WEFT_ELIMIT if it starts past limit, or if
 *               there is none and at least limit + max_seplen bytes are
 *               left; else WEFT_EINCOMPLETE. The errors consume nothing.
 *   readline:   readuntil "\n", except that with no newline left and
 *               fewer than limit + 1 bytes left it returns them all.
 *   readexactly: n bytes if n are left, else WEFT_EINCOMPLETE, nothing
 *               consumed.
 *   read(n):    between 1 and min(n, left) bytes (0 only when nothing is
 *               left), the next ones.
 * Any difference: __builtin_trap().
 *
 * Input layout (every field optional; missing bytes read as 0):
 *   [0] bits 0-5: limit - 1 (if bit 6), else the default limit;
 *       bit 7: data and separators drawn from "ab\n\r" (so that
 *       separators match often)
 *   [1..2] data length (little endian) % (MAX_DATA + 1)
 *   [3] bit 0: pipe instead of socketpair; bit 1: the writer closes
 *       instead of write_eof; bit 2: writev two chunks at a time;
 *       bits 3-7: number of chunk-size bytes that follow
 *   [4] bit 0: small kernel buffers (SO_SNDBUF/SO_RCVBUF, F_SETPIPE_SZ),
 *       so that writes fill the fd and the write buffer and drain's
 *       waits are used; bit 1: two reader tasks share the ops (each
 *       answer is checked at the cursor when it returns); bits 2-7: if
 *       not 0, high_water = that * 8
 *   chunk sizes: each (b & 63) + 1 bytes, then bits 6-7: 1: sleep 0 ms
 *       (a loop turn through the poller), 2: yield, 3: a drain inside a
 *       due deadline (may return -ECANCELED: the bytes stay buffered);
 *       otherwise a drain
 *   data bytes
 *   ops: op byte (low 3 bits: the op, bit 7: inside a due deadline) and
 *       its arguments, until the input ends or MAX_OPS; op 7 with bit 6
 *       aborts the reading end (the writer must then end with 0, -EPIPE
 *       or -ECONNRESET)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft.h"

#define MAX_DATA 16384
#define MAX_OPS 64
#define MAX_CHUNKS 31
#define DEFAULT_LIMIT ((size_t)64 * 1024)

#ifdef FUZZ_VERBOSE
#define FAIL(...)                                                    \
  do {                                                               \
    fprintf(stderr, "fuzz_stream: %s:%d: ", __FILE__, __LINE__);     \
    fprintf(stderr, __VA_ARGS__);                                    \
    fprintf(stderr, "\n");                                           \
    __builtin_trap();                                                \
  } while (0)
#else
#define FAIL(...)                                                    \
  do {                                                               \
    fprintf(stderr, "fuzz_stream: line %d: ", __LINE__);             \
    fprintf(stderr, __VA_ARGS__);                                    \
    fprintf(stderr, "\n");                                           \
    __builtin_trap();                                                \
  } while (0)
#endif
#define CHECK(c, ...)                                                \
  do {                                                               \
    if (!(c)) FAIL("check failed: " #c " -- " __VA_ARGS__);          \
  } while (0)

/* FUZZ_TRACE=1 in the environment: every call and its answer on stderr
 * (to read a crash input's story: build-fuzz/fuzz_stream CRASH-FILE). */
static int trace = -1;
#define TRACE(...)                                                   \
  do {                                                               \
    if (trace > 0) fprintf(stderr, __VA_ARGS__);                     \
  } while (0)

/* ---- the script -------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t n, i;
} cursor;

static uint8_t next(cursor *c) { return c->i < c->n ? c->p[c->i++] : 0; }
static bool more(const cursor *c) { return c->i < c->n; }

static const char alpha[4] = {'a', 'b', '\n', '\r'};

typedef struct {
  /* setup */
  size_t limit; /* as given to the stream (0: default) */
  size_t eff_limit;
  bool alpha;
  bool use_pipe, writer_close, use_writev, small_bufs, two_readers;
  size_t high_water;
  int nchunks;
  uint8_t chunk[MAX_CHUNKS];
  uint8_t data[MAX_DATA];
  size_t len;
  cursor ops;
  /* run */
  weft_stream *r, *w;
  size_t pos; /* the model's cursor: data[pos..len) is still to read */
  int writer_rc;
  bool writer_done;
  bool reader_aborted;
} script;

static uint8_t map(const script *s, uint8_t b) {
  return s->alpha ? (uint8_t)alpha[b & 3] : b;
}

static void parse(script *s, const uint8_t *in, size_t n) {
  cursor c = {in, n, 0};
  uint8_t b0 = next(&c);
  s->limit = (b0 & 0x40) ? (size_t)(b0 & 0x3f) + 1 : 0;
  s->eff_limit = s->limit ? s->limit : DEFAULT_LIMIT;
  s->alpha = b0 & 0x80;
  size_t len = next(&c);
  len |= (size_t)next(&c) << 8;
  s->len = len % (MAX_DATA + 1);
  uint8_t b3 = next(&c);
  s->use_pipe = b3 & 1;
  s->writer_close = b3 & 2;
  s->use_writev = b3 & 4;
  s->nchunks = b3 >> 3;
  uint8_t b4 = next(&c);
  s->small_bufs = b4 & 1;
  s->two_readers = b4 & 2;
#ifdef FUZZ_NO_TWO_READERS /* to fuzz on past a known bug of that mode */
  s->two_readers = false;
#endif
  s->high_water = (size_t)(b4 >> 2) * 8;
  for (int i = 0; i < s->nchunks; i++) s->chunk[i] = next(&c);
  if (s->nchunks == 0) {
    s->nchunks = 1;
    s->chunk[0] = 63; /* 64-byte chunks */
  }
  /* Data: from the input while it lasts, then a pattern. */
  for (size_t i = 0; i < s->len; i++)
    s->data[i] = map(s, more(&c) ? next(&c) : (uint8_t)(i * 37 + (i >> 3)));
  s->ops = c;
}

/* ---- the model ------------------------------------------------------- */

typedef struct {
  uint8_t bytes[3][3];
  weft_bytes sep[3];
  size_t nseps, minlen, maxlen;
} seps;

static void read_seps(script *s, cursor *c, seps *sp, size_t nseps) {
  sp->nseps = nseps;
  sp->minlen = SIZE_MAX;
  sp->maxlen = 0;
  for (size_t k = 0; k < nseps; k++) {
    size_t l = 1 + next(c) % 3;
    for (size_t j = 0; j < l; j++) sp->bytes[k][j] = map(s, next(c));
    sp->sep[k].data = sp->bytes[k];
    sp->sep[k].len = l;
    if (l < sp->minlen) sp->minlen = l;
    if (l > sp->maxlen) sp->maxlen = l;
  }
}

/* The result of readuntil_any on what is left. Sets *amb when another
 * answer is acceptable too (two separators end at the same place, one
 * starting within the limit and one past it; or, with separators of
 * different lengths, where the contract's "limit + seplen" could be read
 * with either length): *alt then holds that other answer. */
static ssize_t model_until(const script *s, const seps *sp, bool *amb,
                           ssize_t *alt) {
  const uint8_t *d = s->data + s->pos;
  size_t left = s->len - s->pos, limit = s->eff_limit;
  *amb = false;
  /* The shortest match: the smallest end. */
  size_t best_end = SIZE_MAX;
  for (size_t k = 0; k < sp->nseps; k++) {
    size_t l = sp->sep[k].len;
    for (size_t i = 0; i + l <= left && i + l < best_end; i++)
      if (memcmp(d + i, sp->sep[k].data, l) == 0) {
        best_end = i + l;
        break;
      }
  }
  if (best_end != SIZE_MAX) {
    /* Starts of the separators that end there. */
    bool in = false, out = false;
    for (size_t k = 0; k < sp->nseps; k++) {
      size_t l = sp->sep[k].len;
      if (l > best_end) continue;
      size_t st = best_end - l;
      if (memcmp(d + st, sp->sep[k].data, l) != 0) continue;
      if (st <= limit) in = true;
      else out = true;
    }
    ssize_t ok = (ssize_t)best_end;
    if (in && out) {
      *amb = true;
      *alt = WEFT_ELIMIT;
      return ok;
    }
    if (out) return WEFT_ELIMIT;
    /* Within the limit. With separators of different lengths, an
     * implementation may give up after limit + minlen bytes with no
     * separator among them: possible when the match ends later. */
    if (sp->minlen != sp->maxlen && best_end > limit + sp->minlen) {
      *amb = true;
      *alt = WEFT_ELIMIT;
    }
    return ok;
  }
  if (left >= limit + sp->maxlen) return WEFT_ELIMIT;
  if (left >= limit + sp->minlen) {
    *amb = true;
    *alt = WEFT_ELIMIT;
  }
  return WEFT_EINCOMPLETE;
}

static ssize_t model_line(const script *s) {
  const uint8_t *d = s->data + s->pos;
  size_t left = s->len - s->pos, limit = s->eff_limit;
  const uint8_t *nl = memchr(d, '\n', left);
  if (nl) {
    size_t st = (size_t)(nl - d);
    return st <= limit ? (ssize_t)st + 1 : WEFT_ELIMIT;
  }
  if (left >= limit + 1) return WEFT_ELIMIT;
  return (ssize_t)left; /* the partial last line; 0: nothing left */
}

static void expect_bytes(const script *s, const void *got, size_t n,
                         const char *what) {
  CHECK(s->pos + n <= s->len, "%s returned %zu bytes with %zu left", what, n,
        s->len - s->pos);
  if (n && memcmp(got, s->data + s->pos, n) != 0) {
    size_t i = 0;
    while (((const uint8_t *)got)[i] == s->data[s->pos + i]) i++;
    FAIL("%s: byte %zu of %zu differs (stream offset %zu): got 0x%02x, "
         "want 0x%02x",
         what, i, n, s->pos + i, ((const uint8_t *)got)[i], s->data[s->pos + i]);
  }
}

/* ---- the tasks ------------------------------------------------------- */

static int writer(void *arg) {
  script *s = arg;
  size_t off = 0;
  int ci = 0, rc = 0;
  while (off < s->len && rc == 0) {
    uint8_t c1 = s->chunk[ci++ % s->nchunks];
    size_t n1 = (size_t)(c1 & 63) + 1;
    if (n1 > s->len - off) n1 = s->len - off;
    if (s->use_writev && off + n1 < s->len) {
      uint8_t c2 = s->chunk[ci++ % s->nchunks];
      size_t n2 = (size_t)(c2 & 63) + 1;
      if (n2 > s->len - off - n1) n2 = s->len - off - n1;
      struct iovec iov[3] = {{s->data + off, n1},
                             {NULL, 0},
                             {s->data + off + n1, n2}};
      rc = weft_stream_writev(s->w, iov, 3);
      off += n1 + n2;
      c1 = c2;
    } else {
      rc = weft_stream_write(s->w, s->data + off, n1);
      off += n1;
    }
    TRACE("writer: wrote up to %zu -> %d (buffered %zu)\n", off, rc,
          weft_stream_write_buffered(s->w));
    if (rc) break;
    switch (c1 >> 6) {
    case 1:
      rc = weft_sleep(0);
      break;
    case 2:
      rc = weft_yield();
      break;
    case 3: { /* cut short or not, nothing may be lost */
      weft_scope sc;
      weft_scope_open(&sc, weft_now());
      size_t before = weft_stream_write_buffered(s->w);
      rc = weft_stream_drain(s->w);
      weft_scope_close(&sc);
      if (rc == -ECANCELED) {
        CHECK(weft_stream_write_buffered(s->w) <= before,
              "a cancelled drain grew the buffer");
        rc = 0;
      }
      break;
    }
    }
    if (rc == 0 && (c1 >> 6) != 3) rc = weft_stream_drain(s->w);
  }
  if (rc == 0 && !s->writer_close) rc = weft_stream_write_eof(s->w);
  TRACE("writer: end -> %d\n", rc);
  int crc = weft_stream_close(s->w);
  s->w = NULL;
  if (rc == 0) rc = crc;
  s->writer_rc = rc;
  s->writer_done = true;
  return 0;
}

/* Opens a scope with a deadline already due, if `due`. */
static void due_open(weft_scope *sc, bool due) {
  if (due) weft_scope_open(sc, weft_now());
}
static void due_close(weft_scope *sc, bool due) {
  if (due) weft_scope_close(sc);
}

/* A reader. With two of them on one stream, each call's answer is
 * checked against the model at the cursor as it is when the call returns
 * (the other reader may have taken bytes while this one waited): calls
 * never interleave inside the loop's one thread, so the answers, in the
 * order they are returned, must still tile the data. */
static int reader(void *arg) {
  script *s = arg;
  cursor *c = &s->ops;
  uint8_t buf[MAX_DATA + 256];
  for (int nops = 0; more(c) && nops < MAX_OPS; nops++) {
    uint8_t op = next(c);
    bool due = op & 0x80;
    weft_scope sc;
    const char *data = NULL;
    switch (op & 7) {
    case 0: { /* readline */
      due_open(&sc, due);
      ssize_t got = weft_stream_readline(s->r, &data);
      due_close(&sc, due);
      TRACE("reader %llu: op 0x%02x -> %lld (pos %zu, buffered %zu)\n",
            (unsigned long long)weft_task_id(weft_current()), op, (long long)got, s->pos,
            weft_stream_read_buffered(s->r));
      if (due && got == -ECANCELED) break;
      ssize_t want = model_line(s);
      CHECK(got == want, "readline at %zu (limit %zu, %zu left): got %zd, want %zd",
            s->pos, s->eff_limit, s->len - s->pos, got, want);
      if (got > 0) {
        CHECK(data != NULL, "readline: data NULL");
        expect_bytes(s, data, (size_t)got, "readline");
        s->pos += (size_t)got;
      }
      break;
    }
    case 1:   /* readuntil, one separator */
    case 2: { /* readuntil_any, two or three */
      seps sp;
      bool any = (op & 7) == 2;
      read_seps(s, c, &sp, any ? 2 + next(c) % 2 : 1);
      due_open(&sc, due);
      ssize_t got = any ? weft_stream_readuntil_any(s->r, sp.sep, sp.nseps, &data)
                        : weft_stream_readuntil(s->r, sp.sep[0].data, sp.sep[0].len,
                                                &data);
      due_close(&sc, due);
      TRACE("reader %llu: op 0x%02x -> %lld (pos %zu, buffered %zu)\n",
            (unsigned long long)weft_task_id(weft_current()), op, (long long)got, s->pos,
            weft_stream_read_buffered(s->r));
      if (due && got == -ECANCELED) break;
      bool amb;
      ssize_t alt = 0;
      ssize_t want = model_until(s, &sp, &amb, &alt);
      CHECK(got == want || (amb && got == alt),
            "readuntil%s (%zu seps, lens %zu..%zu) at %zu (limit %zu, %zu left): "
            "got %zd, want %zd%s",
            any ? "_any" : "", sp.nseps, sp.minlen, sp.maxlen, s->pos, s->eff_limit,
            s->len - s->pos, got, want, amb ? " (or the alternative)" : "");
      if (got > 0) {
        CHECK(data != NULL, "readuntil: data NULL");
        expect_bytes(s, data, (size_t)got, "readuntil");
        s->pos += (size_t)got;
      }
      break;
    }
    case 3: { /* readexactly */
      uint8_t a = next(c);
      size_t n = (a & 0x80) ? (size_t)(a & 0x7f) * 16 : a;
      due_open(&sc, due);
      int got = weft_stream_read_exactly(s->r, buf, n);
      due_close(&sc, due);
      TRACE("reader %llu: op 0x%02x -> %lld (pos %zu, buffered %zu)\n",
            (unsigned long long)weft_task_id(weft_current()), op, (long long)got, s->pos,
            weft_stream_read_buffered(s->r));
      if (due && got == -ECANCELED) break;
      int want = n <= s->len - s->pos ? 0 : WEFT_EINCOMPLETE;
      CHECK(got == want, "readexactly(%zu) at %zu (%zu left): got %d, want %d", n,
            s->pos, s->len - s->pos, got, want);
      if (got == 0) {
        expect_bytes(s, buf, n, "readexactly");
        s->pos += n;
      }
      break;
    }
    case 4: { /* read */
      uint8_t a = next(c);
      size_t n = (a & 0x80) ? (size_t)(a & 0x7f) * 32 : a;
      due_open(&sc, due);
      ssize_t got = weft_stream_read(s->r, buf, n);
      due_close(&sc, due);
      TRACE("reader %llu: op 0x%02x -> %lld (pos %zu, buffered %zu)\n",
            (unsigned long long)weft_task_id(weft_current()), op, (long long)got, s->pos,
            weft_stream_read_buffered(s->r));
      if (due && got == -ECANCELED) break;
      size_t left = s->len - s->pos;
      CHECK(got >= 0, "read(%zu) at %zu: %zd", n, s->pos, got);
      if (n == 0 || left == 0)
        CHECK(got == 0, "read(%zu) at %zu (%zu left): got %zd, want 0", n, s->pos, left,
              got);
      else
        CHECK(got >= 1 && (size_t)got <= (n < left ? n : left),
              "read(%zu) at %zu (%zu left): got %zd", n, s->pos, left, got);
      expect_bytes(s, buf, (size_t)got, "read");
      s->pos += (size_t)got;
      break;
    }
    case 5: { /* queries: never wait */
      size_t left = s->len - s->pos;
      size_t rb = weft_stream_read_buffered(s->r);
      CHECK(rb <= left, "read_buffered %zu with %zu left", rb, left);
      if (weft_stream_at_eof(s->r))
        CHECK(left == 0, "at_eof with %zu left", left);
      /* A read of what is buffered does not wait and gets all of it. */
      if (rb > 0 && rb <= sizeof buf && (op & 0x40)) {
        ssize_t got = weft_stream_read(s->r, buf, rb);
        CHECK(got == (ssize_t)rb, "read(%zu buffered) gave %zd", rb, got);
        expect_bytes(s, buf, rb, "read(buffered)");
        s->pos += rb;
      }
      break;
    }
    case 6: { /* readuntil of a byte that is never in the data */
      /* (outside the alphabet): ELIMIT, EINCOMPLETE or ECANCELED, and
       * nothing consumed. */
      if (!s->alpha) break;
      due_open(&sc, due);
      ssize_t got = weft_stream_readuntil(s->r, "z", 1, &data);
      due_close(&sc, due);
      TRACE("reader %llu: op 0x%02x -> %lld (pos %zu, buffered %zu)\n",
            (unsigned long long)weft_task_id(weft_current()), op, (long long)got, s->pos,
            weft_stream_read_buffered(s->r));
      if (due && got == -ECANCELED) break;
      seps sp;
      sp.bytes[0][0] = 'z';
      sp.sep[0].data = sp.bytes[0];
      sp.sep[0].len = 1;
      sp.nseps = 1;
      sp.minlen = sp.maxlen = 1;
      bool amb;
      ssize_t alt = 0, want = model_until(s, &sp, &amb, &alt);
      CHECK(got == want, "readuntil(z) at %zu (%zu left): got %zd, want %zd", s->pos,
            s->len - s->pos, got, want);
      break;
    }
    default: /* 7: let the writer run; or, with bit 6, stop reading */
      if ((op & 0x40) && !s->two_readers) {
        /* Abort: buffered bytes dropped, the writer's next writes fail
         * with -EPIPE or -ECONNRESET (never a SIGPIPE). */
        s->reader_aborted = true;
        CHECK(weft_stream_abort(s->r) == 0, "abort");
        s->r = NULL;
        return 0;
      }
      weft_yield();
      break;
    }
  }
  /* Everything left, then the end. */
  for (;;) {
    ssize_t got = weft_stream_read(s->r, buf, sizeof buf);
    size_t left = s->len - s->pos;
    TRACE("reader %llu: final read -> %zd (pos %zu)\n",
          (unsigned long long)weft_task_id(weft_current()), got, s->pos);
    CHECK(got >= 0, "final read at %zu: %zd", s->pos, got);
    if (got == 0) {
      CHECK(left == 0, "end of stream with %zu bytes not read (at %zu)", left, s->pos);
      break;
    }
    expect_bytes(s, buf, (size_t)got, "final read");
    s->pos += (size_t)got;
  }
  CHECK(weft_stream_at_eof(s->r), "at_eof false after the end");
  CHECK(weft_stream_read_buffered(s->r) == 0, "bytes buffered after the end");
  const char *data;
  CHECK(weft_stream_readline(s->r, &data) == 0, "readline after the end");
  CHECK(weft_stream_readuntil(s->r, "\n", 1, &data) == WEFT_EINCOMPLETE,
        "readuntil after the end");
  CHECK(weft_stream_read_exactly(s->r, buf, 1) == WEFT_EINCOMPLETE,
        "readexactly after the end");
  CHECK(weft_stream_read_exactly(s->r, buf, 0) == 0, "readexactly(0)");
  return 0;
}

static int fuzz_main(void *arg) {
  script *s = arg;
  weft_stream_opts o = {.limit = s->limit, .high_water = s->high_water};
  if (s->use_pipe) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return -errno;
    s->r = weft_stream_open(p[0], &o);
    s->w = weft_stream_open(p[1], &o);
  } else {
    weft_stream_pair sp = weft_stream_socketpair(&o);
    s->r = sp.a;
    s->w = sp.b;
  }
  CHECK(s->r && s->w, "could not make the streams: %d", errno);
  if (s->small_bufs) {
    int small = 1024; /* the kernel rounds it up to its minimum */
    if (s->use_pipe) {
      fcntl(weft_stream_fd(s->w), F_SETPIPE_SZ, 4096);
    } else {
      setsockopt(weft_stream_fd(s->w), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
      setsockopt(weft_stream_fd(s->r), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
  }
  weft_task *wt = weft_spawn(writer, s, NULL);
  weft_task *rt = weft_spawn(reader, s, NULL);
  weft_task *rt2 = s->two_readers ? weft_spawn(reader, s, NULL) : NULL;
  CHECK(wt && rt && (rt2 || !s->two_readers), "spawn");
  CHECK(weft_join(rt) == 0, "reader");
  if (rt2) CHECK(weft_join(rt2) == 0, "second reader");
  CHECK(weft_join(wt) == 0, "writer");
  CHECK(s->writer_done, "writer");
  if (s->reader_aborted)
    CHECK(s->writer_rc == 0 || s->writer_rc == -EPIPE || s->writer_rc == -ECONNRESET,
          "writer after the reader's abort: %d", s->writer_rc);
  else
    CHECK(s->writer_rc == 0, "writer: %d", s->writer_rc);
  if (s->r) CHECK(weft_stream_close(s->r) == 0, "close reader");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n) {
  if (trace < 0) trace = getenv("FUZZ_TRACE") && *getenv("FUZZ_TRACE") == '1';
  static script s;
  memset(&s, 0, sizeof s);
  parse(&s, in, n);
  int rc = weft_run(fuzz_main, &s);
  CHECK(rc == 0, "weft_run: %d", rc);
  return 0;
}

#ifdef FUZZ_STANDALONE
/* Without libFuzzer: runs the files named on the command line. */
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (!f) {
      perror(argv[i]);
      return 1;
    }
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    printf("%s: ok\n", argv[i]);
  }
  return 0;
}
#endif
