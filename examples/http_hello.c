/*
 * http_hello.c -- a small HTTP/1.1 server on one thread: every GET (any
 * path) gets "Hello, World!".
 *
 *   example-http_hello          self-test: serves on a free port of
 *                               127.0.0.1, a client task sends keep-alive,
 *                               pipelined, HTTP/1.0, malformed and
 *                               oversized requests and checks the exact
 *                               responses; exits 0 if all were right
 *   example-http_hello PORT     serves on every address, port PORT, until
 *                               SIGINT or SIGTERM
 *
 *   curl -i http://127.0.0.1:PORT/      wrk -t1 -c10 -d5s http://127.0.0.1:PORT/
 *
 * HTTP/1.1 connections stay open (keep-alive) unless the request says
 * "Connection: close"; HTTP/1.0 ones close unless it says "Connection:
 * keep-alive". Pipelined requests are answered in order, and the answers
 * to the requests already in the read buffer go out in one write. A
 * request head is read with weft_stream_readuntil (zero copy) under an
 * 8 KiB limit: a longer one gets 431. A malformed request gets 400, a
 * method other than GET and HEAD 501, a body over 1 MiB 413; each closes
 * the connection (the others are not affected). A smaller body is read
 * and dropped. HEAD gets the headers only. A connection idle for 60 s
 * (or whose request head takes longer) is closed.
 *
 * asyncio                                weft
 * asyncio.start_server(cb, host, port)   srv = weft_tcp_listen(host, port, &opts)
 * server.serve_forever()                 weft_server_serve(srv, handler, arg)
 * reader.readuntil(b"\r\n\r\n")          weft_stream_readuntil(s, "\r\n\r\n", 4, &p)
 * writer.write(b); await writer.drain()  weft_stream_write(s, b, n); weft_stream_drain(s)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "weft.h"

#define HEAD_LIMIT 8192          /* request line + headers */
#define BODY_MAX (1024 * 1024)   /* larger bodies: 413 */
#define OUT_CAP 16384            /* responses batched per write */
#define IDLE_TIMEOUT WEFT_SEC(60) /* keep-alive idle, or a slow head */

/* ---------------------------------------------------------------- */
/* Responses: made once, copied per request                           */
/* ---------------------------------------------------------------- */

#define HELLO "Hello, World!"
#define R200 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"

typedef struct {
  const char *p;
  size_t n;
} resp;

#define RESP(s) {s, sizeof(s) - 1}
/* [head?][connection header: none, close, keep-alive] */
static const resp ok_resp[2][3] = {
    {RESP(R200 "\r\n" HELLO), RESP(R200 "Connection: close\r\n\r\n" HELLO),
     RESP(R200 "Connection: keep-alive\r\n\r\n" HELLO)},
    {RESP(R200 "\r\n"), RESP(R200 "Connection: close\r\n\r\n"),
     RESP(R200 "Connection: keep-alive\r\n\r\n")},
};

#define ERR(code, text)                                                      \
  "HTTP/1.1 " code " " text "\r\nContent-Type: text/plain\r\nContent-Length: " \
  "%zu\r\nConnection: close\r\n\r\n" text "\n"

enum { E400, E413, E431, E501, NERR };
static const char *const err_fmt[NERR] = {
    ERR("400", "Bad Request"),
    ERR("413", "Content Too Large"),
    ERR("431", "Request Header Fields Too Large"),
    ERR("501", "Not Implemented"),
};
static const char *const err_text[NERR] = {"Bad Request", "Content Too Large",
                                           "Request Header Fields Too Large",
                                           "Not Implemented"};
static char err_buf[NERR][192];
static resp err_resp[NERR];

static void make_responses(void) {
  for (int i = 0; i < NERR; i++) {
    int n = snprintf(err_buf[i], sizeof err_buf[i], err_fmt[i],
                     strlen(err_text[i]) + 1);
    err_resp[i] = (resp){err_buf[i], (size_t)n};
  }
}

/* ---------------------------------------------------------------- */
/* Parsing a request head                                             */
/* ---------------------------------------------------------------- */

enum { CONN_DEFAULT, CONN_CLOSE, CONN_KEEP };

typedef struct {
  bool head;       /* HEAD, not GET */
  bool http10;
  int connection;  /* CONN_* from the Connection header */
  long long clen;  /* Content-Length (0: none) */
} request;

/* RFC 9110 tchar */
static bool tchar(unsigned char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool name_is(const char *p, size_t n, const char *name) {
  return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* A Connection header's value: a list of tokens. */
static void parse_connection(const char *v, const char *end, request *r) {
  while (v < end) {
    while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
    const char *t = v;
    while (v < end && *v != ',' && *v != ' ' && *v != '\t') v++;
    if (name_is(t, (size_t)(v - t), "close"))
      r->connection = CONN_CLOSE;
    else if (name_is(t, (size_t)(v - t), "keep-alive") && r->connection != CONN_CLOSE)
      r->connection = CONN_KEEP;
  }
}

/* Parses the head p[0, n) (ending in "\r\n\r\n"). -1: done, answer r;
 * else the index of the error response. */
static int parse(const char *p, size_t n, request *r) {
  const char *end = p + n - 2; /* the last line's CRLF is the blank line */
  memset(r, 0, sizeof *r);
  /* Method */
  const char *m = p;
  while (p < end && tchar((unsigned char)*p)) p++;
  size_t mlen = (size_t)(p - m);
  if (mlen == 0 || p >= end || *p != ' ') return E400;
  bool known = false;
  if (mlen == 3 && memcmp(m, "GET", 3) == 0)
    known = true;
  else if (mlen == 4 && memcmp(m, "HEAD", 4) == 0)
    known = r->head = true;
  p++;
  /* Target: visible characters */
  const char *t = p;
  while (p < end && (unsigned char)*p > ' ' && *p != 0x7f) p++;
  if (p == t || p >= end || *p != ' ') return E400;
  p++;
  /* Version */
  if (end - p < 10 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' ||
      p[8] != '\r' || p[9] != '\n')
    return E400;
  r->http10 = p[7] == '0';
  p += 10;
  if (!known) return E501;
  /* Headers */
  bool host = false, have_clen = false;
  while (p < end) {
    const char *line = p;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol[1] != '\n') return E400; /* a bare CR */
    p = eol + 2;
    const char *c = line;
    while (c < eol && tchar((unsigned char)*c)) c++;
    if (c == line || c == eol || *c != ':') return E400; /* incl. obs-fold */
    size_t nlen = (size_t)(c - line);
    const char *v = c + 1, *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    for (const char *q = v; q < ve; q++)
      if (*q == '\n' || *q == '\0') return E400;
    switch (nlen) {
    case 4:
      if (name_is(line, nlen, "host")) {
        if (host) return E400;
        host = true;
      }
      break;
    case 10:
      if (name_is(line, nlen, "connection")) parse_connection(v, ve, r);
      break;
    case 14:
      if (name_is(line, nlen, "content-length")) {
        if (v == ve || ve - v > 18) return ve - v > 18 ? E413 : E400;
        long long x = 0;
        for (const char *q = v; q < ve; q++) {
          if (*q < '0' || *q > '9') return E400;
          x = x * 10 + (*q - '0');
        }
        if (have_clen && x != r->clen) return E400;
        have_clen = true;
        r->clen = x;
      }
      break;
    case 17:
      if (name_is(line, nlen, "transfer-encoding")) return E501;
      break;
    }
  }
  if (!r->http10 && !host) return E400; /* RFC 9112 3.2 */
  if (r->clen > BODY_MAX) return E413;
  return -1;
}

/* ---------------------------------------------------------------- */
/* One connection                                                     */
/* ---------------------------------------------------------------- */

typedef struct {
  char buf[OUT_CAP];
  size_t n;
} outbuf;

static int flush(weft_stream *s, outbuf *o) {
  if (!o->n) return 0;
  int rc = weft_stream_write(s, o->buf, o->n);
  o->n = 0;
  if (rc == 0) rc = weft_stream_drain(s);
  return rc;
}

static int add(weft_stream *s, outbuf *o, const resp *r) {
  if (o->n + r->n > sizeof o->buf) {
    int rc = flush(s, o);
    if (rc) return rc;
  }
  memcpy(o->buf + o->n, r->p, r->n);
  o->n += r->n;
  return 0;
}

/* Reads and drops a body of n bytes. */
static int discard(weft_stream *s, long long n) {
  char scratch[4096];
  while (n > 0) {
    ssize_t r = weft_stream_read(s, scratch, n < (long long)sizeof scratch ? (size_t)n
                                                                          : sizeof scratch);
    if (r <= 0) return r < 0 ? (int)r : WEFT_EINCOMPLETE;
    n -= r;
  }
  return 0;
}

/* Ends a connection after a response that says "close": sends the end
 * (FIN) after it, then reads and drops what the client still sends, for a
 * while, so that closing with unread bytes does not reset the connection
 * (which could destroy the response before the client reads it). */
static void lingering_close(weft_stream *s, outbuf *o) {
  if (flush(s, o) != 0) return;
  if (weft_stream_write_eof(s) != 0) return;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(2));
  char scratch[4096];
  size_t total = 0;
  while (total < 4 * BODY_MAX) {
    ssize_t r = weft_stream_read(s, scratch, sizeof scratch);
    if (r <= 0) break;
    total += (size_t)r;
  }
  weft_scope_close(&sc);
}

static int handler(weft_stream *s, void *arg) {
  (void)arg;
  outbuf o; /* o.buf is written before it is read */
  o.n = 0;
  unsigned streak = 0; /* requests answered without waiting */
  for (;;) {
    const char *p;
    ssize_t n;
    if (o.n && weft_stream_read_buffered(s) > 0) {
      /* A client that pipelines without end never lets a read wait:
       * now and then let the other connections run. */
      if (++streak % 256 == 0) {
        if (flush(s, &o) != 0 || weft_yield() != 0) return 0;
        continue;
      }
      /* Answers are waiting and more bytes are in: take the next request
       * if it is all there already (pipelining: one write for the batch),
       * but do not wait for it with the answers unsent. The scope's
       * deadline is due: it cuts the readuntil short only if it would
       * wait, and a cut-short readuntil loses nothing. */
      weft_scope sc;
      weft_scope_open(&sc, 0);
      n = weft_stream_readuntil(s, "\r\n\r\n", 4, &p);
      weft_scope_close(&sc);
      if (n == -ECANCELED) { /* not all there: send the answers, then wait */
        if (flush(s, &o) != 0) return 0;
        continue;
      }
    } else {
      streak = 0;
      if (o.n && flush(s, &o) != 0) return 0;
      /* An idle connection, or a head that does not come, is closed
       * after IDLE_TIMEOUT (the deadline costs a timer only if the read
       * waits). */
      weft_scope sc;
      weft_scope_open_after(&sc, IDLE_TIMEOUT);
      n = weft_stream_readuntil(s, "\r\n\r\n", 4, &p);
      weft_scope_close(&sc);
    }
    if (n < 0) {
      if (n == WEFT_ELIMIT) {
        add(s, &o, &err_resp[E431]);
        lingering_close(s, &o);
        return 0;
      }
      /* The client left (EINCOMPLETE: in the middle of a request, or
       * between two), or the server is stopping: answers owed are sent
       * as far as possible. */
      flush(s, &o);
      return 0;
    }
    /* Empty lines before a request line are allowed (RFC 9112 2.2). */
    size_t skip = 0;
    while (skip + 1 < (size_t)n && p[skip] == '\r' && p[skip + 1] == '\n') skip += 2;
    if (skip + 2 >= (size_t)n) continue; /* nothing but empty lines */
    request r;
    int e = parse(p + skip, (size_t)n - skip, &r);
    if (e >= 0) {
      add(s, &o, &err_resp[e]);
      lingering_close(s, &o);
      return 0;
    }
    if (r.clen > 0 && discard(s, r.clen) != 0) {
      flush(s, &o);
      return 0;
    }
    bool keep = r.http10 ? r.connection == CONN_KEEP : r.connection != CONN_CLOSE;
    int hdr = r.http10 ? (keep ? CONN_KEEP : CONN_CLOSE) : (keep ? CONN_DEFAULT : CONN_CLOSE);
    if (add(s, &o, &ok_resp[r.head][hdr]) != 0) return 0;
    if (!keep) {
      lingering_close(s, &o);
      return 0;
    }
  }
}

/* The head limit is the streams' readuntil limit. (The handler returns 0
 * also when a client leaves early: nothing for on_error to report.) */
static const weft_listen_opts listen_opts = {
    .stream = {.limit = HEAD_LIMIT},
};

/* ---------------------------------------------------------------- */
/* Serving until a signal                                             */
/* ---------------------------------------------------------------- */

typedef struct {
  int port;
  int sigfd;
  weft_server *srv;
} serve_state;

static int signal_waiter(void *arg) {
  serve_state *s = arg;
  for (;;) {
    struct signalfd_siginfo si;
    if (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
      fprintf(stderr, "http_hello: signal %u, stopping\n", si.ssi_signo);
      /* Stop accepting; give the connections a second, then cancel them. */
      int rc = weft_server_shutdown(s->srv, weft_now() + WEFT_SEC(1));
      return rc == -ETIMEDOUT ? 0 : rc;
    }
    int rc = weft_wait_fd(s->sigfd, WEFT_READABLE);
    if (rc < 0) return rc == -ECANCELED ? 0 : rc;
  }
}

static int serve_main(void *arg) {
  serve_state *s = arg;
  s->srv = weft_tcp_listen(NULL, s->port, &listen_opts);
  if (!s->srv) {
    fprintf(stderr, "http_hello: listen on port %d: %s\n", s->port, weft_strerror(errno));
    return -errno;
  }
  printf("http_hello: serving http://127.0.0.1:%d/ (Ctrl-C stops)\n",
         weft_server_port(s->srv));
  fflush(stdout);
  weft_task *sig = weft_spawn(signal_waiter, s, NULL);
  if (!sig) {
    weft_server_close(s->srv);
    return -errno;
  }
  int rc = weft_server_serve(s->srv, handler, NULL);
  int src = weft_join(sig);
  weft_server_close(s->srv);
  return rc ? rc : src;
}

static int serve(int port) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
  serve_state s = {.port = port};
  s.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s.sigfd < 0) {
    perror("signalfd");
    return 1;
  }
  int rc = weft_run(serve_main, &s);
  close(s.sigfd);
  if (rc) fprintf(stderr, "http_hello: %s\n", weft_strerror(rc));
  return rc ? 1 : 0;
}

/* ---------------------------------------------------------------- */
/* Self-test                                                          */
/* ---------------------------------------------------------------- */

static int failures;

static void check(bool ok, const char *what) {
  printf("  %s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) failures++;
}

static weft_stream *dial(int port) {
  weft_stream *c = weft_tcp_connect("127.0.0.1", port, NULL);
  if (!c) fprintf(stderr, "  connect: %s\n", weft_strerror(errno));
  return c;
}

/* Reads exactly strlen(want) bytes and compares (5 s at most). */
static bool expect(weft_stream *c, const char *want) {
  size_t n = strlen(want);
  char *got = malloc(n + 1);
  if (!got) return false;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(5));
  int rc = weft_stream_read_exactly(c, got, n);
  weft_scope_close(&sc);
  bool ok = rc == 0 && memcmp(got, want, n) == 0;
  if (!ok) {
    got[rc == 0 ? n : 0] = '\0';
    fprintf(stderr, "  read: %s\n  got:  [%s]\n  want: [%s]\n",
            rc ? weft_strerror(rc) : "0", got, want);
  }
  free(got);
  return ok;
}

/* The server ends the connection: read gives 0 (5 s at most). */
static bool expect_end(weft_stream *c) {
  char b[64];
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(5));
  ssize_t n = weft_stream_read(c, b, sizeof b);
  weft_scope_close(&sc);
  if (n != 0) fprintf(stderr, "  expected the end, got %zd\n", n);
  return n == 0;
}

static bool send_str(weft_stream *c, const char *m) {
  return weft_stream_write(c, m, strlen(m)) == 0 && weft_stream_drain(c) == 0;
}

#define GET11 "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
#define OK_KA R200 "\r\n" HELLO
#define OK_CLOSE R200 "Connection: close\r\n\r\n" HELLO

static char want_err[NERR][192];

static void selftest_client(int port) {
  for (int i = 0; i < NERR; i++) memcpy(want_err[i], err_buf[i], err_resp[i].n + 1);
  weft_stream *c, *a;

  printf("keep-alive: two requests on one connection\n");
  if ((c = dial(port))) {
    check(send_str(c, "GET /index.html HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n") &&
              expect(c, OK_KA),
          "first response");
    check(send_str(c, "GET /other?x=1 HTTP/1.1\r\nhost: localhost\r\n\r\n") && expect(c, OK_KA),
          "second response on the same connection");
    weft_stream_close(c);
  }

  printf("pipelining: four requests in one write\n");
  if ((c = dial(port))) {
    check(send_str(c, GET11 GET11 "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" GET11) &&
              expect(c, OK_KA OK_KA R200 "\r\n" OK_KA),
          "four responses in order (the HEAD one without a body)");
    /* Pipelined, the last one says close. */
    check(send_str(c, GET11 "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") &&
              expect(c, OK_KA OK_CLOSE) && expect_end(c),
          "then a Connection: close request, answered, then the end");
    weft_stream_close(c);
  }

  printf("pipelining: 1000 requests in one write\n");
  if ((c = dial(port))) {
    size_t one = strlen(GET11), resp1 = strlen(OK_KA);
    char *many = malloc(1000 * one + 1), *want = malloc(1000 * resp1 + 1);
    if (many && want) {
      for (int i = 0; i < 1000; i++) {
        memcpy(many + i * one, GET11, one);
        memcpy(want + i * resp1, OK_KA, resp1);
      }
      many[1000 * one] = want[1000 * resp1] = '\0';
      check(send_str(c, many) && expect(c, want), "1000 responses in order");
    }
    free(many);
    free(want);
    weft_stream_close(c);
  }

  printf("a request that comes in pieces\n");
  if ((c = dial(port))) {
    const char *m = "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";
    bool ok = true;
    for (size_t i = 0, len = strlen(m); i < len && ok; i += 4) {
      size_t k = len - i < 4 ? len - i : 4;
      ok = weft_stream_write(c, m + i, k) == 0 && weft_stream_drain(c) == 0 &&
           weft_sleep(WEFT_MS(2)) == 0;
    }
    check(ok && expect(c, OK_KA), "answered once whole");
    weft_stream_close(c);
  }

  printf("HTTP/1.0\n");
  if ((c = dial(port))) {
    check(send_str(c, "GET / HTTP/1.0\r\n\r\n") && expect(c, OK_CLOSE) && expect_end(c),
          "closes after the response");
    weft_stream_close(c);
  }
  if ((c = dial(port))) {
    check(send_str(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") &&
              expect(c, R200 "Connection: keep-alive\r\n\r\n" HELLO) &&
              send_str(c, "GET / HTTP/1.0\r\n\r\n") && expect(c, OK_CLOSE) && expect_end(c),
          "Connection: keep-alive keeps it open");
    weft_stream_close(c);
  }

  printf("bodies\n");
  if ((c = dial(port))) {
    check(send_str(c, "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" GET11) &&
              expect(c, OK_KA OK_KA),
          "a small body is read and dropped; the next request is answered");
    weft_stream_close(c);
  }
  if ((c = dial(port))) {
    check(send_str(c, "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n") &&
              expect(c, want_err[E413]) && expect_end(c),
          "a huge one: 413, then the end");
    weft_stream_close(c);
  }

  printf("bad requests (another connection stays up)\n");
  a = dial(port);
  if (a) check(send_str(a, GET11) && expect(a, OK_KA), "bystander connection works");
  static const struct {
    const char *req;
    int err;
    const char *what;
  } bad[] = {
      {"GARBAGE\r\n\r\n", E400, "no method/target/version: 400"},
      {"GET / HTTP/2.0\r\nHost: t\r\n\r\n", E400, "unknown version: 400"},
      {"GET /\r\nHost: t\r\n\r\n", E400, "HTTP/0.9 style line: 400"},
      {"GET / HTTP/1.1\r\n\r\n", E400, "HTTP/1.1 without Host: 400"},
      {"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n", E400, "header without colon: 400"},
      {"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n", E400, "bad Content-Length: 400"},
      {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", E501, "POST: 501"},
      {"DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n", E501, "DELETE: 501"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (!(c = dial(port))) continue;
    check(send_str(c, bad[i].req) && expect(c, want_err[bad[i].err]) && expect_end(c),
          bad[i].what);
    weft_stream_close(c);
  }
  if ((c = dial(port))) {
    /* 10 KB of headers: over the 8 KiB limit. */
    size_t big = 10000;
    char *m = malloc(big + 64);
    if (m) {
      int k = snprintf(m, 64, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
      memset(m + k, 'x', big);
      memcpy(m + k + big, "\r\n\r\n", 5);
      check(send_str(c, m) && expect(c, want_err[E431]) && expect_end(c),
            "oversized head: 431, then the end");
      free(m);
    }
    weft_stream_close(c);
  }
  if (a) {
    check(send_str(a, GET11) && expect(a, OK_KA), "bystander connection still works");
    weft_stream_close(a);
  }
}

static int client_main(void *arg) {
  selftest_client(*(int *)arg);
  return 0;
}

static int server_main(void *arg) {
  (void)arg;
  weft_server *srv = weft_tcp_listen("127.0.0.1", 0, &listen_opts);
  if (!srv) return -errno;
  /* serve reports the server to weft_group_start once it accepts. */
  int rc = weft_server_serve(srv, handler, NULL);
  weft_server_close(srv);
  return rc == -ECANCELED ? 0 : rc;
}

static int selftest_main(void *arg) {
  (void)arg;
  weft_group *g = weft_group_open();
  if (!g) return -errno;
  void *v = NULL;
  int rc = weft_group_start(g, server_main, NULL, NULL, &v);
  if (rc == 0) {
    int port = weft_server_port(v);
    printf("http_hello: self-test on 127.0.0.1:%d\n", port);
    weft_task *t = weft_spawn(client_main, &port, NULL);
    rc = t ? weft_join(t) : -errno;
    weft_server_stop(v);
  }
  int grc = weft_group_close(g, NULL);
  return rc ? rc : grc;
}

int main(int argc, char **argv) {
  make_responses();
  if (argc > 1) {
    char *end;
    long port = strtol(argv[argc - 1], &end, 10);
    if (*end || port < 0 || port > 65535) {
      fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
      return 2;
    }
    return serve((int)port);
  }
  int rc = weft_run(selftest_main, NULL);
  if (rc || failures) {
    fprintf(stderr, "http_hello: self-test failed: %s, %d checks failed\n",
            rc ? weft_strerror(rc) : "0", failures);
    return 1;
  }
  printf("http_hello: self-test passed\n");
  return 0;
}
