/*
 * wsp_backoff: the reconnection policy, pure. Which failures are retried,
 * and how long to wait before retry number `attempt`.
 */
#ifndef WSP_BACKOFF_H
#define WSP_BACKOFF_H

#include <stddef.h>
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
    WSP_FC_REMOTE_CLOSE = 1 << 7, /* the server sent a close frame: set when
                                     some are retried; which ones, by their
                                     code: close_retry (wsp_backoff_retries_close) */
    WSP_FC_HTTP_OTHER = 1 << 8,   /* 1xx/2xx/3xx instead of 101, bad upgrade */
};

#define WSP_FC_DEFAULT                                                          \
    (WSP_FC_NETWORK | WSP_FC_TIMEOUT | WSP_FC_HTTP_5XX | WSP_FC_HTTP_429 |      \
     WSP_FC_PROTOCOL | WSP_FC_REMOTE_CLOSE)

/* Which server closes are retried, by close code. A close frame without a
 * code counts as 1005, as it is reported ({remote, 1005, <<>>}). */
enum wsp_close_retry {
    WSP_CLOSE_RETRY_NONE = 0, /* none */
    WSP_CLOSE_RETRY_ALL,      /* every one */
    WSP_CLOSE_RETRY_ONLY,     /* those with a code in close_codes */
    WSP_CLOSE_RETRY_EXCEPT,   /* every one but those with a code in close_codes */
};

#define WSP_MAX_CLOSE_CODES 64

/* connect/2's default: the server is going away or restarting, or failed
 * (1001, 1011, 1012, 1013, 1014), or gave no code (1005; 1006 never comes
 * in a frame but is named for clarity). 1000 and the rest are final. */
#define WSP_CLOSE_CODES_DEFAULT {1001, 1005, 1006, 1011, 1012, 1013, 1014}
/* The long-lived layers' policy ("stay_connected"): every server close but
 * the ones a server sends about what WE sent (RFC 6455 7.4.1): 1002
 * protocol error, 1003 unacceptable data type, 1007 invalid payload data,
 * 1009 message too big. Retrying those would send the same again. */
#define WSP_CLOSE_CODES_OURS {1002, 1003, 1007, 1009}

/* How the wait before a retry is drawn around the policy's delay d (the
 * exponential delay, capped at max_delay). */
enum wsp_jitter_mode {
    WSP_JITTER_SPREAD = 0, /* d +- jitter * d (jitter 0: exactly d) */
    WSP_JITTER_FULL,       /* uniform in [0, d] ("full jitter"): the default */
    WSP_JITTER_EQUAL,      /* uniform in [d/2, d] ("equal jitter") */
};

struct wsp_backoff {
    int enabled;            /* 0: a lost connection is final */
    int manual;             /* 1: ask the BEAM before each retry */
    int64_t max_retries;    /* -1 = infinity */
    uint32_t delay_ms;      /* first delay */
    uint32_t max_delay_ms;  /* cap */
    double factor;          /* 1 = constant */
    double jitter;          /* WSP_JITTER_SPREAD's fraction: 0.1 = +-10% */
    unsigned retry_on;      /* WSP_FC_* */
    enum wsp_close_retry close_retry; /* which server closes (WSP_FC_REMOTE_CLOSE) */
    uint16_t nclose_codes;
    uint16_t close_codes[WSP_MAX_CLOSE_CODES];
    uint8_t jitter_mode;    /* enum wsp_jitter_mode (in the struct's padding) */
};

/* The default policy: exponential from 1 s, factor 2, cap 30 s, full jitter
 * (each wait uniform in [0, d]: a fleet that lost its server at once does
 * not come back at once), infinite retries, wsp_backoff_default_retry_on. */
void wsp_backoff_default(struct wsp_backoff *b);

/* Sets only what is retried to connect/2's default: WSP_FC_DEFAULT, and
 * server closes with a code of WSP_CLOSE_CODES_DEFAULT. */
void wsp_backoff_default_retry_on(struct wsp_backoff *b);

/* Sets only what is retried to the long-lived layers' policy
 * (stay_connected): WSP_FC_DEFAULT, and every server close but those with a
 * code of WSP_CLOSE_CODES_OURS. */
void wsp_backoff_stay_connected_retry_on(struct wsp_backoff *b);

/* Sets which server closes are retried (mode WSP_CLOSE_RETRY_*, n codes;
 * WSP_FC_REMOTE_CLOSE in retry_on follows). Returns 0, or -1 if n is more
 * than WSP_MAX_CLOSE_CODES (nothing changed). */
int wsp_backoff_set_close_retry(struct wsp_backoff *b, enum wsp_close_retry mode,
                                const uint16_t *codes, size_t n);

/* Delay in ms before retry number attempt (1 = the first retry), with rnd
 * uniform in [0, 1) for the jitter (jitter_mode); -1 when retries are
 * exhausted or off. */
int64_t wsp_backoff_delay(const struct wsp_backoff *b, uint64_t attempt, double rnd);

/* 1 if a failure of class fc is retried under b. For WSP_FC_REMOTE_CLOSE:
 * whether any server close is; ask wsp_backoff_retries_close about one. */
int wsp_backoff_retries(const struct wsp_backoff *b, unsigned fc);

/* 1 if a close frame from the server with this code (1005: none) is
 * retried under b. */
int wsp_backoff_retries_close(const struct wsp_backoff *b, unsigned code);

/* The class of an HTTP status refusing the upgrade. */
unsigned wsp_backoff_http_class(int status);

#endif
