/* Server-sent events: the fan-out from training threads to subscribers.
 *
 * A subscriber is one suspended HTTP connection with a text buffer. A worker
 * publishing an event appends it to the buffers of that job's subscribers
 * and resumes their connections; libmicrohttpd then drains the buffer through
 * the content reader, which suspends the connection again once it is empty.
 * Idle streams get a comment line every heartbeat so proxies and dead
 * clients are noticed.
 *
 * Durable events (metric, evaluation) carry an id "<iteration>.<n>": n = 0
 * for the metrics of that iteration, 1 + model for a validation round. Ids
 * order events the way they were committed to the store, so a client that
 * reconnects with Last-Event-ID gets exactly what it missed. */
#ifndef DACLD_EVENTS_H
#define DACLD_EVENTS_H

#include <microhttpd.h>
#include <stddef.h>

#include "server.h"

typedef struct Subscriber Subscriber;

/* (iteration, n) of an event id; n < 0 for events without one */
typedef struct {
    long it;
    int n;
} EventKey;

int events_start(Events **out, int heartbeat_s);
/* Ends every stream (before the HTTP daemon stops) and the heartbeat thread. */
void events_close(Events *e);
void events_free(Events *e);

/* Whether job has subscribers: lets publishers skip formatting. */
int events_watched(Events *e, long job);
/* Appends `event: name`, the id of key (if key.n >= 0) and `data: json` to
 * the job's streams; last: the streams end after this event. */
void events_publish(Events *e, long job, const char *name, EventKey key, const char *json, int last);

/* Registers a stream for job. Until events_subscribe_ready, published events
 * are held back, so the caller can replay history from the store first. */
Subscriber *events_subscribe(Events *e, long job, struct MHD_Connection *conn);
/* history (n bytes, may be 0) goes first; then the held events newer than
 * `through`; ended: the job has finished, the stream ends after that. */
int events_subscribe_ready(Subscriber *sub, const char *history, size_t n, EventKey through, int ended);
/* For a stream that will not be served after all. */
void events_unsubscribe(Subscriber *sub);
/* The streaming response; the subscriber is freed when it is done. */
struct MHD_Response *events_response(Subscriber *sub);

/* "12.1" -> {12, 1}; "12" -> {12, 0}. 0 if s is not an id. */
int events_key_parse(const char *s, EventKey *k);
int events_key_cmp(EventKey a, EventKey b);

#endif
