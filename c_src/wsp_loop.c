#include "wsp_loop.h"

#include <string.h>

#include "wsp_cli.h"
#include "wsp_conn.h"
#include "wsp_dns.h"
#include "wsp_link.h"
#include "wsp_log.h"

int wsp_log_level = 1;
struct lws_context *wsp_ctx;
struct lws_vhost *wsp_vhost;

static struct {
    struct lws *cur_wsi;     /* the wsi whose callback is running */
    int kill_cur;            /* close cur_wsi when its callback returns */
} G;


static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    enum wsp_io io;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE: io = WSP_IO_READABLE; break;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE: io = WSP_IO_WRITABLE; break;
    case LWS_CALLBACK_RAW_CLOSE_FILE: io = WSP_IO_CLOSED; break;
    default: return 0;
    }
    struct wsp_watch *w = lws_get_opaque_user_data(wsi);
    if (!w) {
        /* detached by wsp_loop_close: lws is closing it */
        return io == WSP_IO_CLOSED ? 0 : -1;
    }
    if (io == WSP_IO_CLOSED) {
        lws_sul_cancel(&w->rearm);
        w->wsi = NULL;
    }
    struct lws *prev = G.cur_wsi;
    int prev_kill = G.kill_cur;
    G.cur_wsi = wsi;
    G.kill_cur = 0;
    int r = 0;
    switch (w->kind) {
    case WSP_W_STDIN:
    case WSP_W_STDOUT: r = wsp_link_on_io(w, wsi, io); break;
    case WSP_W_CONN: r = wsp_conn_on_io(w, wsi, io); break;
    case WSP_W_DNS: r = wsp_dns_on_io(w, wsi, io); break;
    case WSP_W_CLI: r = wsp_cli_on_io(w, wsi, io); break;
    }
    int kill = G.kill_cur;
    G.cur_wsi = prev;
    G.kill_cur = prev_kill;
    if (io == WSP_IO_CLOSED) {
        return 0;
    }
    return (kill || r < 0) ? -1 : 0;
}

struct lws *wsp_loop_adopt(int fd, struct wsp_watch *w)
{
    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = wsp_vhost;
    d.type = LWS_ADOPT_RAW_FILE_DESC;
    d.fd.filefd = fd;
    d.vh_prot_name = "ws-port";
    d.opaque = w;
    w->wsi = lws_adopt_descriptor_vhost_via_info(&d);
    return w->wsi;
}

static void on_rearm(lws_sorted_usec_list_t *sul)
{
    struct wsp_watch *w = lws_container_of(sul, struct wsp_watch, rearm);
    if (w->wsi) {
        lws_callback_on_writable(w->wsi);
    }
}

void wsp_loop_want_write(struct lws *wsi)
{
    struct wsp_watch *w = lws_get_opaque_user_data(wsi);
    if (!w) {
        return;
    }
    if (wsi == G.cur_wsi) {
        /* lws clears POLLOUT after a writable callback returns: a request
         * made inside any callback of this wsi is re-made from a timer */
        lws_sul_schedule(wsp_ctx, 0, &w->rearm, on_rearm, 0);
    }
    lws_callback_on_writable(wsi);
}

void wsp_loop_want_read(struct lws *wsi, int on)
{
    lws_rx_flow_control(wsi, on ? 1 : 0);
}

void wsp_loop_close(struct wsp_watch *w)
{
    struct lws *wsi = w->wsi;
    lws_sul_cancel(&w->rearm);
    w->wsi = NULL;
    if (!wsi) {
        return;
    }
    lws_set_opaque_user_data(wsi, NULL);
    if (wsi == G.cur_wsi) {
        G.kill_cur = 1;
    } else {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

int wsp_loop_init(void)
{
    static const struct lws_protocols protocols[] = {
        {"ws-port", on_lws, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.pt_serv_buf_size = 256 * 1024;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    wsp_ctx = lws_create_context(&info);
    if (!wsp_ctx) {
        return -1;
    }
    info.vhost_name = "ws-port";
    wsp_vhost = lws_create_vhost(wsp_ctx, &info);
    if (!wsp_vhost) {
        lws_context_destroy(wsp_ctx);
        wsp_ctx = NULL;
        return -1;
    }
    return 0;
}

void wsp_loop_destroy(void)
{
    if (wsp_ctx) {
        lws_context_destroy(wsp_ctx);
        wsp_ctx = NULL;
        wsp_vhost = NULL;
    }
}
