/*
 * kvc_join_replay - a hostile node for the join tests: sends join requests
 * `kvc join` never would, over a real CurveZMQ session with a node key.
 *
 *   kvc_join_replay ENDPOINT PEER_KEY NODEKEY_FILE SITE NAME MODE
 *
 * MODE replay: the same request (same nonce) twice; stale: a request whose
 * timestamp is 10 minutes old. Prints one line per answer: "granted ID" or
 * "refused: REASON". Exit 0 when every answer came, 1 otherwise.
 */
#include "pb_alloc.h"

#include "clock.h"
#include "config.h"
#include "credential.h"
#include "wire.h"
#include "federation.pb-c.h"
#include "join.pb-c.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static int s_send(void *sock, const Kvc__Join__Request *req)
{
    Kvc__Join__NodeMessage m = KVC__JOIN__NODE_MESSAGE__INIT;
    m.version = 1;
    m.body_case = KVC__JOIN__NODE_MESSAGE__BODY_REQUEST;
    m.request = (Kvc__Join__Request *)req;
    uint8_t body[4096];
    size_t n = kvc__join__node_message__pack(&m, body);
    char sender[160];
    snprintf(sender, sizeof sender, "%s/%s", req->site, req->node);
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.sender = sender;
    env.body_case = KVC__FED__ENVELOPE__BODY_NODE_JOIN;
    env.node_join.data = body;
    env.node_join.len = n;
    uint8_t *buf;
    size_t len;
    if (kvc_wire_encode(&env, &buf, &len) != 0)
        return -1;
    int rc = zmq_send(sock, buf, len, 0) == (int)len ? 0 : -1;
    kvc_free(buf);
    return rc;
}

/* Prints the answer; 0 if one came within 10 s. */
static int s_answer(void *sock)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 10000) <= 0)
        return -1;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, sock, 0) < 0)
        return -1;
    Kvc__Fed__Envelope *env = NULL;
    kvc_reject_t why;
    int rc = kvc_wire_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &env, &why);
    zmq_msg_close(&msg);
    if (rc || env->body_case != KVC__FED__ENVELOPE__BODY_NODE_JOIN) {
        kvc_wire_free(&env);
        return -1;
    }
    kvc_pb_alloc_t alloc;
    Kvc__Join__NodeMessage *m = kvc__join__node_message__unpack(
        kvc_pb_alloc_init(&alloc), env->node_join.len, env->node_join.data);
    kvc_wire_free(&env);
    if (!m || m->body_case != KVC__JOIN__NODE_MESSAGE__BODY_REPLY) {
        if (m)
            kvc__join__node_message__free_unpacked(m, kvc_pb_allocator());
        return -1;
    }
    if (m->reply->body_case == KVC__JOIN__REPLY__BODY_GRANTED)
        printf("granted %s\n", m->reply->granted->token_id);
    else if (m->reply->body_case == KVC__JOIN__REPLY__BODY_REFUSED)
        printf("refused: %s\n", m->reply->refused->reason);
    else
        printf("other\n");
    fflush(stdout);
    kvc__join__node_message__free_unpacked(m, kvc_pb_allocator());
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: kvc_join_replay ENDPOINT PEER_KEY NODEKEY SITE NAME replay|stale\n");
        return 2;
    }
    uint8_t server[32];
    kvc_nodekey_t key;
    kvc_err_t err = {0};
    if (kvc_crypto_init() != 0 || kvc_config_parse_key(argv[2], server) != 0 ||
        kvc_nodekey_load(argv[3], &key, &err) != 0) {
        fprintf(stderr, "kvc_join_replay: bad key: %s\n", err.msg);
        return 2;
    }
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, 32);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, key.public_key, 32);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, key.secret_key, 32);
    if (zmq_connect(sock, argv[1]) != 0)
        return 1;
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    Kvc__Join__Request req = KVC__JOIN__REQUEST__INIT;
    req.site = argv[4];
    req.node = argv[5];
    req.arch = "amd64";
    req.kind = "kubeadm";
    req.enroll_code = "";
    req.nonce.data = nonce;
    req.nonce.len = sizeof nonce;
    req.timestamp_ms = (int64_t)kvc_clock_wall_ms();
    int ok = 1;
    if (strcmp(argv[6], "stale") == 0) {
        req.timestamp_ms -= 600000;
        ok = s_send(sock, &req) == 0 && s_answer(sock) == 0;
    } else {
        for (int i = 0; i < 2 && ok; i++)
            ok = s_send(sock, &req) == 0 && s_answer(sock) == 0;
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return ok ? 0 : 1;
}
