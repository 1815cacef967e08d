/*
 * bench_raw.c - library-free HTTP/1.1 and h2c gRPC clients for latency
 * benchmarks (see bench_raw.h). HTTP/2 as RFC 9113 has it, as far as one
 * unary call at a time needs: the preface, SETTINGS (acknowledged both
 * ways), flow control of what we send, PING answered, frames of other
 * streams skipped; HPACK (RFC 7541) only to encode our own headers as
 * literals that never touch the dynamic table.
 */
#include "bench_raw.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_HTTP_MAX (1u << 20)
#define S_H2_IN_MAX (1u << 20)
#define S_H2_MSG_MAX (1u << 20)
#define S_H2_DEFAULT_WINDOW 65535
#define S_H2_RECV_WINDOW (1u << 30)

enum {
    S_DATA = 0,
    S_HEADERS = 1,
    S_RST = 3,
    S_SETTINGS = 4,
    S_PING = 6,
    S_GOAWAY = 7,
    S_WINUP = 8,
    S_CONT = 9
};
enum { S_END_STREAM = 0x1, S_ACK = 0x1, S_END_HEADERS = 0x4, S_PADDED = 0x8, S_PRIORITY = 0x20 };

/* Connects a TCP socket to "http://HOST:PORT" with Nagle off; -1 on failure. */
static int s_connect(const char *url, char *authority, size_t auth_size)
{
    const char *hp = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    char host[256];
    snprintf(host, sizeof host, "%s", hp);
    char *slash = strchr(host, '/');
    if (slash)
        *slash = '\0';
    snprintf(authority, auth_size, "%s", host);
    char *colon = strrchr(host, ':');
    if (!colon) {
        fprintf(stderr, "bench_raw: %s: expected http://HOST:PORT\n", url);
        return -1;
    }
    *colon = '\0';
    const char *name = host;
    if (host[0] == '[' && colon[-1] == ']') {
        colon[-1] = '\0';
        name = host + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(name, colon + 1, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "bench_raw: cannot resolve %s\n", url);
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "bench_raw: cannot connect to %s\n", url);
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Writes all of buf; -1 on failure. */
static int s_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- HTTP/1.1 ------------------------------------------------------------------ */

int kvcb_http_open(kvcb_http_t *c, const char *url, const char *path, const char *content_type,
                   const char *body, size_t len)
{
    memset(c, 0, sizeof *c);
    char authority[256];
    c->fd = s_connect(url, authority, sizeof authority);
    if (c->fd < 0)
        return -1;
    size_t head = strlen(path) + strlen(authority) + strlen(content_type) + 128;
    c->req = malloc(head + len);
    c->cap = 64 * 1024;
    c->buf = malloc(c->cap);
    if (!c->req || !c->buf) {
        kvcb_http_close(c);
        return -1;
    }
    int n = snprintf(c->req, head,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, authority, content_type, len);
    memcpy(c->req + n, body, len);
    c->req_len = (size_t)n + len;
    return 0;
}

int kvcb_http_call(kvcb_http_t *c)
{
    if (s_write_all(c->fd, c->req, c->req_len) != 0)
        return -1;
    size_t got = 0, want = 0, body_at = 0;
    for (;;) {
        if (got + 1 >= c->cap) {
            if (c->cap >= S_HTTP_MAX)
                return -1;
            char *b = realloc(c->buf, c->cap * 2);
            if (!b)
                return -1;
            c->buf = b;
            c->cap *= 2;
        }
        ssize_t n = read(c->fd, c->buf + got, c->cap - 1 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        c->buf[got] = '\0';
        if (!want) {
            char *eoh = strstr(c->buf, "\r\n\r\n");
            if (!eoh)
                continue;
            /* Header names are case-insensitive: look at each line. */
            size_t clen = 0;
            int have = 0;
            for (char *l = strstr(c->buf, "\r\n"); l && l < eoh; l = strstr(l + 2, "\r\n")) {
                if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
                    clen = strtoul(l + 17, NULL, 10);
                    have = 1;
                }
            }
            if (!have || sscanf(c->buf, "HTTP/1.1 %d", &c->status) != 1)
                return -1;
            body_at = (size_t)(eoh + 4 - c->buf);
            c->body_len = clen;
            want = body_at + clen;
        }
        if (got >= want) {
            c->body = c->buf + body_at;  /* buf may have moved while reading */
            return got == want ? 0 : -1; /* nothing may follow: one call at a time */
        }
    }
}

void kvcb_http_close(kvcb_http_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->req);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* ---- HTTP/2 ------------------------------------------------------------------- */

/* Appends a frame header. */
static uint8_t *s_frame(uint8_t *p, size_t len, int type, int flags, uint32_t stream)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = (uint8_t)type;
    p[4] = (uint8_t)flags;
    p[5] = (uint8_t)(stream >> 24 & 0x7f);
    p[6] = (uint8_t)(stream >> 16);
    p[7] = (uint8_t)(stream >> 8);
    p[8] = (uint8_t)stream;
    return p + 9;
}

/* HPACK integer with an n-bit prefix whose high bits are first. */
static uint8_t *s_hpack_int(uint8_t *p, uint8_t first, int n, size_t v)
{
    size_t max = (1u << n) - 1;
    if (v < max) {
        *p++ = (uint8_t)(first | v);
        return p;
    }
    *p++ = (uint8_t)(first | max);
    v -= max;
    while (v >= 128) {
        *p++ = (uint8_t)(v % 128 + 128);
        v /= 128;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* HPACK string literal, not Huffman-coded. */
static uint8_t *s_hpack_str(uint8_t *p, const char *s)
{
    size_t len = strlen(s);
    p = s_hpack_int(p, 0, 7, len);
    memcpy(p, s, len);
    return p + len;
}

/* Literal field without indexing: static table name (index) or new name (0). */
static uint8_t *s_hpack_field(uint8_t *p, size_t index, const char *name, const char *value)
{
    p = s_hpack_int(p, 0, 4, index);
    if (!index)
        p = s_hpack_str(p, name);
    return s_hpack_str(p, value);
}

/* Sends a frame with its payload. */
static int s_send_frame(kvcb_h2_t *c, int type, int flags, uint32_t stream, const void *payload,
                        size_t len)
{
    uint8_t buf[9 + 64];
    if (len > 64)
        return -1;
    uint8_t *p = s_frame(buf, len, type, flags, stream);
    if (len)
        memcpy(p, payload, len);
    return s_write_all(c->fd, buf, 9 + len);
}

/* Reads more bytes into c->in; -1 on end of stream, error or overflow. */
static int s_fill(kvcb_h2_t *c)
{
    if (c->in_len == c->in_cap) {
        if (c->in_cap >= S_H2_IN_MAX)
            return -1;
        size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
        uint8_t *b = realloc(c->in, cap);
        if (!b)
            return -1;
        c->in = b;
        c->in_cap = cap;
    }
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n <= 0)
        return -1;
    c->in_len += (size_t)n;
    return 0;
}

/*
 * Handles one connection-level or foreign frame: SETTINGS (applied and
 * acknowledged), PING (answered), WINDOW_UPDATE on the connection, GOAWAY
 * (fatal); anything else is skipped. -1 on a fatal frame or a write error.
 */
static int s_conn_frame(kvcb_h2_t *c, int type, int flags, uint32_t stream, const uint8_t *p,
                        size_t len)
{
    if (type == S_SETTINGS && !(flags & S_ACK) && stream == 0) {
        if (len % 6)
            return -1;
        for (size_t i = 0; i < len; i += 6) {
            uint16_t id = (uint16_t)(p[i] << 8 | p[i + 1]);
            uint32_t v = (uint32_t)p[i + 2] << 24 | (uint32_t)p[i + 3] << 16 |
                         (uint32_t)p[i + 4] << 8 | p[i + 5];
            if (id == 0x4)
                c->stream_window = v;
            else if (id == 0x5)
                c->max_frame = v;
        }
        return s_send_frame(c, S_SETTINGS, S_ACK, 0, NULL, 0);
    }
    if (type == S_PING && !(flags & S_ACK))
        return len == 8 ? s_send_frame(c, S_PING, S_ACK, 0, p, 8) : -1;
    if (type == S_WINUP && stream == 0 && len == 4) {
        c->send_window += (int64_t)((uint32_t)(p[0] & 0x7f) << 24 | (uint32_t)p[1] << 16 |
                                    (uint32_t)p[2] << 8 | p[3]);
        return 0;
    }
    if (type == S_GOAWAY) {
        fprintf(stderr, "bench_raw: the server sent GOAWAY\n");
        return -1;
    }
    return 0;
}

/*
 * Parses the frames read so far. With stream != 0, collects its DATA into
 * c->msg and sets *done once its trailers (HEADERS with END_STREAM, then
 * END_HEADERS) have arrived; -1 on a reset, a fatal frame or a bad one.
 */
static int s_parse(kvcb_h2_t *c, uint32_t stream, int *trailers, int *done)
{
    size_t off = 0;
    int rc = 0;
    while (!*done && c->in_len - off >= 9) {
        const uint8_t *h = c->in + off;
        size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        int type = h[3], flags = h[4];
        uint32_t sid =
            (uint32_t)(h[5] & 0x7f) << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8];
        if (c->in_len - off - 9 < len)
            break; /* wait for the rest */
        const uint8_t *p = h + 9;
        off += 9 + len;
        if (sid == 0 || sid != stream) {
            if ((rc = s_conn_frame(c, type, flags, sid, p, len)) != 0)
                break;
            continue;
        }
        if (type == S_RST) {
            fprintf(stderr, "bench_raw: the server reset stream %u\n", sid);
            rc = -1;
            break;
        }
        if (type == S_DATA) {
            size_t pad = 0;
            if (flags & S_PADDED) {
                if (len < 1 || (size_t)p[0] + 1 > len) {
                    rc = -1;
                    break;
                }
                pad = p[0];
                p++;
                len--;
            }
            len -= pad;
            if (c->msg_len + len > S_H2_MSG_MAX) {
                rc = -1;
                break;
            }
            if (c->msg_len + len > c->msg_cap) {
                size_t cap = c->msg_len + len + 4096;
                uint8_t *m = realloc(c->msg, cap);
                if (!m) {
                    rc = -1;
                    break;
                }
                c->msg = m;
                c->msg_cap = cap;
            }
            memcpy(c->msg + c->msg_len, p, len);
            c->msg_len += len;
            if (flags & S_END_STREAM)
                *done = 1; /* no trailers: the caller finds no status */
        } else if (type == S_HEADERS || type == S_CONT) {
            if (type == S_HEADERS && (flags & S_END_STREAM))
                *trailers = 1;
            if (*trailers && (flags & S_END_HEADERS))
                *done = 1;
        }
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return rc;
}

int kvcb_h2_open(kvcb_h2_t *c, const char *url, const char *path)
{
    memset(c, 0, sizeof *c);
    char authority[256];
    c->fd = s_connect(url, authority, sizeof authority);
    if (c->fd < 0)
        return -1;
    c->next_stream = 1;
    c->send_window = S_H2_DEFAULT_WINDOW;
    c->stream_window = S_H2_DEFAULT_WINDOW;
    c->max_frame = 16384;
    c->headers = malloc(strlen(path) + strlen(authority) + 128);
    if (!c->headers) {
        kvcb_h2_close(c);
        return -1;
    }
    uint8_t *p = c->headers;
    *p++ = 0x83;                              /* :method POST (static 3) */
    *p++ = 0x86;                              /* :scheme http (static 6) */
    p = s_hpack_field(p, 4, NULL, path);      /* :path */
    p = s_hpack_field(p, 1, NULL, authority); /* :authority */
    p = s_hpack_field(p, 31, NULL, "application/grpc");
    p = s_hpack_field(p, 0, "te", "trailers");
    c->headers_len = (size_t)(p - c->headers);

    /* Preface, our SETTINGS (no push), and room for the server's answers. */
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    uint8_t buf[sizeof preface - 1 + 9 + 6 + 9 + 4];
    memcpy(buf, preface, sizeof preface - 1);
    p = s_frame(buf + sizeof preface - 1, 6, S_SETTINGS, 0, 0);
    static const uint8_t no_push[6] = {0, 2, 0, 0, 0, 0};
    memcpy(p, no_push, 6);
    p = s_frame(p + 6, 4, S_WINUP, 0, 0);
    uint32_t inc = S_H2_RECV_WINDOW - S_H2_DEFAULT_WINDOW;
    p[0] = (uint8_t)(inc >> 24);
    p[1] = (uint8_t)(inc >> 16);
    p[2] = (uint8_t)(inc >> 8);
    p[3] = (uint8_t)inc;
    if (s_write_all(c->fd, buf, sizeof buf) != 0) {
        kvcb_h2_close(c);
        return -1;
    }
    return 0;
}

int kvcb_h2_call(kvcb_h2_t *c, const uint8_t *req, size_t len, const uint8_t **resp,
                 size_t *resp_len)
{
    size_t data_len = 5 + len;
    if (data_len > c->max_frame || data_len > (size_t)c->stream_window ||
        c->next_stream > 0x7fffffffu)
        return -1;
    uint32_t stream = c->next_stream;
    c->next_stream += 2;
    c->msg_len = 0;
    int trailers = 0, done = 0;
    /* The server's connection window must hold the message first. */
    while (c->send_window < (int64_t)data_len) {
        if (s_fill(c) != 0 || s_parse(c, 0, &trailers, &done) != 0)
            return -1;
    }
    size_t total = 9 + c->headers_len + 9 + data_len;
    uint8_t *out = malloc(total);
    if (!out)
        return -1;
    uint8_t *p = s_frame(out, c->headers_len, S_HEADERS, S_END_HEADERS, stream);
    memcpy(p, c->headers, c->headers_len);
    p = s_frame(p + c->headers_len, data_len, S_DATA, S_END_STREAM, stream);
    p[0] = 0; /* not compressed */
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
    memcpy(p + 5, req, len);
    int rc = s_write_all(c->fd, out, total); /* both frames in one write */
    free(out);
    if (rc != 0)
        return -1;
    c->send_window -= (int64_t)data_len;
    /* Frames already read (a SETTINGS ACK, say) first, then the socket. */
    if (s_parse(c, stream, &trailers, &done) != 0)
        return -1;
    while (!done) {
        if (s_fill(c) != 0 || s_parse(c, stream, &trailers, &done) != 0)
            return -1;
    }
    /* One length-prefixed, uncompressed message, or the call failed. */
    if (c->msg_len < 5 || c->msg[0] != 0)
        return -1;
    size_t mlen =
        (size_t)c->msg[1] << 24 | (size_t)c->msg[2] << 16 | (size_t)c->msg[3] << 8 | c->msg[4];
    if (mlen != c->msg_len - 5)
        return -1;
    *resp = c->msg + 5;
    *resp_len = mlen;
    return 0;
}

void kvcb_h2_close(kvcb_h2_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->headers);
    free(c->in);
    free(c->msg);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}
