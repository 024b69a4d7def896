/*
 * wsp_backoff: the reconnection policy, pure. Which failures are retried,
 * and how long to wait before retry number `attempt`.
 */
#ifndef WSP_BACKOFF_H
#define WSP_BACKOFF_H

#include <stdint.h>

/* Failure classes (bit flags), for retry_on. */
enum wsp_failure_class {
    WSP_FC_NETWORK = 1 << 0,      /* refused, reset, eof, unreachable, DNS */
    WSP_FC_TIMEOUT = 1 << 1,      /* connect_timeout, idle_timeout */
    WSP_FC_HTTP_5XX = 1 << 2,     /* upgrade refused with 5xx */
    WSP_FC_HTTP_429 = 1 << 3,     /* upgrade refused with 429 */
    WSP_FC_HTTP_4XX = 1 << 4,     /* other 4xx (401, 403, 404, ...) */
    WSP_FC_TLS = 1 << 5,          /* certificate or handshake failure */
    WSP_FC_PROTOCOL = 1 << 6,     /* the server broke RFC 6455 */
    WSP_FC_REMOTE_CLOSE = 1 << 7, /* the server sent a close frame */
    WSP_FC_HTTP_OTHER = 1 << 8,   /* 1xx/2xx/3xx instead of 101, bad upgrade */
};

#define WSP_FC_DEFAULT                                                          \
    (WSP_FC_NETWORK | WSP_FC_TIMEOUT | WSP_FC_HTTP_5XX | WSP_FC_HTTP_429 |      \
     WSP_FC_PROTOCOL | WSP_FC_REMOTE_CLOSE)

struct wsp_backoff {
    int enabled;            /* 0: a lost connection is final */
    int manual;             /* 1: ask the BEAM before each retry */
    int64_t max_retries;    /* -1 = infinity */
    uint32_t delay_ms;      /* first delay */
    uint32_t max_delay_ms;  /* cap */
    double factor;          /* 1 = constant */
    double jitter;          /* fraction: 0.1 = +-10% */
    unsigned retry_on;      /* WSP_FC_* */
};

/* The default policy: exponential from 1 s, factor 2, cap 30 s, jitter 0.1,
 * infinite retries, WSP_FC_DEFAULT. */
void wsp_backoff_default(struct wsp_backoff *b);

/* Delay in ms before retry number attempt (1 = the first retry), with rnd
 * uniform in [0, 1) for the jitter; -1 when retries are exhausted or off. */
int64_t wsp_backoff_delay(const struct wsp_backoff *b, uint64_t attempt, double rnd);

/* 1 if a failure of class fc is retried under b. */
int wsp_backoff_retries(const struct wsp_backoff *b, unsigned fc);

/* The class of an HTTP status refusing the upgrade. */
unsigned wsp_backoff_http_class(int status);

#endif
