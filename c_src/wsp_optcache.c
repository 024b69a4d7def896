#include "wsp_optcache.h"

#include <stdlib.h>
#include <string.h>

#include <ei.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define NBUCKETS 1024u

struct ent {
    uint8_t md[32];                 /* SHA-256 of the key bytes */
    struct wsp_connect_opts *opts;
    size_t refs;
    struct ent *next_md, *next_ptr;
};

static struct ent *g_by_md[NBUCKETS];
static struct ent *g_by_ptr[NBUCKETS];
static size_t g_entries, g_refs;

static size_t md_slot(const uint8_t *md)
{
    return ((size_t)md[0] | (size_t)md[1] << 8) & (NBUCKETS - 1);
}

static size_t ptr_slot(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    return (size_t)((v >> 4) ^ (v >> 14)) & (NBUCKETS - 1);
}

int wsp_optcache_connect_key(const uint8_t *packet, size_t len, size_t *off)
{
    const char *b = (const char *)packet;
    int idx = 0, version = 0, arity = 0;
    if (!packet || len == 0 || len > INT32_MAX || ei_decode_version(b, &idx, &version) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 4 ||
        ei_skip_term(b, &idx) < 0 || /* connect */
        ei_skip_term(b, &idx) < 0 || /* Id */
        idx < 0 || (size_t)idx > len) {
        return -1;
    }
    *off = (size_t)idx;
    return 0;
}

struct wsp_connect_opts *wsp_optcache_intern(struct wsp_connect_opts *opts, const uint8_t *key,
                                             size_t keylen)
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    if (!opts || EVP_Digest(key, keylen, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        return opts;
    }
    for (struct ent *e = g_by_md[md_slot(md)]; e; e = e->next_md) {
        if (CRYPTO_memcmp(e->md, md, 32) == 0) {
            e->refs++;
            g_refs++;
            wsp_connect_opts_free(opts);
            return e->opts;
        }
    }
    struct ent *e = calloc(1, sizeof *e);
    if (!e) {
        return opts;
    }
    memcpy(e->md, md, 32);
    e->opts = opts;
    e->refs = 1;
    e->next_md = g_by_md[md_slot(md)];
    g_by_md[md_slot(md)] = e;
    e->next_ptr = g_by_ptr[ptr_slot(opts)];
    g_by_ptr[ptr_slot(opts)] = e;
    g_entries++;
    g_refs++;
    return opts;
}

void wsp_optcache_release(struct wsp_connect_opts *opts)
{
    if (!opts) {
        return;
    }
    struct ent **pp = &g_by_ptr[ptr_slot(opts)];
    while (*pp && (*pp)->opts != opts) {
        pp = &(*pp)->next_ptr;
    }
    struct ent *e = *pp;
    if (!e) {
        wsp_connect_opts_free(opts); /* never shared */
        return;
    }
    g_refs--;
    if (--e->refs > 0) {
        return;
    }
    *pp = e->next_ptr;
    struct ent **pm = &g_by_md[md_slot(e->md)];
    while (*pm != e) {
        pm = &(*pm)->next_md;
    }
    *pm = e->next_md;
    g_entries--;
    wsp_connect_opts_free(e->opts);
    free(e);
}

size_t wsp_optcache_entries(void) { return g_entries; }
size_t wsp_optcache_refs(void) { return g_refs; }
