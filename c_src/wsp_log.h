/* Logging to stderr only: stdout is the channel to the BEAM. */
#ifndef WSP_LOG_H
#define WSP_LOG_H

#include <stdio.h>

extern int wsp_log_level; /* 0 = errors, 1 = warnings (default), 2 = info, 3 = debug */

#define WSP_LOG(lvl, tag, ...)                                                \
    do {                                                                      \
        if (wsp_log_level >= (lvl)) {                                         \
            fprintf(stderr, "ws_port " tag ": " __VA_ARGS__);                 \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

#define ERR(...) WSP_LOG(0, "error", __VA_ARGS__)
#define WARN(...) WSP_LOG(1, "warning", __VA_ARGS__)
#define INFO(...) WSP_LOG(2, "info", __VA_ARGS__)
#define DEBUG(...) WSP_LOG(3, "debug", __VA_ARGS__)

#endif
