/* The job queue and its workers. The queue itself is the jobs table (status
 * queued or interrupted, by priority then submission), so it survives a
 * crash; the scheduler holds only what is live: one slot per worker with the
 * running job's cancel flag and its latest progress.
 *
 * Each worker claims a job in one UPDATE, runs a DaclTrainer on it in
 * <state>/jobs/<id>/ (resuming from checkpoint-last.bin when one exists),
 * writes its metrics to the store in batches and publishes them to SSE
 * subscribers, and records how it ended. */
#ifndef DACLD_SCHEDULER_H
#define DACLD_SCHEDULER_H

#include "dacl/train.h"
#include "server.h"

int scheduler_start(Server *s, Scheduler **out);
/* A job was queued: wake an idle worker. */
void scheduler_wake(Scheduler *sc);
/* Asks a running job to stop at its next iteration (it checkpoints and is
 * marked canceled). 0 when the job is not running here. */
int scheduler_cancel(Scheduler *sc, long job);
/* The running job's latest progress; 0 when it is not running here. */
int scheduler_progress(Scheduler *sc, long job, DaclProgress *p);
/* Why the running job's metrics are not being saved (the database refuses
 * writes), into buf; 0 when they are, or the job is not running here. */
int scheduler_warning(Scheduler *sc, long job, char *buf, size_t n);
/* Every running job's id and progress (for /metrics); returns how many. */
int scheduler_running(Scheduler *sc, long *jobs, DaclProgress *p, int max);
/* Shutdown: running jobs checkpoint at their next iteration and are marked
 * interrupted; joins the workers. */
void scheduler_stop(Scheduler *sc);

#endif
