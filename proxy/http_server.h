/*
 * http_server.h - the proxy's HTTP front: libmicrohttpd driven by one event
 * loop thread, whole bodies handed to one handler function, bounded by a
 * maximum size.
 *
 * Handlers are written as blocking code (a predict waits for its model
 * server, for seconds with a big model). A request the inline_ok hook
 * accepts (small, quick to decode) runs in a fiber on the loop thread: when
 * its gRPC call would block, the fiber yields and the loop serves other
 * connections meanwhile (the loop drives the gRPC engine too, so a small
 * request costs no thread switch at all). Every other request runs on a
 * thread of its own while its connection is suspended. Either way a slow
 * call holds up only the connection it came on, never a health probe or a
 * /metrics scrape on another connection.
 *
 * The server owns sockets and threads and nothing else: routing, decoding
 * and answering are the handler's. Bodies over the limit are answered 413
 * without calling the handler; a handler that fails to answer yields 500.
 */
#ifndef KVC_HTTP_SERVER_H
#define KVC_HTTP_SERVER_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvc_http_server kvc_http_server_t;

#define KVC_HTTP_HOOK_FDS 4 /* descriptors a loop hook may have polled */

/* One request; every pointer is valid only during the handler call. */
typedef struct {
    const char *method;
    const char *path;                    /* without the query string */
    const char *content_type;            /* NULL when absent */
    const char *accept;                  /* NULL when absent */
    const char *inference_header_length; /* KServe binary extension, or NULL */
    const uint8_t *body;                 /* body_len bytes, followed by a NUL byte */
    size_t body_len;
    void *conn; /* opaque; for kvc_http_header() */
} kvc_http_req_t;

/* The handler's answer. body is initialised empty with the server's
 * maximum response size; the server sends it and frees it. */
typedef struct {
    int status;
    char content_type[96];
    kvc_buf_t body;
    char header_name[64]; /* one optional extra header, "" for none */
    char header_value[64];
    /* Where the request was answered, for clients and tests: sent as
     * Kvc-Served-By (the site) and Kvc-Route ("local", "forwarded",
     * "retried") when not "". */
    char served_by[64];
    char route[16];
} kvc_http_resp_t;

typedef void (*kvc_http_handler_fn)(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp);

typedef struct {
    size_t max_body;          /* request bodies above this get 413 */
    size_t max_response;      /* the handler's body buffer maximum */
    unsigned max_connections; /* open connections (default 1024) */
    unsigned timeout_s;       /* idle connection timeout (default 30) */
    /* 1 if req may run in a fiber on the loop thread: the handler must then
     * not block except in kvc_grpc_call on `engine`. NULL: none may. */
    int (*inline_ok)(void *arg, const kvc_http_req_t *req);
    /* The gRPC client the loop drives (kvc_grpc_client_own), or NULL. With
     * it, a client hanging up while its request waits ends the request's
     * calls on it (CANCELLED): the handler's fiber or thread carries the
     * request's cancel flag (kvc_grpc_cancel_flag_set). */
    struct kvc_grpc_client *engine;
    /* A module that serves on the loop thread too (the forwarding server
     * and client): hook(hook_arg) runs on the loop thread at every turn
     * (until the server stops), and the loop also wakes when one of
     * hook_fds[0..n_hook_fds) is readable. It may start fibers
     * (kvc_http_loop_spawn). It returns the longest the loop may wait
     * before calling it again, in ms: -1 no limit, 0 at once. */
    int (*hook)(void *arg);
    void *hook_arg;
    int hook_fds[KVC_HTTP_HOOK_FDS];
    int n_hook_fds;
    int pin;  /* 1: the loop thread runs on CPU cpu only */
    int cpu;
} kvc_http_opts_t;

/*
 * Starts serving on listen ("HOST:PORT", port 0 = any free port). The
 * handler runs concurrently: in fibers on the loop thread (inline_ok) and
 * on request threads. NULL on failure with err set.
 */
kvc_http_server_t *kvc_http_server_new(const char *listen, const kvc_http_opts_t *opts,
                                       kvc_http_handler_fn handler, void *arg, kvc_err_t *err);

/* The bound port (useful with port 0). */
uint16_t kvc_http_server_port(const kvc_http_server_t *self);

/* Waits for the requests in progress to end, stops the loop (handing the
 * engine back to its callers), closes the socket, nulls *self_p. */
void kvc_http_server_destroy(kvc_http_server_t **self_p);

/*
 * From a hook, on the loop thread: runs fn(arg) in a fiber on the loop, as
 * an inline request's handler runs (it must not block except in gRPC calls
 * on the engine, or kvc_grpc_ext_wait); the loop does not stop before it
 * has returned. KVC_ESTATE when not called on a loop thread, KVC_ENOMEM
 * without memory for a fiber (fn is not called).
 */
int kvc_http_loop_spawn(void (*fn)(void *arg), void *arg);

/* Returns a request header's value (NULL when absent); valid during the call. */
const char *kvc_http_header(const kvc_http_req_t *req, const char *name);

/* Collects up to max values of query argument key (e.g. every "match[]")
 * into values; returns how many. Pointers valid during the call. */
size_t kvc_http_query_all(const kvc_http_req_t *req, const char *key, const char **values,
                          size_t max);

/* Sets resp to status with the JSON body {"error": "MESSAGE"}. */
void kvc_http_error(kvc_http_resp_t *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends s to buf as a JSON string literal (quotes included). */
int kvc_json_append_str(kvc_buf_t *buf, const char *s, size_t len);

#endif
