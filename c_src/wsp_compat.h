/*
 * wsp_compat: which OS mechanisms the port program uses, chosen at build
 * time. On Linux the fast paths are the default:
 *
 *   WSP_HAVE_SPLICE     large binary messages socket -> pipe -> BEAM with
 *                       splice(2) (zero-copy); else ordinary reads/writes
 *   WSP_HAVE_EPOLL      stdin/stdout checked with epoll before choosing the
 *                       libuv loop; else fstat (pipes and sockets)
 *   WSP_HAVE_ABSTRACT   events socket names in the abstract namespace
 *                       ('@name'); else a filesystem path only
 *   WSP_HAVE_PIPE_SZ    stdout and the splice pipe sized with F_SETPIPE_SZ
 *   WSP_HAVE_SOCK_FLAGS socket(2) takes SOCK_NONBLOCK | SOCK_CLOEXEC, send(2)
 *                       MSG_NOSIGNAL
 *   WSP_HAVE_GETRANDOM  random bytes (wsp_random_bytes) from getrandom(2);
 *                       else arc4random_buf(3) (macOS, the BSDs, glibc
 *                       2.36+), getentropy(3) (older glibc), /dev/urandom
 *
 * Elsewhere (macOS, the BSDs), or on Linux built with `make WSP_PORTABLE=1`
 * (which defines WSP_PORTABLE), all are 0 and the portable paths below are
 * used: the portable binary imports none of splice, vmsplice, tee, pipe2,
 * accept4, epoll_*, eventfd, signalfd, timerfd_*, getrandom
 * (make portable-check).
 * The event loop itself is libuv (kqueue on macOS and the BSDs, epoll on
 * Linux) through the lws plugin, or lws' poll(2) loop.
 */
#ifndef WSP_COMPAT_H
#define WSP_COMPAT_H

#include <sys/types.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(__linux__) && !defined(WSP_PORTABLE)
#define WSP_HAVE_SPLICE 1
#define WSP_HAVE_EPOLL 1
#define WSP_HAVE_ABSTRACT 1
#define WSP_HAVE_PIPE_SZ 1
#define WSP_HAVE_SOCK_FLAGS 1
#define WSP_HAVE_GETRANDOM 1
#else
#define WSP_HAVE_SPLICE 0
#define WSP_HAVE_EPOLL 0
#define WSP_HAVE_ABSTRACT 0
#define WSP_HAVE_PIPE_SZ 0
#define WSP_HAVE_SOCK_FLAGS 0
#define WSP_HAVE_GETRANDOM 0
#endif

/* "linux" or "portable": which paths this binary was built with (--version) */
#if WSP_HAVE_SPLICE
#define WSP_BUILD_FLAVOUR "linux"
#else
#define WSP_BUILD_FLAVOUR "portable"
#endif

#if !WSP_HAVE_SOCK_FLAGS
/* socket(2) with SOCK_NONBLOCK / SOCK_CLOEXEC in type: the flags are set
 * with fcntl afterwards (macOS has neither flag), and SO_NOSIGPIPE where it
 * exists. MSG_NOSIGNAL is 0: the program ignores SIGPIPE (main). */
#ifndef SOCK_NONBLOCK
#define SOCK_NONBLOCK 0x20000000
#endif
#ifndef SOCK_CLOEXEC
#define SOCK_CLOEXEC 0x10000000
#endif
#undef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
int wsp_compat_socket(int domain, int type, int protocol);
#define socket(d, t, p) wsp_compat_socket(d, t, p)
#endif

/* Gives the heap's free pages back to the kernel: glibc keeps the memory of
 * freed handshake state (URL parts, TLS handshake buffers) between the
 * long-lived per-connection structs, where its automatic trim (top of the
 * heap only) never reaches. malloc_trim(0) with glibc; elsewhere a no-op. */
void wsp_compat_trim_heap(void);

/* Fills buf with len random bytes from the OS (see WSP_HAVE_GETRANDOM):
 * 0, or -1 with errno set. wsp_random_name() says which source this
 * build uses ("getrandom", "arc4random_buf", "getentropy", "/dev/urandom"). */
int wsp_random_bytes(void *buf, size_t len);
const char *wsp_random_name(void);
/* The last resort, in every build (so the tests run it): reads
 * /dev/urandom. 0, or -1 with errno set. */
int wsp_random_urandom(void *buf, size_t len);

#endif
