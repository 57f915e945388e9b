/*
 * idle_conns: the memory an echo server pays per idle connection.
 *
 *   idle_conns PID PORT [N]      (N: 10000 by default)
 *
 * Reads the server's resident set (VmRSS of /proc/PID/status), opens N TCP
 * connections to 127.0.0.1:PORT, sends 64 bytes on each and waits for
 * every echo (so each connection has been accepted and served once, and
 * its handler is parked in a read: idle, not merely queued in the
 * backlog), waits 1 s for the server to settle, reads VmRSS again and
 * prints one JSON line: {"conns":N,"rss_before_kib":...,"rss_after_kib":
 * ...,"bytes_per_conn":...}. Then it closes everything. Plain C and epoll,
 * one thread; raises its own RLIMIT_NOFILE to the hard limit (the server
 * needs N + a few fds too).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

enum { MSG = 64 };

static long rss_kib(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

typedef struct {
  int fd;
  int got; /* echo bytes received */
  int sent;
} conn;

static void die(const char *what) {
  fprintf(stderr, "idle_conns: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: idle_conns PID PORT [N]\n");
    return 2;
  }
  int pid = atoi(argv[1]), port = atoi(argv[2]);
  int n = argc > 3 ? atoi(argv[3]) : 10000;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  long before = rss_kib(pid);
  if (before < 0) die("reading the server's VmRSS");

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  conn *c = calloc((size_t)n, sizeof *c);
  char msg[MSG], buf[4096];
  memset(msg, 'i', sizeof msg);
  int done = 0, opened = 0;
  struct epoll_event evs[256];
  /* Connect in waves of 500 so the listen backlog never overflows. */
  while (done < n) {
    while (opened < n && opened - done < 500) {
      conn *k = &c[opened];
      k->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (k->fd < 0) die("socket");
      int one = 1;
      setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(k->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        die("connect");
      struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)opened};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &ev) < 0) die("epoll_ctl");
      opened++;
    }
    int m = epoll_wait(ep, evs, 256, 10000);
    if (m <= 0) {
      fprintf(stderr, "idle_conns: stalled with %d of %d echoed\n", done, n);
      return 1;
    }
    for (int i = 0; i < m; i++) {
      conn *k = &c[evs[i].data.u32];
      if ((evs[i].events & (EPOLLERR | EPOLLHUP)) && !(evs[i].events & EPOLLIN)) {
        fprintf(stderr, "idle_conns: connection %u failed\n", evs[i].data.u32);
        return 1;
      }
      if ((evs[i].events & EPOLLOUT) && k->sent < MSG) {
        ssize_t w = send(k->fd, msg + k->sent, (size_t)(MSG - k->sent), MSG_NOSIGNAL);
        if (w > 0) k->sent += (int)w;
        if (k->sent == MSG) {
          struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
          epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &ev);
        }
      }
      if (evs[i].events & EPOLLIN) {
        ssize_t r = recv(k->fd, buf, sizeof buf, 0);
        if (r <= 0 && !(r < 0 && errno == EAGAIN)) {
          fprintf(stderr, "idle_conns: connection %u closed early\n", evs[i].data.u32);
          return 1;
        }
        if (r > 0 && (k->got += (int)r) == MSG) {
          epoll_ctl(ep, EPOLL_CTL_DEL, k->fd, NULL);
          done++;
        }
      }
    }
  }
  struct timespec settle = {1, 0};
  nanosleep(&settle, NULL);
  long after = rss_kib(pid);
  printf("{\"conns\":%d,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
         "\"bytes_per_conn\":%.0f}\n",
         n, before, after, (double)(after - before) * 1024.0 / n);
  for (int i = 0; i < n; i++) close(c[i].fd);
  free(c);
  return 0;
}
