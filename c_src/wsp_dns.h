/*
 * wsp_dns: asynchronous name resolution with c-ares, driven by the one event
 * loop (c-ares' sockets are adopted into lws; its timeouts are lws timers).
 * Never blocks the loop.
 */
#ifndef WSP_DNS_H
#define WSP_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wsp_loop.h"

#define WSP_DNS_MAX_ADDRS 8

struct wsp_dns_result {
    int status;                 /* 0 ok; else a c-ares status */
    int nxdomain;               /* 1 if the name does not exist */
    const char *error;          /* c-ares' text when status != 0 */
    size_t naddrs;
    struct sockaddr_storage addrs[WSP_DNS_MAX_ADDRS];
    socklen_t addrlens[WSP_DNS_MAX_ADDRS];
};

typedef void (*wsp_dns_cb)(void *arg, const struct wsp_dns_result *res);

struct wsp_dns_req;

int wsp_dns_init(void);
/* Starts a lookup of host (A and AAAA); cb runs later from the loop, once,
 * unless the request is cancelled first. NULL on allocation failure. */
struct wsp_dns_req *wsp_dns_resolve(const char *host, uint16_t port, wsp_dns_cb cb, void *arg);
/* The callback of req will not run. */
void wsp_dns_cancel(struct wsp_dns_req *req);
int wsp_dns_on_io(struct wsp_watch *w, enum wsp_io io);
void wsp_dns_shutdown(void);

#endif
