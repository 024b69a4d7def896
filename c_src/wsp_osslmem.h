/*
 * wsp_osslmem: the allocator OpenSSL uses in the port program (issue 16).
 *
 * An idle TLS connection holds some 110 small OpenSSL allocations (the
 * parsed peer certificate, its key, the session, locks, cipher contexts),
 * most under 256 bytes. glibc's malloc adds 8 bytes of header to each and
 * rounds to 16 (at least 32): about 1.3 KiB per connection. Small
 * allocations here come from 64 KiB chunks of one size each, with no
 * header: sizes are rounded to 8 bytes up to 64, to 16 bytes up to 256.
 * Larger ones go to malloc.
 *
 * Alignment: a slot of a size that is a multiple of 16 is 16-aligned; the
 * sizes 8, 24, 40 and 56 are 8-aligned (nothing that needs 16-byte
 * alignment has such a size: sizeof is a multiple of alignof).
 *
 * Chunks come from one reserved range of address space (so a pointer's
 * origin is a comparison); a chunk whose slots are all free goes back to
 * the OS (its pages dropped) unless it is its size's last.
 *
 * Not installed (OpenSSL keeps using malloc) in sanitizer builds, so that
 * ASan keeps watching OpenSSL's heap, when WS_PORT_OPENSSL_MALLOC=libc is
 * set, or if OpenSSL allocated before wsp_osslmem_install.
 */
#ifndef WSP_OSSLMEM_H
#define WSP_OSSLMEM_H

#include <stddef.h>

/* Hands the functions below to OpenSSL (CRYPTO_set_mem_functions): 1 if
 * done, 0 if not (see above). Call first thing in main. */
int wsp_osslmem_install(void);

/* The allocator itself (thread-safe). */
void *wsp_osslmem_malloc(size_t n);
void *wsp_osslmem_realloc(void *p, size_t n);
void wsp_osslmem_free(void *p);

/* Chunks in use and small allocations live (for tests). */
void wsp_osslmem_stats(size_t *chunks, size_t *live);

#endif
