/*
 * test_graceful.c -- examples/graceful_shutdown.c (weft_config.
 * shutdown_signals) as a process, with python3 socket clients: SIGTERM
 * while requests are under way drains them (every client gets its
 * answer, the process exits 0, a new connection is refused meanwhile);
 * SIGINT does the same; a second SIGINT during the drain ends the
 * process at once, by SIGINT.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "example_server.h"

/* python3 clients: n connections each send "work <ms>" and print the
 * answer line; started in the background, their output read after. */
typedef struct clients {
  pid_t pid;
  int out;
} clients;

static void clients_start(clients *c, int port, int n, int ms) {
  char script[1024];
  snprintf(script, sizeof script,
           "import socket,sys\n"
           "ss=[socket.create_connection(('127.0.0.1',%d)) for _ in range(%d)]\n"
           "[s.sendall(b'work %d\\n') for s in ss]\n"
           "print('sent',flush=True)\n"
           "for s in ss:\n"
           "  f=s.makefile('rb'); print(f.readline().decode().strip() or 'EOF',flush=True)\n",
           port, n, ms);
  int p[2];
  cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  char *argv[] = {"python3", "-c", script, NULL};
  cr_assert_eq(posix_spawnp(&c->pid, "python3", &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  c->out = p[0];
}

/* Reads the clients' output to its end (at most 10 s). */
static void clients_collect(clients *c, char *out, size_t cap) {
  size_t n = 0;
  int64_t deadline = weft_now() + WEFT_SEC(10);
  while (n + 1 < cap) {
    struct pollfd pfd = {.fd = c->out, .events = POLLIN};
    int64_t left = (deadline - weft_now()) / 1000000;
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) break;
    ssize_t r = read(c->out, out + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  out[n] = '\0';
  close(c->out);
  kill(c->pid, SIGKILL);
  waitpid(c->pid, NULL, 0);
}

/* Waits until the clients said "sent" (their requests are under way). */
static void clients_sent(clients *c) {
  char line[16];
  size_t n = 0;
  while (n + 1 < sizeof line) {
    struct pollfd pfd = {.fd = c->out, .events = POLLIN};
    cr_assert_gt(poll(&pfd, 1, 10000), 0, "the clients did not connect");
    if (read(c->out, line + n, 1) != 1 || line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  cr_assert_str_eq(line, "sent");
}

static bool refused(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bool r = connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno == ECONNREFUSED;
  close(fd);
  return r;
}

static void drains_on(int sig) {
  if (!have_prog("python3")) cr_skip_test("no python3");
  server s;
  server_start(&s, "graceful_shutdown");
  clients c;
  clients_start(&c, s.port, 3, 400);
  clients_sent(&c);
  usleep(100 * 1000); /* the requests are in the server's hands */
  cr_assert_eq(kill(s.pid, sig), 0);
  usleep(100 * 1000);
  cr_assert(refused(s.port), "a new connection was accepted during the drain");
  char out[256];
  clients_collect(&c, out, sizeof out);
  cr_assert_str_eq(out, "done 400\ndone 400\ndone 400\n");
  int st = server_wait(&s, 10);
  cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

Test(graceful, sigterm_drains, .timeout = 30) { drains_on(SIGTERM); }

Test(graceful, sigint_drains, .timeout = 30) { drains_on(SIGINT); }

Test(graceful, second_sigint_ends_at_once, .timeout = 30) {
  if (!have_prog("python3")) cr_skip_test("no python3");
  server s;
  server_start(&s, "graceful_shutdown");
  clients c;
  clients_start(&c, s.port, 1, 8000); /* a drain that would take 8 s */
  clients_sent(&c);
  usleep(100 * 1000);
  cr_assert_eq(kill(s.pid, SIGINT), 0);
  usleep(100 * 1000);
  int64_t t0 = weft_now();
  cr_assert_eq(kill(s.pid, SIGINT), 0);
  int st = server_wait(&s, 10);
  cr_assert_lt(weft_now() - t0, WEFT_SEC(3));
  cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGINT, "status %#x", st);
  char out[256];
  clients_collect(&c, out, sizeof out);
  cr_assert_str_eq(out, "EOF\n"); /* the connection died with the process */
}
