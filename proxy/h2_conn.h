/*
 * h2_conn.h - one HTTP/2 client connection over plain TCP (h2c with prior
 * knowledge) on nghttp2, for unary gRPC calls driven by an event loop.
 *
 * kvc's gRPC client (grpc_client.c) sends its plain-HTTP calls through
 * this: one connection per backend, each call a stream on it. nghttp2 does
 * the protocol (framing, HPACK, flow control, SETTINGS, PING, GOAWAY); this
 * module does the socket around it: name resolution off the calling thread,
 * a non-blocking connect with a deadline, reads, and writes coalesced so a
 * call's HEADERS and DATA leave in one send right when it is submitted.
 *
 * A connection is used by one thread at a time (the gRPC client's driver).
 * The callbacks run only inside kvc_h2_conn_io and kvc_h2_conn_flush, and
 * must not call back into the same connection. Nothing here trusts the
 * peer: nghttp2 bounds frames and headers, and body bytes go to the
 * caller's data callback as they come.
 */
#ifndef KVC_H2_CONN_H
#define KVC_H2_CONN_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvc_h2_conn kvc_h2_conn_t;

typedef enum {
    KVC_H2_RESOLVING,  /* looking the host up (a helper thread) */
    KVC_H2_CONNECTING, /* TCP connect in progress */
    KVC_H2_OPEN,       /* takes new streams */
    KVC_H2_CLOSING,    /* the server sent GOAWAY: streams finish, none start */
    KVC_H2_DEAD        /* closed; kvc_h2_conn_error says why */
} kvc_h2_state_t;

/* How a stream ended. */
typedef enum {
    KVC_H2_END_DONE,  /* the server ended it (or reset it with NO_ERROR) */
    KVC_H2_END_RESET, /* reset (by the server, or by us refusing its data); h2_error is the code */
    KVC_H2_END_REFUSED, /* never processed: REFUSED_STREAM, above a GOAWAY's last stream, or
                           the connection was gone before the request was written; safe to
                           send again */
    KVC_H2_END_LOST     /* the connection failed under it after the request went out */
} kvc_h2_end_t;

/* What a stream tells its owner; ud is the pointer given to kvc_h2_conn_submit. */
typedef struct {
    /* One response header or trailer field, ":status" included; not NUL-terminated. */
    void (*field)(void *ud, const char *name, size_t nlen, const char *value, size_t vlen);
    /* Body bytes as they come; nonzero refuses them and resets the stream (CANCEL). */
    int (*data)(void *ud, const uint8_t *p, size_t n);
    /* The stream ended: the last callback for ud. */
    void (*closed)(void *ud, kvc_h2_end_t how, uint32_t h2_error);
} kvc_h2_cb_t;

/* One request: POST path with the extra header fields, body = prefix then
 * body. Everything is borrowed until the stream ends or is cancelled. */
typedef struct {
    const char *path;
    const char *const *fields; /* name, value, name, value, ... (lower-case names) */
    size_t n_fields;           /* pairs */
    const uint8_t *prefix;
    size_t prefix_len;
    const uint8_t *body;
    size_t body_len;
} kvc_h2_req_t;

/* Connection options; zero fields take the defaults shown. */
typedef struct {
    uint32_t connect_timeout_ms; /* resolution + TCP connect; 0 -> 5000 */
    uint32_t stream_window;      /* our SETTINGS_INITIAL_WINDOW_SIZE; 0 -> 8 MiB */
    uint32_t conn_window;        /* our connection window; 0 -> 32 MiB */
} kvc_h2_opts_t;

/*
 * Splits an authority ("host", "host:port", "[v6addr]:port") into host and
 * port (default "80"). KVC_EINVAL when malformed (empty host, bad port,
 * unbalanced brackets), KVC_ERANGE when a part does not fit its buffer.
 */
int kvc_h2_authority_split(const char *authority, char *host, size_t host_cap, char *port,
                           size_t port_cap);

/* Starts a connection to authority (sent as :authority too); NULL when the
 * authority is malformed or memory runs out. opts may be NULL. */
kvc_h2_conn_t *kvc_h2_conn_new(const char *authority, const kvc_h2_opts_t *opts,
                               const kvc_h2_cb_t *cb);

/* Takes over a connected stream socket (made non-blocking here) and opens
 * HTTP/2 on it at once: for tests, fuzzing and callers that connect
 * themselves. On success the connection owns fd (closing it when freed);
 * NULL on failure, fd then untouched. */
kvc_h2_conn_t *kvc_h2_conn_adopt(int fd, const char *authority, const kvc_h2_opts_t *opts,
                                 const kvc_h2_cb_t *cb);

/* Closes the socket and frees everything; runs no callback (the owner
 * forgets its streams itself). NULL is a no-op. */
void kvc_h2_conn_free(kvc_h2_conn_t *c);

kvc_h2_state_t kvc_h2_conn_state(const kvc_h2_conn_t *c);
/* Why the connection died ("" while it lives). */
const char *kvc_h2_conn_error(const kvc_h2_conn_t *c);
/* Whether it died before it was ever open (resolution or connect failed). */
int kvc_h2_conn_never_opened(const kvc_h2_conn_t *c);
/* Streams submitted and not yet closed, cancelled ones included. */
int kvc_h2_conn_streams(const kvc_h2_conn_t *c);

/* The descriptor to poll and the events to wait for (POLLIN, POLLOUT);
 * -1 once dead. */
int kvc_h2_conn_pollfd(const kvc_h2_conn_t *c, short *events);
/* When the connection gives up connecting (monotonic ms; INT64_MAX once open). */
int64_t kvc_h2_conn_deadline(const kvc_h2_conn_t *c);

/* Moves the connection on after a poll: revents for its descriptor (0 if
 * none), now_ms on the monotonic clock (for the connect deadline). Runs
 * callbacks; may leave the connection dead. */
void kvc_h2_conn_io(kvc_h2_conn_t *c, short revents, int64_t now_ms);

/* Starts a stream (state OPEN only); returns its id (> 0), KVC_ESTATE when
 * the connection takes no new streams, KVC_ENOMEM, KVC_EINVAL. The frames
 * leave with the next kvc_h2_conn_flush. */
int32_t kvc_h2_conn_submit(kvc_h2_conn_t *c, const kvc_h2_req_t *req, void *ud);

/* Resets a stream (CANCEL); its callbacks no longer run. */
void kvc_h2_conn_cancel(kvc_h2_conn_t *c, int32_t stream_id);

/* Writes what is pending, as far as the socket takes it; the rest goes
 * when the descriptor turns writable. May run callbacks and leave the
 * connection dead. */
void kvc_h2_conn_flush(kvc_h2_conn_t *c);

#endif
