/* See wsp_osslmem.h. */
#include "wsp_osslmem.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK_SHIFT 16
#define CHUNK ((size_t)1 << CHUNK_SHIFT)  /* 64 KiB, one size class each */
#define REGION_CHUNKS 65536u              /* 4 GiB of address space, reserved */
#define HDR 64                            /* chunk header; slots start 16-aligned */
#define SMALL_MAX 256
#define NCLASS 20                         /* 8..64 by 8, 80..256 by 16 */

struct chunk {
    struct chunk *next, *prev;  /* the class's chunks with free slots */
    void *free;                 /* freed slots, linked through their first word */
    uint32_t live;              /* slots in use */
    uint32_t bump;              /* offset of the first never-used slot */
    uint16_t cls;
    uint8_t listed;             /* on the class's list */
};

static struct {
    pthread_mutex_t mu;
    uint8_t *base;              /* the reserved range (NULL: not reserved) */
    uint32_t used;              /* chunks handed out of it so far */
    struct chunk *spare;        /* chunks given back, pages dropped */
    struct chunk *avail[NCLASS];
    size_t nchunks, nlive;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t class_size(unsigned c) { return c < 8 ? (c + 1) * 8 : 64 + (c - 7) * 16; }

static unsigned class_of(size_t n)
{
    if (n == 0) {
        n = 1;
    }
    return n <= 64 ? (unsigned)((n + 7) / 8 - 1) : (unsigned)(7 + (n - 64 + 15) / 16);
}

static int reserve(void)
{
    if (M.base) {
        return 0;
    }
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_NORESERVE
    flags |= MAP_NORESERVE;
#endif
    size_t len = (size_t)REGION_CHUNKS * CHUNK;
    /* one chunk more, to align the start to a chunk */
    void *p = mmap(NULL, len + CHUNK, PROT_NONE, flags, -1, 0);
    if (p == MAP_FAILED) {
        return -1;
    }
    uintptr_t a = ((uintptr_t)p + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1);
    M.base = (uint8_t *)a;
    return 0;
}

static int ours(const void *p)
{
    return M.base && (const uint8_t *)p >= M.base &&
           (size_t)((const uint8_t *)p - M.base) < (size_t)REGION_CHUNKS * CHUNK;
}

static void unlist(struct chunk *ch)
{
    if (!ch->listed) {
        return;
    }
    if (ch->prev) {
        ch->prev->next = ch->next;
    } else {
        M.avail[ch->cls] = ch->next;
    }
    if (ch->next) {
        ch->next->prev = ch->prev;
    }
    ch->next = ch->prev = NULL;
    ch->listed = 0;
}

static void list(struct chunk *ch)
{
    ch->prev = NULL;
    ch->next = M.avail[ch->cls];
    if (ch->next) {
        ch->next->prev = ch;
    }
    M.avail[ch->cls] = ch;
    ch->listed = 1;
}

static struct chunk *new_chunk(unsigned cls)
{
    struct chunk *ch = M.spare;
    if (ch) {
        M.spare = ch->next;
    } else {
        if (M.used == REGION_CHUNKS || reserve() < 0) {
            return NULL;
        }
        ch = (struct chunk *)(M.base + (size_t)M.used * CHUNK);
        if (mprotect(ch, CHUNK, PROT_READ | PROT_WRITE) < 0) {
            return NULL;
        }
        M.used++;
    }
    memset(ch, 0, sizeof *ch);
    ch->cls = (uint16_t)cls;
    ch->bump = HDR;
    M.nchunks++;
    list(ch);
    return ch;
}

/* All its slots are free: the pages go back to the OS, the chunk to spare. */
static void drop_chunk(struct chunk *ch)
{
    unlist(ch);
    M.nchunks--;
#ifdef MADV_DONTNEED
    /* keep the header's page: the spare list runs through it */
    (void)madvise((uint8_t *)ch + 4096, CHUNK - 4096, MADV_DONTNEED);
#endif
    ch->next = M.spare;
    M.spare = ch;
}

void *wsp_osslmem_malloc(size_t n)
{
    if (n > SMALL_MAX) {
        return malloc(n);
    }
    unsigned cls = class_of(n);
    size_t sz = class_size(cls);
    pthread_mutex_lock(&M.mu);
    struct chunk *ch = M.avail[cls];
    if (!ch) {
        ch = new_chunk(cls);
    }
    void *p = NULL;
    if (ch) {
        if (ch->free) {
            p = ch->free;
            memcpy(&ch->free, p, sizeof ch->free);
        } else {
            p = (uint8_t *)ch + ch->bump;
            ch->bump += (uint32_t)sz;
        }
        ch->live++;
        M.nlive++;
        if (!ch->free && ch->bump + sz > CHUNK) {
            unlist(ch); /* full */
        }
    }
    pthread_mutex_unlock(&M.mu);
    return p ? p : malloc(n); /* out of address space: malloc's */
}

void wsp_osslmem_free(void *p)
{
    if (!p) {
        return;
    }
    if (!ours(p)) {
        free(p);
        return;
    }
    struct chunk *ch = (struct chunk *)((uintptr_t)p & ~(uintptr_t)(CHUNK - 1));
    pthread_mutex_lock(&M.mu);
    memcpy(p, &ch->free, sizeof ch->free);
    ch->free = p;
    ch->live--;
    M.nlive--;
    if (ch->live == 0 && (M.avail[ch->cls] != ch || ch->next)) {
        drop_chunk(ch); /* not its size's last chunk with room */
    } else if (!ch->listed) {
        list(ch);
    }
    pthread_mutex_unlock(&M.mu);
}

void *wsp_osslmem_realloc(void *p, size_t n)
{
    if (!p) {
        return wsp_osslmem_malloc(n);
    }
    if (n == 0) {
        wsp_osslmem_free(p); /* as OpenSSL's own CRYPTO_realloc */
        return NULL;
    }
    if (!ours(p)) {
        return realloc(p, n); /* malloc's stays malloc's */
    }
    struct chunk *ch = (struct chunk *)((uintptr_t)p & ~(uintptr_t)(CHUNK - 1));
    size_t old = class_size(ch->cls);
    if (n <= old && (n > SMALL_MAX || class_of(n) == ch->cls)) {
        return p;
    }
    void *q = wsp_osslmem_malloc(n);
    if (!q) {
        return NULL;
    }
    memcpy(q, p, old < n ? old : n);
    wsp_osslmem_free(p);
    return q;
}

void wsp_osslmem_stats(size_t *chunks, size_t *live)
{
    pthread_mutex_lock(&M.mu);
    *chunks = M.nchunks;
    *live = M.nlive;
    pthread_mutex_unlock(&M.mu);
}

#if defined(__SANITIZE_ADDRESS__)
#define WSP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WSP_SANITIZED 1
#endif
#endif

#ifndef WSP_SANITIZED
static void *o_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return wsp_osslmem_malloc(n);
}

static void *o_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return wsp_osslmem_realloc(p, n);
}

static void o_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    wsp_osslmem_free(p);
}

#endif

int wsp_osslmem_install(void)
{
#ifdef WSP_SANITIZED
    return 0;
#else
    const char *e = getenv("WS_PORT_OPENSSL_MALLOC");
    if (e && !strcmp(e, "libc")) {
        return 0;
    }
    return CRYPTO_set_mem_functions(o_malloc, o_realloc, o_free) == 1;
#endif
}
