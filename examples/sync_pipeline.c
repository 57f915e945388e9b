/*
 * sync_pipeline.c -- a producer/consumer pipeline over bounded queues.
 *
 *   producer --(jobs, capacity 4)--> 3 workers --(results, capacity 4)--> main
 *
 * The small capacities are the backpressure: the producer can never get
 * more than 4 jobs ahead of the workers. When it is done it shuts the job
 * queue down gracefully; the workers drain what is left, see WEFT_EEND
 * and return. A semaphore caps how many workers are "on the network" at
 * once, as a rate-limited fetcher would.
 *
 * Build and run: make && ./build/bin/example-sync_pipeline
 */
#include <errno.h>
#include <stdio.h>

#include "weft.h"

enum { NJOBS = 20, NWORKERS = 3 };

typedef struct {
  int id, input;
} job;

typedef struct {
  int id, output;
} result;

typedef struct {
  weft_queue *jobs, *results;
  weft_sem *net; /* at most 2 workers in the "slow call" at once */
} pipeline;

static int producer(void *arg) {
  pipeline *p = arg;
  for (int i = 0; i < NJOBS; i++) {
    job j = {i, i + 1};
    int rc = weft_queue_put(p->jobs, &j); /* waits while 4 are queued */
    if (rc) return weft_fail(rc, "put job %d", i);
  }
  return weft_queue_shutdown(p->jobs, false); /* the rest still drains */
}

static int worker(void *arg) {
  pipeline *p = arg;
  for (;;) {
    job j;
    int rc = weft_queue_get(p->jobs, &j);
    if (rc == WEFT_EEND) return 0; /* shut down and drained: no more work */
    if (rc) return rc;
    if ((rc = weft_sem_acquire(p->net)) != 0) return rc;
    weft_sleep(WEFT_MS(1)); /* the slow part */
    weft_sem_release(p->net);
    result r = {j.id, j.input * j.input};
    if ((rc = weft_queue_put(p->results, &r)) != 0) return rc;
  }
}

static int run(void *arg) {
  pipeline *p = arg;
  weft_group *g = weft_group_open();
  if (!g) return -errno;
  weft_group_spawn(g, producer, p, NULL);
  for (int i = 0; i < NWORKERS; i++) weft_group_spawn(g, worker, p, NULL);
  long sum = 0;
  for (int i = 0; i < NJOBS; i++) {
    result r;
    int rc = weft_queue_get(p->results, &r);
    if (rc) {
      weft_group_cancel(g);
      weft_group_close(g, NULL);
      return rc;
    }
    sum += r.output;
  }
  int rc = weft_group_close(g, NULL);
  printf("sum of squares 1..%d = %ld\n", NJOBS, sum);
  return rc ? rc : sum == (long)NJOBS * (NJOBS + 1) * (2 * NJOBS + 1) / 6 ? 0 : -EPROTO;
}

int main(void) {
  pipeline p = {
      .jobs = weft_queue_new(4, sizeof(job)),
      .results = weft_queue_new(4, sizeof(result)),
      .net = weft_sem_new(2),
  };
  if (!p.jobs || !p.results || !p.net) return 1;
  int rc = weft_run(run, &p);
  weft_queue_free(p.jobs);
  weft_queue_free(p.results);
  weft_sem_free(p.net);
  if (rc) fprintf(stderr, "pipeline: %s\n", weft_strerror(rc));
  return rc ? 1 : 0;
}
