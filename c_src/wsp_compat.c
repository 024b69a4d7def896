/* Portable replacements for Linux-only calls (see wsp_compat.h). */
#include "wsp_compat.h"

#include <errno.h>
#include <fcntl.h>

#if !WSP_HAVE_SOCK_FLAGS

int wsp_compat_socket(int domain, int type, int protocol)
{
    int flags = type & (SOCK_NONBLOCK | SOCK_CLOEXEC);
    /* (socket): the function, not the macro */
    int fd = (socket)(domain, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), protocol);
    if (fd < 0) {
        return -1;
    }
    int bad = 0;
    if (flags & SOCK_CLOEXEC) {
        bad |= fcntl(fd, F_SETFD, FD_CLOEXEC) < 0;
    }
    if (flags & SOCK_NONBLOCK) {
        int fl = fcntl(fd, F_GETFL);
        bad |= fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0;
    }
#ifdef SO_NOSIGPIPE
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    if (bad) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

#endif

/* ---- random bytes ----------------------------------------------------------- */

int wsp_random_urandom(void *buf, size_t len)
{
    int fd;
    do {
        fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return -1;
    }
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t r = read(fd, p + done, len - done);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            errno = e;
            return -1;
        }
        done += (size_t)r;
    }
    close(fd);
    return 0;
}

#if WSP_HAVE_GETRANDOM
#include <sys/random.h>
#define WSP_RANDOM_NAME "getrandom"

int wsp_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t r = getrandom(p + done, len - done, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && errno == ENOSYS) {
            return wsp_random_urandom(p + done, len - done); /* a kernel before 3.17 */
        }
        if (r <= 0) {
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

#elif defined(__APPLE__) || defined(__OpenBSD__) || defined(__FreeBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__) ||                          \
    (defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 36)))
#include <stdlib.h>
#define WSP_RANDOM_NAME "arc4random_buf"

int wsp_random_bytes(void *buf, size_t len)
{
    arc4random_buf(buf, len); /* cannot fail */
    return 0;
}

#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#define WSP_RANDOM_NAME "getentropy"

int wsp_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        /* getentropy gives at most 256 bytes a call */
        size_t n = len - done > 256 ? 256 : len - done;
        if (getentropy(p + done, n) < 0) {
            return errno == ENOSYS ? wsp_random_urandom(p + done, len - done) : -1;
        }
        done += n;
    }
    return 0;
}

#else
#define WSP_RANDOM_NAME "/dev/urandom"

int wsp_random_bytes(void *buf, size_t len) { return wsp_random_urandom(buf, len); }

#endif

#if defined(__GLIBC__) && !defined(WSP_PORTABLE)
#include <malloc.h>

void wsp_compat_trim_heap(void)
{
    (void)malloc_trim(0);
}
#else
void wsp_compat_trim_heap(void)
{
}
#endif

const char *wsp_random_name(void) { return WSP_RANDOM_NAME; }
