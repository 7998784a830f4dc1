/* The SSE hub: subscribers' buffers, suspend/resume and the heartbeat.
 *
 * Locking: one mutex guards every subscriber, and no libmicrohttpd function
 * is ever called while holding it (libmicrohttpd has locks of its own that
 * its callbacks run under). That is why suspension takes two steps: the
 * content reader marks the stream SUSPENDING, suspends it unlocked, and then
 * resumes it at once if an event arrived in between (the publisher saw
 * SUSPENDING and left a `wake`). A SUSPENDED stream cannot be closed by
 * libmicrohttpd, so a publisher may resume it after unlocking. */
#include "events.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dacl/error.h"
#include "http.h"

#define MAX_BACKLOG (8u << 20) /* a client this far behind is dropped */

enum { ACTIVE, SUSPENDING, SUSPENDED };

typedef struct Held {
    struct Held *next;
    EventKey key;
    int last;
    size_t n;
    char text[];
} Held;

struct Subscriber {
    Events *e;
    Subscriber *prev, *next;
    long job;
    struct MHD_Connection *conn;
    HttpBuf buf; /* SSE text not yet sent, from off */
    size_t off;
    Held *held, **held_tail; /* events published while history is replayed */
    int replaying;
    int state, wake;
    int ended; /* no more events: end once drained */
    int dead;  /* fell too far behind: cut */
    double last_write;
};

struct Events {
    pthread_mutex_t mu;
    pthread_cond_t tick;
    Subscriber *subs;
    int closing;
    int heartbeat_s;
    pthread_t hb;
    int hb_started;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int events_key_cmp(EventKey a, EventKey b) {
    if (a.it != b.it) return a.it < b.it ? -1 : 1;
    return (a.n > b.n) - (a.n < b.n);
}

int events_key_parse(const char *s, EventKey *k) {
    char *end;
    errno = 0;
    long it = strtol(s, &end, 10);
    if (errno || end == s || it < 0) return 0;
    long n = 0;
    if (*end == '.') {
        const char *p = end + 1;
        n = strtol(p, &end, 10);
        if (end == p || n < 0 || n > 1000) return 0;
    }
    if (*end) return 0;
    k->it = it;
    k->n = (int)n;
    return 1;
}

/* Under the lock: marks sub for resumption; returns 1 if the caller must call
 * MHD_resume_connection (after unlocking). */
static int wake_locked(Subscriber *sub) {
    if (sub->state == SUSPENDED) {
        sub->state = ACTIVE;
        return 1;
    }
    if (sub->state == SUSPENDING) sub->wake = 1;
    return 0;
}

static void append_event(Subscriber *sub, const char *text, size_t n, int last) {
    if (sub->buf.n - sub->off + n > MAX_BACKLOG) {
        sub->dead = 1;
        return;
    }
    buf_append(&sub->buf, text, n);
    if (sub->buf.oom) sub->dead = 1;
    if (last) sub->ended = 1;
}

/* ------------------------------------------------------------- hub -- */

static void *heartbeat_main(void *arg) {
    Events *e = arg;
    struct MHD_Connection *wake[64];
    pthread_mutex_lock(&e->mu);
    while (!e->closing) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&e->tick, &e->mu, &until);
        int nw = 0;
        double t = now_s();
        for (Subscriber *s = e->subs; s && nw < 64; s = s->next)
            if (t - s->last_write >= e->heartbeat_s && wake_locked(s)) wake[nw++] = s->conn;
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < nw; i++) MHD_resume_connection(wake[i]);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int events_start(Events **out, int heartbeat_s) {
    *out = NULL;
    Events *e = calloc(1, sizeof *e);
    if (!e) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->tick, NULL);
    e->heartbeat_s = heartbeat_s > 0 ? heartbeat_s : 15;
    if (pthread_create(&e->hb, NULL, heartbeat_main, e)) {
        events_free(e);
        return DACL_FAIL(DACL_ENOMEM, "cannot start the event heartbeat thread");
    }
    e->hb_started = 1;
    *out = e;
    return DACL_OK;
}

/* Resumes every stream so each ends, then stops the heartbeat. Streams
 * resumed here are still open until the HTTP daemon closes them. */
void events_close(Events *e) {
    if (!e) return;
    for (;;) {
        struct MHD_Connection *wake[64];
        int nw = 0;
        pthread_mutex_lock(&e->mu);
        e->closing = 1;
        pthread_cond_broadcast(&e->tick);
        for (Subscriber *s = e->subs; s && nw < 64; s = s->next) {
            s->ended = 1;
            if (wake_locked(s)) wake[nw++] = s->conn;
        }
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < nw; i++) MHD_resume_connection(wake[i]);
        if (nw < 64) break;
    }
    if (e->hb_started) pthread_join(e->hb, NULL);
    e->hb_started = 0;
}

void events_free(Events *e) {
    if (!e) return;
    events_close(e);
    /* the HTTP daemon has stopped: its free callbacks unlinked every stream */
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->tick);
    free(e);
}

int events_watched(Events *e, long job) {
    int w = 0;
    pthread_mutex_lock(&e->mu);
    for (Subscriber *s = e->subs; s && !w; s = s->next) w = s->job == job;
    pthread_mutex_unlock(&e->mu);
    return w;
}

void events_publish(Events *e, long job, const char *name, EventKey key, const char *json, int last) {
    HttpBuf t = {0};
    buf_printf(&t, "event: %s\n", name);
    if (key.n >= 0) buf_printf(&t, "id: %ld.%d\n", key.it, key.n);
    buf_printf(&t, "data: %s\n\n", json);
    size_t n;
    char *text = buf_take(&t, &n);
    if (!text) return; /* out of memory: subscribers miss it, training goes on */
    struct MHD_Connection *wake[64];
    int nw = 0;
    pthread_mutex_lock(&e->mu);
    for (Subscriber *s = e->subs; s; s = s->next) {
        if (s->job != job || s->ended) continue;
        if (s->replaying) {
            Held *h = malloc(sizeof *h + n + 1);
            if (!h) {
                s->dead = 1;
            } else {
                *h = (Held){NULL, key, last, n};
                memcpy(h->text, text, n + 1);
                *s->held_tail = h;
                s->held_tail = &h->next;
            }
            continue;
        }
        append_event(s, text, n, last);
        if (wake_locked(s) && nw < 64) wake[nw++] = s->conn;
        /* past 64 woken streams, the heartbeat resumes the rest within a second */
    }
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < nw; i++) MHD_resume_connection(wake[i]);
    free(text);
}

/* ----------------------------------------------------------- streams -- */

Subscriber *events_subscribe(Events *e, long job, struct MHD_Connection *conn) {
    Subscriber *sub = calloc(1, sizeof *sub);
    if (!sub) return NULL;
    sub->e = e;
    sub->job = job;
    sub->conn = conn;
    sub->replaying = 1;
    sub->held_tail = &sub->held;
    sub->last_write = now_s();
    pthread_mutex_lock(&e->mu);
    if (e->closing) {
        pthread_mutex_unlock(&e->mu);
        free(sub);
        return NULL;
    }
    sub->next = e->subs;
    if (e->subs) e->subs->prev = sub;
    e->subs = sub;
    pthread_mutex_unlock(&e->mu);
    return sub;
}

static void free_held(Subscriber *sub) {
    for (Held *h = sub->held, *nx; h; h = nx) {
        nx = h->next;
        free(h);
    }
    sub->held = NULL;
    sub->held_tail = &sub->held;
}

int events_subscribe_ready(Subscriber *sub, const char *history, size_t n, EventKey through, int ended) {
    Events *e = sub->e;
    pthread_mutex_lock(&e->mu);
    append_event(sub, history, n, 0);
    for (Held *h = sub->held; h && !sub->ended; h = h->next)
        if (h->key.n < 0 || events_key_cmp(h->key, through) > 0) append_event(sub, h->text, h->n, h->last);
    free_held(sub);
    if (ended) sub->ended = 1;
    sub->replaying = 0;
    int ok = !sub->dead;
    pthread_mutex_unlock(&e->mu);
    return ok ? DACL_OK : DACL_FAIL(DACL_ENOMEM, "out of memory for the event stream");
}

static void sub_free(void *cls) {
    Subscriber *sub = cls;
    Events *e = sub->e;
    pthread_mutex_lock(&e->mu);
    if (sub->prev)
        sub->prev->next = sub->next;
    else if (e->subs == sub)
        e->subs = sub->next;
    if (sub->next) sub->next->prev = sub->prev;
    pthread_mutex_unlock(&e->mu);
    free_held(sub);
    free(sub->buf.p);
    free(sub);
}

void events_unsubscribe(Subscriber *sub) {
    if (sub) sub_free(sub);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    Subscriber *sub = cls;
    Events *e = sub->e;
    pthread_mutex_lock(&e->mu);
    if (sub->dead) {
        pthread_mutex_unlock(&e->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t avail = sub->buf.n - sub->off;
    if (avail == 0 && !sub->ended && !e->closing && now_s() - sub->last_write >= e->heartbeat_s) {
        buf_append(&sub->buf, ": heartbeat\n\n", 13);
        avail = sub->buf.n - sub->off;
    }
    if (avail) {
        size_t k = avail < max ? avail : max;
        memcpy(out, sub->buf.p + sub->off, k);
        sub->off += k;
        if (sub->off == sub->buf.n) sub->off = sub->buf.n = 0; /* drained: reuse from the start */
        sub->last_write = now_s();
        pthread_mutex_unlock(&e->mu);
        return (ssize_t)k;
    }
    if (sub->ended || e->closing) {
        pthread_mutex_unlock(&e->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    sub->state = SUSPENDING;
    sub->wake = 0;
    pthread_mutex_unlock(&e->mu);
    MHD_suspend_connection(sub->conn);
    pthread_mutex_lock(&e->mu);
    int again = sub->wake;
    sub->state = again ? ACTIVE : SUSPENDED;
    sub->wake = 0;
    pthread_mutex_unlock(&e->mu);
    if (again) MHD_resume_connection(sub->conn);
    return 0;
}

struct MHD_Response *events_response(Subscriber *sub) {
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, sub, sub_free);
    if (!r) return NULL;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* nginx: do not buffer the stream */
    return r;
}
