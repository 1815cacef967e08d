/*
 * wire.c - bounded encode/decode of federation envelopes. Must never
 * allocate more than the input justifies nor accept a field larger than the
 * peer can hold.
 */
#include "pb_alloc.h"
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

/* The first length-delimited unknown field of env: a body kind this build
 * has no field for. protobuf-c keeps such a field's bytes with their length
 * prefix; the prefix is checked against the field's size and skipped.
 * Returns 1 and its number and bytes if there is one. */
static int s_unknown_body(const Kvc__Fed__Envelope *env, uint32_t *kind, const uint8_t **data,
                          size_t *len)
{
    for (unsigned i = 0; i < env->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *f = &env->base.unknown_fields[i];
        if (f->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED || f->tag < 10)
            continue;
        uint64_t n = 0;
        size_t k = 0;
        for (; k < f->len && k < 10; k++) {
            n |= (uint64_t)(f->data[k] & 0x7f) << (7 * k);
            if (!(f->data[k] & 0x80))
                break;
        }
        if (k >= f->len || k >= 10 || n != f->len - k - 1)
            continue;
        if (kind)
            *kind = f->tag;
        if (data)
            *data = f->data + k + 1;
        if (len)
            *len = (size_t)n;
        return 1;
    }
    return 0;
}

/* The descriptor of envelope field `kind` if it is a bytes member of the
 * body oneof (a core's channel), else NULL. */
static const ProtobufCFieldDescriptor *s_bytes_body(uint32_t kind)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&kvc__fed__envelope__descriptor, kind);
    if (!f || f->type != PROTOBUF_C_TYPE_BYTES || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return NULL;
    return f;
}

int kvc_wire_body(const Kvc__Fed__Envelope *env, uint32_t *kind, const uint8_t **data,
                  size_t *len)
{
    if (env->body_case == KVC__FED__ENVELOPE__BODY__NOT_SET)
        return s_unknown_body(env, kind, data, len) ? KVC_OK : KVC_ENOENT;
    const ProtobufCFieldDescriptor *f = s_bytes_body((uint32_t)env->body_case);
    if (!f)
        return KVC_ENOENT;
    const ProtobufCBinaryData *b = (const ProtobufCBinaryData *)((const char *)env + f->offset);
    *kind = (uint32_t)env->body_case;
    *data = b->data;
    *len = b->len;
    return KVC_OK;
}

int kvc_wire_set_body(Kvc__Fed__Envelope *env, uint32_t kind, const uint8_t *data, size_t len,
                      kvc_wire_spare_t *spare)
{
    const ProtobufCFieldDescriptor *f = s_bytes_body(kind);
    if (f) {
        ProtobufCBinaryData *b = (ProtobufCBinaryData *)((char *)env + f->offset);
        b->data = (uint8_t *)data;
        b->len = len;
        env->body_case = (Kvc__Fed__Envelope__BodyCase)kind;
        return KVC_OK;
    }
    if (!spare || kind < 10 || kind > 536870911u || len > KVC_WIRE_MAX ||
        protobuf_c_message_descriptor_get_field(&kvc__fed__envelope__descriptor, kind))
        return KVC_EINVAL;
    /* A kind newer than this build's proto: written as the unknown field a
     * build that knows it reads as its body (length prefix, then bytes). */
    spare->owned = kvc_malloc(len + 10);
    if (!spare->owned)
        return KVC_ENOMEM;
    size_t k = 0;
    uint64_t n = len;
    do {
        spare->owned[k++] = (uint8_t)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
        n >>= 7;
    } while (n);
    if (len)
        memcpy(spare->owned + k, data, len);
    spare->field.tag = kind;
    spare->field.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    spare->field.len = k + len;
    spare->field.data = spare->owned;
    env->base.n_unknown_fields = 1;
    env->base.unknown_fields = &spare->field;
    env->body_case = KVC__FED__ENVELOPE__BODY__NOT_SET;
    return KVC_OK;
}

void kvc_wire_spare_free(kvc_wire_spare_t *spare)
{
    if (spare) {
        kvc_free(spare->owned);
        spare->owned = NULL;
    }
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
    kvc_pb_alloc_t alloc;
    Kvc__Fed__Envelope *env = kvc__fed__envelope__unpack(kvc_pb_alloc_init(&alloc), len, data);
    if (!env) {
        if (kvc_pb_alloc_error(&alloc) == KVC_ENOMEM)
            return KVC_ENOMEM; /* ours, not the sender's: no reject reason */
        goto fail;
    }
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
    case KVC__FED__ENVELOPE__BODY_ELECTION:
    case KVC__FED__ENVELOPE__BODY_NODES:
    case KVC__FED__ENVELOPE__BODY_JOIN:
    case KVC__FED__ENVELOPE__BODY_NODE_JOIN:
    case KVC__FED__ENVELOPE__BODY_REGISTRY:
    case KVC__FED__ENVELOPE__BODY_HEALTH:
        break;
    case KVC__FED__ENVELOPE__BODY__NOT_SET:
        /* A body kind this build does not know arrives as an unknown
         * field: a later version's protocol. Kept, so the daemon counts and
         * ignores it (sites upgrade one at a time); no body at all is
         * malformed. */
        if (!s_unknown_body(env, NULL, NULL, NULL))
            goto fail_free;
        break;
    default:
        goto fail_free;
    }
    *out = env;
    return KVC_OK;
fail_free:
    kvc__fed__envelope__free_unpacked(env, kvc_pb_allocator());
fail:
    if (reason)
        *reason = why;
    return why == KVC_REJECT_VERSION ? KVC_ERANGE : KVC_EPARSE;
}

void kvc_wire_free(Kvc__Fed__Envelope **env_p)
{
    if (env_p && *env_p) {
        kvc__fed__envelope__free_unpacked(*env_p, kvc_pb_allocator());
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
