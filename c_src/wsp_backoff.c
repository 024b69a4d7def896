#include "wsp_backoff.h"

#include <math.h>

void wsp_backoff_default(struct wsp_backoff *b)
{
    b->enabled = 1;
    b->manual = 0;
    b->max_retries = -1;
    b->delay_ms = 1000;
    b->max_delay_ms = 30000;
    b->factor = 2.0;
    b->jitter = 0.1;
    b->jitter_mode = WSP_JITTER_FULL;
    wsp_backoff_default_retry_on(b);
}

void wsp_backoff_default_retry_on(struct wsp_backoff *b)
{
    static const uint16_t codes[] = WSP_CLOSE_CODES_DEFAULT;
    b->retry_on = WSP_FC_DEFAULT;
    (void)wsp_backoff_set_close_retry(b, WSP_CLOSE_RETRY_ONLY, codes,
                                      sizeof codes / sizeof codes[0]);
}

void wsp_backoff_stay_connected_retry_on(struct wsp_backoff *b)
{
    static const uint16_t codes[] = WSP_CLOSE_CODES_OURS;
    b->retry_on = WSP_FC_DEFAULT;
    (void)wsp_backoff_set_close_retry(b, WSP_CLOSE_RETRY_EXCEPT, codes,
                                      sizeof codes / sizeof codes[0]);
}

int wsp_backoff_set_close_retry(struct wsp_backoff *b, enum wsp_close_retry mode,
                                const uint16_t *codes, size_t n)
{
    if (n > WSP_MAX_CLOSE_CODES) {
        return -1;
    }
    b->close_retry = mode;
    b->nclose_codes = (uint16_t)n;
    for (size_t i = 0; i < n; i++) {
        b->close_codes[i] = codes[i];
    }
    int some = mode == WSP_CLOSE_RETRY_ALL || mode == WSP_CLOSE_RETRY_EXCEPT ||
               (mode == WSP_CLOSE_RETRY_ONLY && n > 0);
    if (some) {
        b->retry_on |= WSP_FC_REMOTE_CLOSE;
    } else {
        b->retry_on &= ~(unsigned)WSP_FC_REMOTE_CLOSE;
    }
    return 0;
}

int64_t wsp_backoff_delay(const struct wsp_backoff *b, uint64_t attempt, double rnd)
{
    if (!b->enabled || attempt == 0) {
        return -1;
    }
    if (b->max_retries >= 0 && attempt > (uint64_t)b->max_retries) {
        return -1;
    }
    double d = (double)b->delay_ms;
    double cap = (double)b->max_delay_ms;
    if (b->factor > 1.0) {
        /* factor^(attempt-1), without overflowing for large attempts */
        double e = (double)(attempt - 1);
        double lim = cap > d && d > 0 ? log(cap / d) / log(b->factor) : 0;
        d = e >= lim ? cap : d * pow(b->factor, e);
    }
    if (d > cap && cap > 0) {
        d = cap;
    }
    switch (b->jitter_mode) {
    case WSP_JITTER_FULL:
        d *= rnd;
        break;
    case WSP_JITTER_EQUAL:
        d *= 0.5 + 0.5 * rnd;
        break;
    default:
        if (b->jitter > 0) {
            d *= 1.0 + b->jitter * (2.0 * rnd - 1.0);
        }
        break;
    }
    if (d < 0) {
        d = 0;
    }
    return (int64_t)(d + 0.5);
}

int wsp_backoff_retries(const struct wsp_backoff *b, unsigned fc)
{
    return b->enabled && (b->retry_on & fc) != 0;
}

int wsp_backoff_retries_close(const struct wsp_backoff *b, unsigned code)
{
    if (!wsp_backoff_retries(b, WSP_FC_REMOTE_CLOSE)) {
        return 0;
    }
    int listed = 0;
    for (size_t i = 0; i < b->nclose_codes && i < WSP_MAX_CLOSE_CODES; i++) {
        if (b->close_codes[i] == code) {
            listed = 1;
            break;
        }
    }
    switch (b->close_retry) {
    case WSP_CLOSE_RETRY_ALL: return 1;
    case WSP_CLOSE_RETRY_ONLY: return listed;
    case WSP_CLOSE_RETRY_EXCEPT: return !listed;
    case WSP_CLOSE_RETRY_NONE: return 0;
    }
    return 0;
}

unsigned wsp_backoff_http_class(int status)
{
    if (status == 429) {
        return WSP_FC_HTTP_429;
    }
    if (status >= 500 && status <= 599) {
        return WSP_FC_HTTP_5XX;
    }
    if (status >= 400 && status <= 499) {
        return WSP_FC_HTTP_4XX;
    }
    return WSP_FC_HTTP_OTHER;
}
