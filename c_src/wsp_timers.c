/* See wsp_timers.h. */
#include "wsp_timers.h"

#include <stdlib.h>
#include <string.h>

struct wsp_tbucket {
    lws_dll2_owner_t owner;      /* the timers due in this millisecond */
    int64_t tick;                /* that millisecond: all are due by tick * 1000 us */
    struct wsp_tbucket *hnext;   /* hash chain */
};

static int64_t tick_of(lws_usec_t at)
{
    return at <= 0 ? 0 : (int64_t)((at + 999) / 1000);
}

static size_t hash_slot(int64_t tick, size_t cap)
{
    return (size_t)(((uint64_t)tick * 0x9E3779B97F4A7C15ull) >> 29) & (cap - 1);
}

void wsp_timers_init(struct wsp_timers *t) { memset(t, 0, sizeof *t); }

/* ---- the hash table ------------------------------------------------------ */

static struct wsp_tbucket *hash_find(const struct wsp_timers *t, int64_t tick)
{
    if (!t->hash_cap) {
        return NULL;
    }
    for (struct wsp_tbucket *b = t->hash[hash_slot(tick, t->hash_cap)]; b; b = b->hnext) {
        if (b->tick == tick) {
            return b;
        }
    }
    return NULL;
}

static void hash_del(struct wsp_timers *t, struct wsp_tbucket *b)
{
    for (struct wsp_tbucket **pp = &t->hash[hash_slot(b->tick, t->hash_cap)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == b) {
            *pp = b->hnext;
            return;
        }
    }
}

/* Room for one more bucket (load factor at most 1). */
static int hash_reserve(struct wsp_timers *t, size_t want)
{
    if (want <= t->hash_cap) {
        return 0;
    }
    size_t cap = t->hash_cap ? t->hash_cap * 2 : 64;
    while (cap < want) {
        cap *= 2;
    }
    struct wsp_tbucket **h = calloc(cap, sizeof *h);
    if (!h) {
        return -1;
    }
    for (size_t i = 0; i < t->hash_cap; i++) {
        struct wsp_tbucket *b = t->hash[i];
        while (b) {
            struct wsp_tbucket *next = b->hnext;
            size_t s = hash_slot(b->tick, cap);
            b->hnext = h[s];
            h[s] = b;
            b = next;
        }
    }
    free(t->hash);
    t->hash = h;
    t->hash_cap = cap;
    return 0;
}

/* ---- the heap ------------------------------------------------------------ */

static void heap_up(struct wsp_timers *t, size_t i)
{
    struct wsp_tbucket *b = t->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (t->heap[p]->tick <= b->tick) {
            break;
        }
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = b;
}

static void heap_down(struct wsp_timers *t, size_t i)
{
    size_t n = t->nheap;
    struct wsp_tbucket *b = t->heap[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) {
            break;
        }
        size_t m = l + 1 < n && t->heap[l + 1]->tick < t->heap[l]->tick ? l + 1 : l;
        if (b->tick <= t->heap[m]->tick) {
            break;
        }
        t->heap[i] = t->heap[m];
        i = m;
    }
    t->heap[i] = b;
}

/* Takes the earliest bucket out of the heap and the hash table. */
static struct wsp_tbucket *pop_min(struct wsp_timers *t)
{
    struct wsp_tbucket *b = t->heap[0];
    t->nheap--;
    if (t->nheap > 0) {
        t->heap[0] = t->heap[t->nheap];
        heap_down(t, 0);
    }
    hash_del(t, b);
    return b;
}

/* ---- the interface ------------------------------------------------------- */

int wsp_timers_add(struct wsp_timers *t, lws_sorted_usec_list_t *sul, sul_cb_t cb, lws_usec_t at)
{
    lws_dll2_remove(&sul->list);
    int64_t tick = tick_of(at);
    struct wsp_tbucket *b = hash_find(t, tick);
    if (!b) {
        if (t->nheap == t->heap_cap) {
            size_t cap = t->heap_cap ? t->heap_cap * 2 : 64;
            struct wsp_tbucket **h = realloc(t->heap, cap * sizeof *h);
            if (!h) {
                return -1;
            }
            t->heap = h;
            t->heap_cap = cap;
        }
        if (hash_reserve(t, t->nheap + 1) < 0) {
            return -1;
        }
        b = calloc(1, sizeof *b);
        if (!b) {
            return -1;
        }
        b->tick = tick;
        size_t s = hash_slot(tick, t->hash_cap);
        b->hnext = t->hash[s];
        t->hash[s] = b;
        t->heap[t->nheap++] = b;
        heap_up(t, t->nheap - 1);
    }
    sul->cb = cb;
    sul->us = at;
    lws_dll2_add_tail(&sul->list, &b->owner);
    return 0;
}

lws_usec_t wsp_timers_next(struct wsp_timers *t)
{
    while (t->nheap > 0 && t->heap[0]->owner.count == 0) {
        free(pop_min(t));
    }
    return t->nheap > 0 ? (lws_usec_t)t->heap[0]->tick * 1000 : -1;
}

size_t wsp_timers_run(struct wsp_timers *t, lws_usec_t now)
{
    size_t fired = 0;
    int64_t until = now < 0 ? -1 : (int64_t)(now / 1000);
    while (t->nheap > 0 && t->heap[0]->tick <= until) {
        /* out of the heap and the table first: a callback arming a timer
         * for this millisecond gets a new bucket (fired in this run) */
        struct wsp_tbucket *b = pop_min(t);
        struct lws_dll2 *d;
        while ((d = lws_dll2_get_head(&b->owner)) != NULL) {
            lws_sorted_usec_list_t *sul = lws_container_of(d, lws_sorted_usec_list_t, list);
            lws_dll2_remove(d);
            fired++;
            sul->cb(sul);
        }
        free(b);
    }
    return fired;
}

size_t wsp_timers_count(const struct wsp_timers *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nheap; i++) {
        n += t->heap[i]->owner.count;
    }
    return n;
}

void wsp_timers_clear(struct wsp_timers *t)
{
    for (size_t i = 0; i < t->nheap; i++) {
        struct wsp_tbucket *b = t->heap[i];
        struct lws_dll2 *d;
        while ((d = lws_dll2_get_head(&b->owner)) != NULL) {
            lws_dll2_remove(d);
        }
        free(b);
    }
    free(t->heap);
    free(t->hash);
    wsp_timers_init(t);
}
