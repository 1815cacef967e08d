/*
 * control.h - the client side of the local control API (proto/control.proto)
 * used by the `kvc` CLI, and the rules for finding a peer's endpoint.
 */
#ifndef KVC_CONTROL_H
#define KVC_CONTROL_H

#include "base.h"
#include "control.pb-c.h"

/* Sends one request (command + optional key/value args, n_args pairs) to the
 * peer at endpoint and waits up to timeout_ms for the reply (*out, free with
 * kvc__ctl__reply__free_unpacked). KVC_ETIMEDOUT when nothing answers. */
int kvc_control_call(const char *endpoint, const char *command, const char *const *args,
                     size_t n_args, int timeout_ms, Kvc__Ctl__Reply **out, kvc_err_t *err);

/* The same with a command-specific protobuf payload (NULL: none). */
int kvc_control_call_payload(const char *endpoint, const char *command, const char *const *args,
                             size_t n_args, const uint8_t *payload, size_t payload_len,
                             int timeout_ms, Kvc__Ctl__Reply **out, kvc_err_t *err);

/* The control endpoint: control if given, else the one config names, else
 * $KVC_CONTROL; KVC_EINVAL with err saying what to pass when none. */
int kvc_control_endpoint(const char *config, const char *control, char *out, size_t size,
                         kvc_err_t *err);

/* 0 if a peer answers "status" at endpoint within timeout_ms. */
int kvc_control_ping(const char *endpoint, int timeout_ms);

#endif
