/*
 * wsp_timers: the loop's timers (wsp_loop_schedule), kept out of lws' own
 * timer list (issue 16, reconnect storm).
 *
 * lws keeps its timers in one list sorted by due time, and inserting walks
 * it from the head (lws_dll2_add_sorted): with 10,000 connections each
 * arming a retry timer and then a connect deadline, every insertion walked
 * thousands of nodes, and a storm of 10,000 reconnects spent ~80% of the
 * port program's CPU there for tens of seconds before the first handshake.
 *
 * Here timers are grouped by the millisecond they fall due in ("buckets":
 * an lws_dll2 list each, unsorted), the buckets sit in a binary min-heap by
 * that millisecond and in a hash table to find a millisecond's bucket.
 * Arming is O(1) plus O(log buckets) when it opens a bucket; firing is
 * O(log buckets) per bucket. Cancelling stays lws_sul_cancel (it unlinks the
 * node from whatever lws_dll2 list holds it, a bucket's as well): a bucket
 * left empty stays in the heap until its millisecond passes, then goes.
 *
 * A timer fires at the first run at or after the end of its millisecond
 * (due time rounded up to a whole ms, so never early, at most 1 ms late);
 * timers of one millisecond fire in the order they were armed. Time is
 * given by the caller (monotonic microseconds, as lws_now_usecs).
 */
#ifndef WSP_TIMERS_H
#define WSP_TIMERS_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

struct wsp_tbucket;

struct wsp_timers {
    struct wsp_tbucket **heap;   /* min-heap by tick */
    size_t nheap, heap_cap;
    struct wsp_tbucket **hash;   /* tick -> bucket, chained */
    size_t hash_cap;             /* power of two (0: not allocated yet) */
};

/* An empty set (a zeroed struct is one too). */
void wsp_timers_init(struct wsp_timers *t);

/* Arms sul to call cb at `at` (absolute, microseconds); takes it off any
 * list it is on first (a bucket, lws' timer list, another lws_dll2 list).
 * -1 when out of memory: then sul is left detached. */
int wsp_timers_add(struct wsp_timers *t, lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t at);

/* When the next run has something to fire (microseconds, the end of the
 * earliest armed millisecond), or -1 when no timer is armed. Drops buckets
 * emptied by lws_sul_cancel on the way. */
lws_usec_t wsp_timers_next(struct wsp_timers *t);

/* Fires every timer due at `now`, earliest millisecond first. The callbacks
 * may arm and cancel timers (these too). Returns how many fired. */
size_t wsp_timers_run(struct wsp_timers *t, lws_usec_t now);

/* How many timers are armed (walks the buckets: for tests and logs). */
size_t wsp_timers_count(const struct wsp_timers *t);

/* Detaches every armed timer (none fires) and frees the set. */
void wsp_timers_clear(struct wsp_timers *t);

#endif
