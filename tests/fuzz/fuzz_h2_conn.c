/*
 * libFuzzer target for proxy/h2_conn.c: the input is what a hostile HTTP/2
 * server sends. The client end of a socketpair is adopted, one to four
 * requests are submitted and flushed, and then the input is written to the
 * server end, a chunk at a time, while kvc_h2_conn_io reads it, until it is
 * all consumed or the connection is dead. What the client writes back is
 * read and dropped.
 *
 * Byte 0 chooses: bit 0 an empty server SETTINGS frame before the rest (so
 * plain inputs get past the preface), bits 1-2 the number of requests less
 * one, bit 3 request bodies larger than the peer's first window, bit 4 a
 * data callback that refuses its second chunk, bit 5 cancelling the last
 * stream after the first chunk, bit 6 small windows of our own, bit 7
 * closing the server end at the end (before one more request). In byte 1,
 * bits 0-6 are the chunk size in units of 61 bytes (0: all at once) and
 * bit 7 a slow server that reads 4 KiB of ours per turn, so our output
 * backs up. The rest is the server's bytes.
 *
 * Must never crash or leak, and the callbacks must keep their contract: no
 * callback after closed or after a cancel, closed at most once, and every
 * stream left open when the connection dies closed by then.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "h2_conn.h"

#define S_CALLS 5 /* up to four at the start, one more at the end */
#define S_BODY (256u << 10)
#define S_SPINS 4096

typedef struct {
    char fields[512]; /* "name: value\n", cut to fit */
    size_t fields_len;
    int n_fields;
    int status; /* from ":status", or -1 */
    size_t data_bytes;
    uint32_t data_sum;
    int n_data;
    int refuse_at; /* refuse the n-th data chunk (0: never) */
    int submitted;
    int cancelled;
    int closed;
    kvc_h2_end_t how;
} s_call_t;

static s_call_t s_calls[S_CALLS];
static uint8_t s_body[S_BODY];

/* Any callback for a call that was closed or cancelled breaks the contract. */
static void s_check_live(const s_call_t *k)
{
    if (!k->submitted || k->closed || k->cancelled)
        abort();
}

static void s_on_field(void *ud, const char *name, size_t nlen, const char *value, size_t vlen)
{
    s_call_t *k = ud;
    s_check_live(k);
    k->n_fields++;
    size_t room = sizeof k->fields - k->fields_len;
    if (nlen + vlen + 3 <= room) {
        memcpy(k->fields + k->fields_len, name, nlen);
        memcpy(k->fields + k->fields_len + nlen, ": ", 2);
        memcpy(k->fields + k->fields_len + nlen + 2, value, vlen);
        k->fields[k->fields_len + nlen + 2 + vlen] = '\n';
        k->fields_len += nlen + vlen + 3;
    }
    if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
        k->status = 0;
        for (size_t i = 0; i < vlen && i < 3; i++)
            k->status = k->status * 10 + (value[i] - '0');
    }
}

static int s_on_data(void *ud, const uint8_t *p, size_t n)
{
    s_call_t *k = ud;
    s_check_live(k);
    k->n_data++;
    k->data_bytes += n;
    for (size_t i = 0; i < n; i++)
        k->data_sum = k->data_sum * 31 + p[i];
    return k->refuse_at && k->n_data == k->refuse_at;
}

static void s_on_closed(void *ud, kvc_h2_end_t how, uint32_t h2_error)
{
    s_call_t *k = ud;
    s_check_live(k);
    /* The code agrees with how it ended (a connection's death has none). */
    int ok = how == KVC_H2_END_DONE      ? h2_error == 0
             : how == KVC_H2_END_RESET   ? h2_error != 0 && h2_error != 7
             : how == KVC_H2_END_REFUSED ? h2_error == 0 || h2_error == 7
             : how == KVC_H2_END_LOST    ? h2_error == 0
                                         : 0;
    if (!ok)
        abort();
    k->closed = 1;
    k->how = how;
}

static const kvc_h2_cb_t s_cb = {s_on_field, s_on_data, s_on_closed};

/* Reads and drops what the client sent: all of it, or 4 KiB when slow. */
static void s_drain(int fd, int slow)
{
    uint8_t buf[4096];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0 && !slow) {
    }
}

/* Submits call i: POST with gRPC fields, a 5-byte prefix and a body. */
static int32_t s_submit(kvc_h2_conn_t *c, int i, size_t body_len)
{
    static const char *const fields[] = {"content-type", "application/grpc", "te", "trailers"};
    static const uint8_t prefix[5] = {0, 0, 0, 0, 0};
    kvc_h2_req_t r = {
        .path = "/pkg.Service/Method",
        .fields = fields,
        .n_fields = 2,
        .prefix = prefix,
        .prefix_len = sizeof prefix,
        .body = s_body,
        .body_len = body_len,
    };
    return kvc_h2_conn_submit(c, &r, &s_calls[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t chunk = (size_t)(data[1] & 0x7f) * 61;
    int slow = (data[1] & 0x80) != 0;
    const uint8_t *in = data + 2;
    size_t len = size - 2;
    static const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};

    if (s_body[1] == 0)
        for (size_t i = 0; i < S_BODY; i++)
            s_body[i] = (uint8_t)(i * 7 + 1);
    memset(s_calls, 0, sizeof s_calls);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) != 0)
        abort();
    kvc_h2_opts_t small = {.stream_window = 1024, .conn_window = 65535};
    kvc_h2_conn_t *c =
        kvc_h2_conn_adopt(sp[1], "backend:50051", flags & 0x40 ? &small : NULL, &s_cb);
    if (!c)
        abort();
    int cfd = sp[1], sfd = sp[0];

    int n_calls = 1 + ((flags >> 1) & 3);
    int32_t last_id = 0;
    for (int i = 0; i < n_calls; i++) {
        s_calls[i].status = -1;
        s_calls[i].refuse_at = flags & 0x10 ? 2 : 0;
        s_calls[i].submitted = 1;
        int32_t id = s_submit(c, i, flags & 0x08 ? S_BODY : (size_t)i * 7);
        if (id != 1 + 2 * i)
            abort();
        last_id = id;
    }
    if (kvc_h2_conn_streams(c) != n_calls)
        abort();
    kvc_h2_conn_flush(c);

    if (flags & 0x01) {
        if (send(sfd, settings, sizeof settings, MSG_NOSIGNAL) != (ssize_t)sizeof settings)
            abort();
    }
    size_t off = 0;
    int cancel_pending = (flags & 0x20) != 0;
    for (int spin = 0; spin < S_SPINS && kvc_h2_conn_state(c) != KVC_H2_DEAD; spin++) {
        if (off < len) {
            size_t n = chunk && chunk < len - off ? chunk : len - off;
            ssize_t w = send(sfd, in + off, n, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
        }
        kvc_h2_conn_io(c, POLLIN, 0);
        s_drain(sfd, slow);
        if (cancel_pending) {
            cancel_pending = 0;
            s_call_t *k = &s_calls[n_calls - 1];
            kvc_h2_conn_cancel(c, last_id);
            if (!k->closed)
                k->cancelled = 1;
        }
        /* Done when the input is in and read, and our output is out. */
        int unread = 0;
        short ev = 0;
        if (off == len && kvc_h2_conn_pollfd(c, &ev) >= 0 && !(ev & POLLOUT) &&
            (ioctl(cfd, FIONREAD, &unread) != 0 || unread == 0))
            break;
    }

    /* The server goes away; the connection notices when it writes or reads. */
    if (flags & 0x80) {
        s_drain(sfd, 0);
        close(sfd);
        sfd = -1;
    }
    /* One more call: only an open connection takes it. */
    kvc_h2_state_t st = kvc_h2_conn_state(c);
    s_calls[4].status = -1;
    s_calls[4].submitted = 1;
    int32_t id = s_submit(c, 4, 3);
    if (st == KVC_H2_OPEN ? id <= last_id || id % 2 == 0 : id != KVC_ESTATE)
        abort();
    if (id < 0)
        s_calls[4].submitted = 0;
    kvc_h2_conn_flush(c);
    kvc_h2_conn_io(c, POLLIN | (flags & 0x80 ? POLLHUP : 0), 0);
    if ((flags & 0x80) && kvc_h2_conn_state(c) != KVC_H2_DEAD)
        abort();
    short ev = 0;
    int fd = kvc_h2_conn_pollfd(c, &ev);
    if (kvc_h2_conn_state(c) == KVC_H2_DEAD) {
        /* Every stream the connection still had was told. */
        if (fd != -1 || ev != 0 || kvc_h2_conn_streams(c) != 0 || kvc_h2_conn_error(c)[0] == '\0')
            abort();
        for (int i = 0; i < S_CALLS; i++)
            if (s_calls[i].submitted && !s_calls[i].cancelled && !s_calls[i].closed)
                abort();
    } else {
        int open = 0, live = 0;
        for (int i = 0; i < S_CALLS; i++) {
            open += s_calls[i].submitted && !s_calls[i].closed;
            live += s_calls[i].submitted && !s_calls[i].closed && !s_calls[i].cancelled;
        }
        /* Cancelled streams count until nghttp2 closes them. */
        int n = kvc_h2_conn_streams(c);
        if (fd != cfd || n < live || n > open || kvc_h2_conn_error(c)[0] != '\0')
            abort();
    }
    kvc_h2_conn_free(c);
    if (sfd >= 0)
        close(sfd);
    return 0;
}
