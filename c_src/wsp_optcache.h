/*
 * wsp_optcache: one struct wsp_connect_opts shared by every connection whose
 * connect command carried byte-identical URL and options (the external term
 * format after the id), so 10,000 connections made alike keep one copy of
 * their options (URL, headers, TLS, retry, proxy, compression) instead of
 * 10,000. Identity is the SHA-256 of those bytes; the options are read-only
 * once a connection holds them (nothing writes to c->opts).
 */
#ifndef WSP_OPTCACHE_H
#define WSP_OPTCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "wsp_proto.h"

/* Returns the shared options for key (taking one reference): opts itself
 * when none is cached yet (it becomes the cached one), or the cached copy
 * (then opts is freed). Out of memory: opts itself, not shared (release
 * frees it). Never NULL for a non-NULL opts. */
struct wsp_connect_opts *wsp_optcache_intern(struct wsp_connect_opts *opts, const uint8_t *key,
                                             size_t keylen);

/* The offset and length of a CONNECT packet's key (what follows the id in
 * {connect, Id, Url, Opts}); -1 if the packet is not such a term. */
int wsp_optcache_connect_key(const uint8_t *packet, size_t len, size_t *off);

/* Drops one reference: frees the options with the last one, and options
 * that were never interned (wsp_connect_opts_free) at once. NULL is a no-op. */
void wsp_optcache_release(struct wsp_connect_opts *opts);

/* Distinct option sets cached, and references held (for tests). */
size_t wsp_optcache_entries(void);
size_t wsp_optcache_refs(void);

#endif
