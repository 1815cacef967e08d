/*
 * kvc_intruder - a test tool that attacks one peer's federation socket with
 * everything a holder of a foreign credential could try, so the integration
 * test can check that none of it is accepted and all of it is counted.
 *
 *   kvc_intruder ENDPOINT SERVER_KEY_HEX FOREIGN_IDENTITY VICTIM_IDENTITY
 *
 * FOREIGN_IDENTITY is an identity signed by another federation key (the
 * intruder's own keys). From VICTIM_IDENTITY only the public credential is
 * used (what anyone can capture); its secret is never touched.
 *
 * Sends, in order, one each: a Hello with the foreign credential; a Ping
 * claiming to be the victim; a Hello replaying the victim's credential;
 * a Hello with its signature altered; garbage bytes; an envelope of wire
 * version 2. Prints the number sent and exits 0 once they are flushed.
 *
 *   kvc_intruder --forward ENDPOINT SERVER_KEY_HEX FOREIGN_IDENTITY VICTIM_IDENTITY
 *
 * Attacks a forwarding server (peer/fwd.h) instead: ForwardRequests with
 * the foreign credential, the victim's credential replayed from the
 * intruder's key, no credential, the victim's credential with its signature
 * altered, a wire version the server does not speak, and garbage bytes.
 * Prints one line per attempt, "NAME CODE" (the reply's code name, or
 * "no-reply"), and exits 0 only if every one was refused, 1 if any was
 * answered (code 0), 2 on bad arguments.
 */
#include "config.h"
#include "credential.h"
#include "forward.pb-c.h"
#include "fwd.h"
#include "wire.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

/* Sends one packed envelope from the intruder's sender id. */
static int s_send_env(zsock_t *s, Kvc__Fed__Envelope *env, uint32_t version)
{
    uint8_t *buf;
    size_t len;
    if (kvc_wire_encode(env, &buf, &len) != 0)
        return -1;
    if (version != KVC_WIRE_VERSION) {
        /* re-pack with a version we do not speak */
        kvc_free(buf);
        env->version = version;
        len = kvc__fed__envelope__get_packed_size(env);
        buf = kvc_malloc(len);
        kvc__fed__envelope__pack(env, buf);
    }
    int rc = zmq_send(zsock_resolve(s), buf, len, 0) < 0 ? -1 : 0;
    kvc_free(buf);
    return rc;
}

/* Sends a Hello carrying credential blob (body, signature) as sender. */
static int s_send_hello(zsock_t *s, const char *sender, const uint8_t *blob, size_t len)
{
    Kvc__Fed__Credential *c = kvc__fed__credential__unpack(NULL, len, blob);
    if (!c)
        return -1;
    Kvc__Fed__Hello hello = KVC__FED__HELLO__INIT;
    hello.credential = c;
    hello.advertise = "tcp://127.0.0.1:1";
    hello.started_ms = 1;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.sender = (char *)sender;
    env.body_case = KVC__FED__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    int rc = s_send_env(s, &env, KVC_WIRE_VERSION);
    kvc__fed__credential__free_unpacked(c, NULL);
    return rc;
}

/* Sends one forward attempt (bytes) and waits up to wait_ms for the reply to
 * id. Prints "name code" and returns the code, or -1 for no reply. */
static int s_fwd_try(zsock_t *s, const char *name, const uint8_t *buf, size_t len, uint64_t id,
                     int wait_ms)
{
    int code = -1;
    if (zmq_send(zsock_resolve(s), buf, len, 0) < 0) {
        printf("%s no-reply\n", name);
        return -1;
    }
    zsock_set_rcvtimeo(s, wait_ms);
    for (;;) {
        zframe_t *f = zframe_recv(s);
        if (!f)
            break;
        kvc_fwd_resp_t r;
        uint64_t rid;
        int rc = kvc_fwd_reply_decode(zframe_data(f), zframe_size(f), KVC_FWD_MAX_BODY_DEFAULT,
                                      &rid, &r);
        zframe_destroy(&f);
        if (rc == 0 && rid == id) {
            code = r.code;
            kvc_fwd_resp_clear(&r);
            break;
        }
        kvc_fwd_resp_clear(&r); /* an earlier attempt's late reply */
    }
    printf("%s %s\n", name, code < 0 ? "no-reply" : kvc_fwd_code_name(code));
    return code;
}

/* Encodes a small inference request carrying cred (may be NULL) as id. */
static int s_fwd_encode(const uint8_t *cred, size_t cred_len, uint64_t id, uint8_t **buf,
                        size_t *len)
{
    kvc_fwd_req_t r = {.method = "POST", .path = "/v2/models/m/infer",
                       .content_type = "application/json", .body = (const uint8_t *)"{}",
                       .body_len = 2, .timeout_ms = 3000};
    return kvc_fwd_request_encode(cred, cred_len, id, &r, KVC_FWD_MAX_BODY_DEFAULT, buf, len);
}

/* The --forward mode: see the top of the file. */
static int s_forward_mode(const char *endpoint, const uint8_t server_key[32], kvc_identity_t *me,
                          kvc_identity_t *victim)
{
    zsock_t *s = zsock_new(ZMQ_DEALER);
    if (!s)
        return 2;
    zsock_set_linger(s, 0);
    zsock_set_curve_serverkey_bin(s, server_key);
    zsock_set_curve_publickey_bin(s, me->cred.curve_public);
    zsock_set_curve_secretkey_bin(s, me->curve_secret);
    if (zsock_connect(s, "%s", endpoint) != 0) {
        fprintf(stderr, "kvc_intruder: cannot connect to %s\n", endpoint);
        zsock_destroy(&s);
        return 2;
    }
    int answered = 0, failed = 0;
    uint8_t *buf;
    size_t len;
    /* 1. our own, foreign-signed credential */
    if (s_fwd_encode(me->cred.blob, me->cred.blob_len, 1, &buf, &len) == 0) {
        answered += s_fwd_try(s, "foreign", buf, len, 1, 5000) == KVC_FWD_OK;
        kvc_free(buf);
    } else
        failed++;
    /* 2. the victim's real credential replayed from our key */
    if (s_fwd_encode(victim->cred.blob, victim->cred.blob_len, 2, &buf, &len) == 0) {
        answered += s_fwd_try(s, "replayed", buf, len, 2, 5000) == KVC_FWD_OK;
        kvc_free(buf);
    } else
        failed++;
    /* 3. no credential */
    if (s_fwd_encode(NULL, 0, 3, &buf, &len) == 0) {
        answered += s_fwd_try(s, "no-credential", buf, len, 3, 5000) == KVC_FWD_OK;
        kvc_free(buf);
    } else
        failed++;
    /* 4. the victim's credential with one bit of its signature changed */
    Kvc__Fed__Credential *c = kvc__fed__credential__unpack(NULL, victim->cred.blob_len,
                                                           victim->cred.blob);
    if (c && c->signature.len == 64) {
        c->signature.data[10] ^= 0x01;
        uint8_t blob[KVC_CRED_BLOB_MAX];
        size_t n = kvc__fed__credential__get_packed_size(c);
        if (n <= sizeof blob && (kvc__fed__credential__pack(c, blob),
                                 s_fwd_encode(blob, n, 4, &buf, &len) == 0)) {
            answered += s_fwd_try(s, "bad-signature", buf, len, 4, 5000) == KVC_FWD_OK;
            kvc_free(buf);
        } else
            failed++;
    } else
        failed++;
    if (c)
        kvc__fed__credential__free_unpacked(c, NULL);
    /* 5. a version the server does not speak, with a valid-looking body */
    if (s_fwd_encode(me->cred.blob, me->cred.blob_len, 5, &buf, &len) == 0) {
        Kvc__Fwd__ForwardRequest *m = kvc__fwd__forward_request__unpack(NULL, len, buf);
        kvc_free(buf);
        if (m) {
            m->version = 2;
            len = kvc__fwd__forward_request__get_packed_size(m);
            buf = kvc_malloc(len);
            if (buf) {
                kvc__fwd__forward_request__pack(m, buf);
                answered += s_fwd_try(s, "bad-version", buf, len, 5, 5000) == KVC_FWD_OK;
                kvc_free(buf);
            } else
                failed++;
            kvc__fwd__forward_request__free_unpacked(m, NULL);
        } else
            failed++;
    } else
        failed++;
    /* 6. garbage: dropped and counted, so no reply is the right answer */
    const char junk[] = "\xff\xff\xff\xff not a request";
    answered += s_fwd_try(s, "garbage", (const uint8_t *)junk, sizeof junk - 1, 0, 1000) ==
                KVC_FWD_OK;
    zsock_destroy(&s);
    if (failed)
        fprintf(stderr, "kvc_intruder: %d attempts could not be built\n", failed);
    return answered ? 1 : failed ? 2 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--forward") == 0) {
        kvc_err_t err = {0};
        uint8_t server_key[32];
        kvc_identity_t me, victim;
        if (kvc_crypto_init() != 0 || kvc_config_parse_key(argv[3], server_key) != 0 ||
            kvc_identity_load(argv[4], &me, &err) != 0 ||
            kvc_identity_load(argv[5], &victim, &err) != 0) {
            fprintf(stderr, "kvc_intruder: %s\n", err.msg[0] ? err.msg : "bad arguments");
            return 2;
        }
        int rc = s_forward_mode(argv[2], server_key, &me, &victim);
        kvc_identity_wipe(&victim);
        kvc_identity_wipe(&me);
        return rc;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: kvc_intruder [--forward] ENDPOINT SERVER_KEY FOREIGN_ID VICTIM_ID\n");
        return 2;
    }
    kvc_err_t err = {0};
    uint8_t server_key[32];
    kvc_identity_t me, victim;
    if (kvc_crypto_init() != 0 || kvc_config_parse_key(argv[2], server_key) != 0 ||
        kvc_identity_load(argv[3], &me, &err) != 0 ||
        kvc_identity_load(argv[4], &victim, &err) != 0) {
        fprintf(stderr, "kvc_intruder: %s\n", err.msg[0] ? err.msg : "bad arguments");
        return 2;
    }
    char my_id[2 * KVC_NAME_MAX], victim_id[2 * KVC_NAME_MAX];
    snprintf(my_id, sizeof my_id, "%s/%s", me.cred.site, me.cred.name);
    snprintf(victim_id, sizeof victim_id, "%s/%s", victim.cred.site, victim.cred.name);

    zsock_t *s = zsock_new(ZMQ_DEALER);
    zsock_set_linger(s, 5000);
    zsock_set_curve_serverkey_bin(s, server_key);
    zsock_set_curve_publickey_bin(s, me.cred.curve_public);
    zsock_set_curve_secretkey_bin(s, me.curve_secret);
    if (zsock_connect(s, "%s", argv[1]) != 0) {
        fprintf(stderr, "kvc_intruder: cannot connect to %s\n", argv[1]);
        return 1;
    }
    int sent = 0, failed = 0;
    /* 1. our own, foreign-signed credential */
    failed += s_send_hello(s, my_id, me.cred.blob, me.cred.blob_len) != 0;
    sent++;
    /* 2. a Ping claiming to be the victim, with no credential at all */
    Kvc__Fed__Ping ping = KVC__FED__PING__INIT;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.sender = victim_id;
    env.body_case = KVC__FED__ENVELOPE__BODY_PING;
    env.ping = &ping;
    failed += s_send_env(s, &env, KVC_WIRE_VERSION) != 0;
    sent++;
    /* 3. the victim's real credential replayed from our key */
    failed += s_send_hello(s, victim_id, victim.cred.blob, victim.cred.blob_len) != 0;
    sent++;
    /* 4. the victim's credential with one bit of its signature changed */
    Kvc__Fed__Credential *c = kvc__fed__credential__unpack(NULL, victim.cred.blob_len,
                                                           victim.cred.blob);
    if (c && c->signature.len == 64) {
        c->signature.data[10] ^= 0x01;
        uint8_t blob[KVC_CRED_BLOB_MAX];
        size_t n = kvc__fed__credential__pack(c, blob);
        failed += s_send_hello(s, victim_id, blob, n) != 0;
        sent++;
    }
    if (c)
        kvc__fed__credential__free_unpacked(c, NULL);
    /* 5. garbage */
    const char junk[] = "\xff\xff\xff\xff not an envelope";
    failed += zmq_send(zsock_resolve(s), junk, sizeof junk - 1, 0) < 0;
    sent++;
    /* 6. a wire version we do not speak */
    env.sender = my_id;
    failed += s_send_env(s, &env, 2) != 0;
    sent++;
    kvc_identity_wipe(&victim);
    kvc_identity_wipe(&me);
    zsock_destroy(&s); /* linger flushes what is queued */
    printf("%d\n", sent);
    return failed ? 1 : 0;
}
