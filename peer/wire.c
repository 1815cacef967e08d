/*
 * wire.c - bounded encode/decode of federation envelopes. Must never
 * allocate more than the input justifies nor accept a field larger than the
 * peer can hold.
 */
#include "wire.h"

#include "config.h"
#include "credential.h"

#include <string.h>

static const char *s_reject_names[KVC_REJECT__COUNT] = {
    "malformed",     "version",        "oversize",
    "bad_sender",    "bad_credential", "foreign_federation",
    "expired",       "key_mismatch",   "sender_mismatch",
    "no_credential", "revoked",        "no_key",
};

const char *kvc_reject_name(kvc_reject_t reason)
{
    if ((unsigned)reason >= KVC_REJECT__COUNT)
        return "unknown";
    return s_reject_names[reason];
}

int kvc_wire_valid_member_id(const char *id)
{
    if (!id)
        return 0;
    const char *slash = strchr(id, '/');
    if (!slash || (size_t)(slash - id) >= KVC_NAME_MAX)
        return 0;
    char site[KVC_NAME_MAX];
    memcpy(site, id, (size_t)(slash - id));
    site[slash - id] = '\0';
    return kvc_config_valid_name(site) && kvc_config_valid_name(slash + 1);
}

/*
 * Tells whether a decoded message, or any message inside it, kept an
 * unknown field numbered 0. protobuf-c keeps such fields (the spec forbids
 * them) and writes them back canonically, which it then refuses to read:
 * a message holding one would not survive a re-encoding. depth bounds the
 * walk (the decoder already bounded the nesting).
 */
static int s_has_field_zero(const ProtobufCMessage *m, int depth)
{
    if (!m || depth > 32)
        return depth > 32;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *at = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)at;
            for (size_t k = 0; k < n; k++)
                if (s_has_field_zero(v[k], depth + 1))
                    return 1;
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue; /* another member of the oneof is set */
        if (s_has_field_zero(*(ProtobufCMessage *const *)at, depth + 1))
            return 1;
    }
    return 0;
}

/* Checks the sizes of the fields the daemon reads from a Hello. */
static int s_hello_ok(const Kvc__Fed__Hello *h)
{
    if (!h->credential)
        return 0;
    if (h->credential->body.len > KVC_CRED_BLOB_MAX || h->credential->signature.len != 64)
        return 0;
    if (strlen(h->advertise) >= KVC_ENDPOINT_MAX || strlen(h->region) >= KVC_NAME_MAX)
        return 0;
    return 1;
}

int kvc_wire_decode(const uint8_t *data, size_t len, Kvc__Fed__Envelope **out, kvc_reject_t *reason)
{
    kvc_reject_t why = KVC_REJECT_MALFORMED;
    *out = NULL;
    if (len > KVC_WIRE_MAX) {
        why = KVC_REJECT_OVERSIZE;
        goto fail;
    }
    Kvc__Fed__Envelope *env = kvc__fed__envelope__unpack(NULL, len, data);
    if (!env)
        goto fail;
    /* protobuf-c keeps a field numbered 0 as "unknown"; the spec forbids
     * it, at any depth. */
    if (s_has_field_zero(&env->base, 0))
        goto fail_free;
    if (env->version != KVC_WIRE_VERSION) {
        why = KVC_REJECT_VERSION;
        goto fail_free;
    }
    if (!kvc_wire_valid_member_id(env->sender)) {
        why = KVC_REJECT_BAD_SENDER;
        goto fail_free;
    }
    switch (env->body_case) {
    case KVC__FED__ENVELOPE__BODY_HELLO:
        if (!s_hello_ok(env->hello))
            goto fail_free;
        break;
    case KVC__FED__ENVELOPE__BODY_HELLO_ACK:
    case KVC__FED__ENVELOPE__BODY_PING:
    case KVC__FED__ENVELOPE__BODY_PONG:
    case KVC__FED__ENVELOPE__BODY_MEMBERSHIP:
        break;
    default:
        goto fail_free;
    }
    *out = env;
    return KVC_OK;
fail_free:
    kvc__fed__envelope__free_unpacked(env, NULL);
fail:
    if (reason)
        *reason = why;
    return why == KVC_REJECT_VERSION ? KVC_ERANGE : KVC_EPARSE;
}

void kvc_wire_free(Kvc__Fed__Envelope **env_p)
{
    if (env_p && *env_p) {
        kvc__fed__envelope__free_unpacked(*env_p, NULL);
        *env_p = NULL;
    }
}

int kvc_wire_encode(Kvc__Fed__Envelope *env, uint8_t **out, size_t *len)
{
    env->version = KVC_WIRE_VERSION;
    size_t n = kvc__fed__envelope__get_packed_size(env);
    if (n > KVC_WIRE_MAX)
        return KVC_ERANGE;
    uint8_t *buf = kvc_malloc(n ? n : 1);
    if (!buf)
        return KVC_ENOMEM;
    *len = kvc__fed__envelope__pack(env, buf);
    *out = buf;
    return KVC_OK;
}
