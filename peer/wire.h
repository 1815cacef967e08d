/*
 * wire.h - the federation envelope codec (proto/federation.proto).
 *
 * Every message between peers is one kvc.fed.Envelope. Decoding is the first
 * thing that touches bytes from the network, so it bounds the size, rejects
 * versions it cannot read, checks the claimed sender's form and the sizes of
 * every field the peer later uses. It does not authenticate: that is the
 * daemon's job, with the connection's CURVE key and the sender's credential.
 */
#ifndef KVC_WIRE_H
#define KVC_WIRE_H

#include "base.h"
#include "federation.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_WIRE_VERSION 1
#define KVC_WIRE_MAX (1u << 20) /* largest envelope accepted, bytes */

/* Why a message was refused; also the label of the reject counter. */
typedef enum {
    KVC_REJECT_MALFORMED,       /* not a valid envelope */
    KVC_REJECT_VERSION,         /* wire version we cannot read */
    KVC_REJECT_OVERSIZE,        /* larger than KVC_WIRE_MAX */
    KVC_REJECT_BAD_SENDER,      /* sender is not "site/name" */
    KVC_REJECT_BAD_CREDENTIAL,  /* credential malformed or signature invalid */
    KVC_REJECT_FOREIGN,         /* credential signed by another federation key */
    KVC_REJECT_EXPIRED,         /* credential outside its validity window */
    KVC_REJECT_KEY_MISMATCH,    /* credential is for a different CURVE key */
    KVC_REJECT_SENDER_MISMATCH, /* sender differs from the credential's member id */
    KVC_REJECT_NO_CREDENTIAL,   /* message before a valid Hello on this key */
    KVC_REJECT_REVOKED,         /* key on the revocation list (ZAP) */
    KVC_REJECT_NO_KEY,          /* no CURVE User-Id on the message */
    KVC_REJECT__COUNT
} kvc_reject_t;

/* Returns the stable snake_case name of a reject reason. */
const char *kvc_reject_name(kvc_reject_t reason);

/*
 * Decodes len bytes into a newly allocated envelope (*out, free with
 * kvc_wire_free). On failure returns a negative code, leaves *out NULL and,
 * if reason is not NULL, sets it; KVC_ENOMEM (reason untouched) when memory
 * ran out, which says nothing about the sender. Never trusts any length in
 * the input.
 */
int kvc_wire_decode(const uint8_t *data, size_t len, Kvc__Fed__Envelope **out,
                    kvc_reject_t *reason);

/* Frees a decoded envelope and nulls the pointer; NULL is fine. */
void kvc_wire_free(Kvc__Fed__Envelope **env_p);

/*
 * Packs env (whose version is forced to KVC_WIRE_VERSION) into a new buffer
 * (*out, free with kvc_free). KVC_ERANGE if it would exceed KVC_WIRE_MAX.
 */
int kvc_wire_encode(Kvc__Fed__Envelope *env, uint8_t **out, size_t *len);

/* 1 if id is "site/name" with both parts valid names. */
int kvc_wire_valid_member_id(const char *id);

/*
 * The body of a protocol core's message: its kind (the envelope field
 * number, the core's channel) and bytes. Also for a kind this build has no
 * field for (an unknown field, from a newer peer): the daemon then finds no
 * core for it, counts it and ignores it. KVC_ENOENT for link messages
 * (Hello, Ping, ...), which are not a core's.
 */
int kvc_wire_body(const Kvc__Fed__Envelope *env, uint32_t *kind, const uint8_t **data,
                  size_t *len);
/* Room for a body of a kind this build's proto lacks; zero it, pass it to
 * kvc_wire_set_body, keep it until the envelope is encoded, then free. */
typedef struct {
    ProtobufCMessageUnknownField field;
    uint8_t *owned;
} kvc_wire_spare_t;

/* Sets env's body to kind's bytes (borrowed until encoded). A kind without
 * a field in this build's proto is written as an unknown field, in *spare;
 * KVC_EINVAL for a kind that is a non-bytes field, KVC_ENOMEM. */
int kvc_wire_set_body(Kvc__Fed__Envelope *env, uint32_t kind, const uint8_t *data, size_t len,
                      kvc_wire_spare_t *spare);
void kvc_wire_spare_free(kvc_wire_spare_t *spare);

#endif
