/*
 * grpc_wire.h - the gRPC wire format of a unary call, as pure functions:
 * status codes and their names, the 5-byte message prefix, an incremental
 * reader of the one response message, the response headers and trailers
 * (grpc-status, grpc-message, content-type, :status), percent-decoding,
 * grpc-timeout values, and the spec's HTTP and HTTP/2 reset mappings.
 *
 * No I/O, no clock, no locks: the gRPC client (grpc_client.h) feeds these
 * what its transports deliver, and the unit tests check them byte by byte
 * (tests/unit/test_grpc_frame.c). Nothing here trusts a length it has not
 * bounded; a malformed field is mapped to a status, never fatal.
 */
#ifndef KVC_GRPC_WIRE_H
#define KVC_GRPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* gRPC status codes, the numbers on the wire. */
typedef enum {
    KVC_GRPC_OK = 0,
    KVC_GRPC_CANCELLED = 1,
    KVC_GRPC_UNKNOWN = 2,
    KVC_GRPC_INVALID_ARGUMENT = 3,
    KVC_GRPC_DEADLINE_EXCEEDED = 4,
    KVC_GRPC_NOT_FOUND = 5,
    KVC_GRPC_ALREADY_EXISTS = 6,
    KVC_GRPC_PERMISSION_DENIED = 7,
    KVC_GRPC_RESOURCE_EXHAUSTED = 8,
    KVC_GRPC_FAILED_PRECONDITION = 9,
    KVC_GRPC_ABORTED = 10,
    KVC_GRPC_OUT_OF_RANGE = 11,
    KVC_GRPC_UNIMPLEMENTED = 12,
    KVC_GRPC_INTERNAL = 13,
    KVC_GRPC_UNAVAILABLE = 14,
    KVC_GRPC_DATA_LOSS = 15,
    KVC_GRPC_UNAUTHENTICATED = 16
} kvc_grpc_code_t;

/* Longest status message kept (longer ones are cut). */
#define KVC_GRPC_MSG_MAX 512

/* Static upper-case name of a status ("NOT_FOUND"); "UNKNOWN_CODE" if out
 * of range. */
const char *kvc_grpc_status_name(int code);

/* The KVC_E* error nearest a gRPC status (OK -> 0, NOT_FOUND -> KVC_ENOENT,
 * UNAVAILABLE -> KVC_EUNAVAIL, DEADLINE_EXCEEDED -> KVC_ETIMEDOUT, ...). */
int kvc_grpc_code_to_err(int code);

/* Writes the 5-byte prefix of an uncompressed message of len bytes.
 * KVC_ERANGE if len does not fit in 32 bits. */
int kvc_grpc_frame_prefix(uint8_t out[5], size_t len);

/*
 * Incremental reader of the response body of a unary call: exactly one
 * length-prefixed, uncompressed message no bigger than max. Fields are
 * private; use the functions.
 */
typedef struct {
    size_t max;
    uint8_t prefix[5];
    size_t prefix_have;
    uint8_t *msg; /* owned until taken by kvc_grpc_deframer_take */
    size_t msg_len;
    size_t msg_have;
    int in_message; /* 1 while reading a message body */
    int messages;   /* complete messages seen */
} kvc_grpc_deframer_t;

/* Prepares d to read messages of at most max bytes. */
void kvc_grpc_deframer_init(kvc_grpc_deframer_t *d, size_t max);
/* Feeds n bytes. KVC_ERANGE: a message longer than max was announced
 * (nothing is allocated for it); KVC_EPARSE: compressed or bad flag byte,
 * or a second message; KVC_ENOMEM. After an error, d must only be freed. */
int kvc_grpc_deframer_feed(kvc_grpc_deframer_t *d, const uint8_t *p, size_t n);
/* Hands over the one complete message (caller frees *msg with kvc_free;
 * *msg is non-NULL even for an empty message). KVC_ENOENT: no message at
 * all; KVC_EPARSE: the body ended inside a frame. */
int kvc_grpc_deframer_take(kvc_grpc_deframer_t *d, uint8_t **msg, size_t *len);
/* Frees whatever d still holds. */
void kvc_grpc_deframer_free(kvc_grpc_deframer_t *d);

/* What the response headers and trailers said. */
typedef struct {
    long http_status;                    /* 0 until a status line is seen */
    int grpc_status;                     /* -1 until grpc-status is seen */
    int content_type_grpc;               /* 1 if content-type is application/grpc[+...] */
    char grpc_message[KVC_GRPC_MSG_MAX]; /* percent-decoded, NUL-terminated */
} kvc_grpc_headers_t;

/* Resets h to "nothing seen". */
void kvc_grpc_headers_init(kvc_grpc_headers_t *h);
/* Feeds one header or trailer line as libcurl delivers it ("HTTP/2 200\r\n",
 * "grpc-status: 5\r\n", ...). Unknown headers are ignored; a malformed or
 * out-of-range grpc-status becomes UNKNOWN. Never fails. */
void kvc_grpc_headers_feed(kvc_grpc_headers_t *h, const char *line, size_t n);

/* Feeds one field by name and value (HTTP/2's form, ":status" included;
 * the value is trimmed of blanks). Never fails. */
void kvc_grpc_headers_field(kvc_grpc_headers_t *h, const char *name, size_t name_len,
                            const char *value, size_t value_len);

/* Percent-decodes n bytes of in into out (cap > 0), always NUL-terminated,
 * cut at cap - 1 bytes; a '%' not followed by two hex digits is kept as is.
 * Returns the number of bytes written (without the NUL). */
size_t kvc_grpc_percent_decode(const char *in, size_t n, char *out, size_t cap);

/* Formats a grpc-timeout value for ms (> 0) into out: "<ms>m" while that
 * fits the 8 digits the spec allows, else whole seconds rounded up ("<s>S").
 * KVC_ERANGE if out is too small. */
int kvc_grpc_timeout_format(uint32_t ms, char *out, size_t cap);

/* The gRPC status for an HTTP status other than 200, per the gRPC spec's
 * mapping (400 -> INTERNAL, 401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED,
 * 404 -> UNIMPLEMENTED, 429/502/503/504 -> UNAVAILABLE, else UNKNOWN). */
int kvc_grpc_code_from_http(long http_status);

/* The gRPC status for a stream reset with an HTTP/2 error code, per gRPC's
 * PROTOCOL-HTTP2 mapping (REFUSED_STREAM -> UNAVAILABLE, CANCEL -> CANCELLED,
 * ENHANCE_YOUR_CALM -> RESOURCE_EXHAUSTED, INADEQUATE_SECURITY ->
 * PERMISSION_DENIED, else INTERNAL). */
int kvc_grpc_code_from_rst(uint32_t h2_error);

#endif
