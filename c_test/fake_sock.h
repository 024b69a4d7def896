/*
 * fake_sock: stream sockets in memory, for the state-machine fuzzer
 * (c_test/fuzz_conn.c). The harness is linked with -Wl,--wrap for socket,
 * connect, setsockopt, getsockopt, send, recv, shutdown and close, so the
 * system calls wsp_conn.c makes (unchanged) land here: for an fd of this
 * layer (FAKE_SOCK_FD_BASE and up) they act on a socket pair in memory,
 * any other fd goes on to the real call (libFuzzer's own files).
 *
 * The semantics are those of the AF_UNIX stream sockets the harness used
 * before (Linux, as af_unix.c has them):
 *  - connect() to server n (an AF_UNIX address "\0fuzz.N") completes at
 *    once and queues the server end on n's accept queue (at most
 *    FAKE_SOCK_BACKLOG; beyond it connect fails with EAGAIN);
 *  - each direction holds at most FAKE_SOCK_CAP bytes: send() takes what
 *    fits, EAGAIN when nothing does; recv() hands out what is there up to
 *    the length asked, EAGAIN when nothing is;
 *  - shutdown(SHUT_WR): the peer reads what is left, then 0 (EOF); send()
 *    after it is EPIPE;
 *  - close(): the peer reads what is left, then 0; if the closed end had
 *    unread data, the peer's next read after the data is ECONNRESET (a
 *    reset); the peer's send() is EPIPE;
 *  - readiness (fake_sock_revents) as unix_poll: POLLIN with data or when
 *    the peer's write side is shut, POLLHUP when both directions are shut,
 *    POLLOUT while the peer can take more (or a send would fail at once),
 *    POLLERR with an error pending.
 * No system call is made for a fake fd: an execution of fuzz_conn is
 * bounded by the state machine's own work, not by kernel entries.
 */
#ifndef FAKE_SOCK_H
#define FAKE_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define FAKE_SOCK_FD_BASE 0x40000
#define FAKE_SOCK_MAX 64
#define FAKE_SOCK_CAP ((size_t)1 << 18) /* 256 KiB per direction */
#define FAKE_SOCK_BACKLOG 8
#define FAKE_SOCK_SERVERS 8

/* Is fd one of this layer's (open or not)? */
int fake_sock_is(int fd);
/* poll(2)-style revents for an open fake fd (POLLNVAL if not open). */
short fake_sock_revents(int fd, short events);
/* The address that connects to server n (1..FAKE_SOCK_SERVERS). */
socklen_t fake_sock_addr(int n, void *sa, socklen_t cap);
/* Server n's side: the next queued connection's server end (its fd), -1
 * if none; how many are queued. */
int fake_sock_accept(int n);
int fake_sock_backlog(int n);
/* The calls themselves, for the harness's server side (same as the
 * wrapped system calls on a fake fd; MSG flags ignored). */
ssize_t fake_sock_send(int fd, const void *p, size_t n);
ssize_t fake_sock_recv(int fd, void *p, size_t n);
int fake_sock_close(int fd);
/* Fake fds open (queued server ends included). */
size_t fake_sock_open(void);
/* Closes every fake fd and empties the accept queues. */
void fake_sock_reset(void);

#endif
