/*
 * bench_raw.h - library-free clients for latency benchmarks: a keep-alive
 * HTTP/1.1 client and a unary gRPC client over h2c, each one blocking
 * socket with its request prebuilt, so that timing two paths measures the
 * servers on them, not two client libraries.
 *
 * Bench code only: plain TCP, one call at a time, no HPACK decoding (the
 * gRPC answer is checked by its message bytes; a call the server fails has
 * none), requests up to one HTTP/2 frame (16 KiB).
 */
#ifndef KVC_BENCH_RAW_H
#define KVC_BENCH_RAW_H

#include <stddef.h>
#include <stdint.h>

/* HTTP/1.1 keep-alive client with one prebuilt request. */
typedef struct {
    int fd;
    char *req;
    size_t req_len;
    char *buf; /* the last answer, NUL-terminated */
    size_t cap;
    int status;       /* of the last answer */
    const char *body; /* of the last answer, inside buf */
    size_t body_len;
} kvcb_http_t;

/* Connects to url ("http://HOST:PORT") and prebuilds a POST of body to
 * path; 0 or -1 with a message on stderr. */
int kvcb_http_open(kvcb_http_t *c, const char *url, const char *path, const char *content_type,
                   const char *body, size_t len);
/* Sends the request, reads the whole answer (Content-Length); 0 or -1. */
int kvcb_http_call(kvcb_http_t *c);
void kvcb_http_close(kvcb_http_t *c);

/* Unary gRPC over HTTP/2 with prior knowledge, one stream at a time. */
typedef struct {
    int fd;
    uint32_t next_stream;
    int64_t send_window;   /* connection window the server granted */
    int64_t stream_window; /* its SETTINGS_INITIAL_WINDOW_SIZE */
    uint32_t max_frame;    /* its SETTINGS_MAX_FRAME_SIZE */
    uint8_t *headers;      /* HPACK block of every call (static) */
    size_t headers_len;
    uint8_t *in; /* bytes read, not parsed yet */
    size_t in_len, in_cap;
    uint8_t *msg; /* the last answer's DATA payload */
    size_t msg_len, msg_cap;
} kvcb_h2_t;

/* Connects to url ("http://HOST:PORT"), sends the connection preface and
 * settles SETTINGS; calls go to path ("/pkg.Service/Method"). 0 or -1. */
int kvcb_h2_open(kvcb_h2_t *c, const char *url, const char *path);
/* One call: req (a serialized message) out, the answer's message in
 * *resp and *resp_len (valid until the next call); 0, or -1 if the server gave
 * no message (an error status), reset the stream or the connection. */
int kvcb_h2_call(kvcb_h2_t *c, const uint8_t *req, size_t len, const uint8_t **resp,
                 size_t *resp_len);
void kvcb_h2_close(kvcb_h2_t *c);

#endif
