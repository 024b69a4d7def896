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

ssize_t wsp_compat_getrandom(void *buf, size_t len, unsigned int flags)
{
    (void)flags;
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        /* getentropy gives at most 256 bytes a call */
        size_t n = len - done > 256 ? 256 : len - done;
        if (getentropy(p + done, n) < 0) {
            return done > 0 ? (ssize_t)done : -1;
        }
        done += n;
    }
    return (ssize_t)done;
}

#else

/* ISO C forbids an empty translation unit */
typedef int wsp_compat_unused;

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
