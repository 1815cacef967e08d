/*
 * bench_model_server - a fast TF Serving stand-in for throughput
 * benchmarks: tensorflow.serving.PredictionService (Predict and
 * GetModelMetadata) for the model "bert" only, on gRPC C++ (the gRPC core TF Serving itself is built on),
 * so that a proxy's requests/s is measured against a backend that is not
 * the bottleneck. tests/interop/model_server.py (Python grpcio) tops out
 * near 4000 requests/s on this machine, which is where every proxy in
 * tests/bench/bench_overhead.sh used to stop.
 *
 * It answers exactly what model_server.py's run_bert answers:
 *   input_ids int32|int64 [1,500] (tensor_content or int_val/int64_val)
 *   -> logits float32 [1,2] = [sum(ids) / 1000, max(ids) - min(ids)]
 * (sum and difference in int64, wrapping as numpy does; the division in
 * double, then rounded to float), as tensor_content, with the response's
 * model_spec set to bert / version 1 / serving_default. A model other than
 * bert (model_server.py's other models and echo are not served here) or a
 * version other than 1 (0 included, as in TF Serving) is NOT_FOUND; a version label, another signature,
 * a wrong input name, dtype, shape or value count, or an output filter
 * other than "logits" is INVALID_ARGUMENT. GetModelMetadata answers the
 * signature_def as model_server.py does: kvc's proxy reads it (once, then
 * cached) to name and type the unnamed "instances" of a REST request.
 *
 * Usage: bench_model_server [--host 127.0.0.1] [--grpc-port 0]
 *            [--port-file FILE] [--exit-with-parent]
 * FILE gets {"grpc": PORT, "pid": PID} (written atomically) once the port
 * listens. SIGTERM or SIGINT stops it (exit 0); with --exit-with-parent so
 * does the death of the process that started it (PR_SET_PDEATHSIG, and a
 * check of the parent every 500 ms). Without arguments it prints a
 * "skipped" line and exits 0: `make bench` runs every bench_* binary
 * without arguments, and this one is a server, not a benchmark.
 *
 * It never trusts a request: every length and count is checked before the
 * values are read. It is a benchmark backend: it must never grow anything
 * the benchmark does not need (no REST port, no metrics, no other models).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "tensorflow_serving/apis/prediction_service.grpc.pb.h"

namespace
{

const char *const S_MODEL = "bert";
const char *const S_INPUT = "input_ids";
const char *const S_OUTPUT = "logits";
const char *const S_SIGNATURE = "serving_default";
const int64_t S_VERSION = 1;
const int S_IDS = 500;

/* What the command line asked for. */
struct s_args_t {
    std::string host = "127.0.0.1";
    long port = 0;
    const char *port_file = nullptr;
    bool exit_with_parent = false;
};

/* Parses a whole decimal in [lo, hi] into *out; false if it is not one. */
bool s_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = nullptr;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Fills *a from argv; false (after a message) on anything it does not know. */
bool s_parse_args(int argc, char **argv, s_args_t *a)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (strcmp(k, "--exit-with-parent") == 0) {
            a->exit_with_parent = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_model_server: %s needs a value (or is unknown)\n", k);
            return false;
        }
        const char *v = argv[++i];
        if (strcmp(k, "--host") == 0) {
            a->host = v;
        } else if (strcmp(k, "--grpc-port") == 0) {
            if (!s_parse_long(v, 0, 65535, &a->port)) {
                fprintf(stderr, "bench_model_server: --grpc-port: not a port: %s\n", v);
                return false;
            }
        } else if (strcmp(k, "--port-file") == 0) {
            a->port_file = v;
        } else {
            fprintf(stderr, "bench_model_server: unknown option %s\n", k);
            return false;
        }
    }
    return true;
}

/* Reads the ids of one input_ids tensor into ids[S_IDS]; an error status
 * when the tensor is not int32/int64 [1,500] with exactly 500 values. */
grpc::Status s_read_ids(const tensorflow::TensorProto &t, int64_t *ids)
{
    const bool is32 = t.dtype() == tensorflow::DT_INT32;
    if (!is32 && t.dtype() != tensorflow::DT_INT64)
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            std::string("input '") + S_INPUT + "' must be int32 or int64, got " +
                                tensorflow::DataType_Name(t.dtype()));
    const tensorflow::TensorShapeProto &shape = t.tensor_shape();
    if (shape.unknown_rank() || shape.dim_size() != 2 || shape.dim(0).size() != 1 ||
        shape.dim(1).size() != S_IDS)
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            std::string("input '") + S_INPUT + "' must have shape [1, 500]");
    const size_t width = is32 ? 4 : 8;
    if (!t.tensor_content().empty()) {
        const std::string &raw = t.tensor_content();
        if (raw.size() != S_IDS * width)
            return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                std::string("input '") + S_INPUT + "': tensor_content has " +
                                    std::to_string(raw.size()) + " bytes, shape [1, 500] needs " +
                                    std::to_string(S_IDS * width));
        /* Little-endian on the wire whatever the host is. */
        const unsigned char *p = reinterpret_cast<const unsigned char *>(raw.data());
        for (int i = 0; i < S_IDS; i++, p += width) {
            uint64_t u = 0;
            for (size_t b = 0; b < width; b++)
                u |= static_cast<uint64_t>(p[b]) << (8 * b);
            ids[i] = is32 ? static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(u)))
                          : static_cast<int64_t>(u);
        }
        return grpc::Status::OK;
    }
    const int n = is32 ? t.int_val_size() : t.int64_val_size();
    if (n != S_IDS)
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string("input '") + S_INPUT +
                                                                    "': " + std::to_string(n) +
                                                                    " values for shape [1, 500]");
    for (int i = 0; i < S_IDS; i++)
        ids[i] = is32 ? t.int_val(i) : t.int64_val(i);
    return grpc::Status::OK;
}

/* model_server.py's checks of a request's model_spec: a version label or
 * another signature is INVALID_ARGUMENT, another model or version NOT_FOUND. */
grpc::Status s_check_spec(const tensorflow::serving::ModelSpec &spec)
{
    if (spec.version_choice_case() == tensorflow::serving::ModelSpec::kVersionLabel)
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "version labels are not configured");
    if (!spec.signature_name().empty() && spec.signature_name() != S_SIGNATURE)
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "Serving signature name: \"" + spec.signature_name() +
                                "\" not found in signature def");
    if (spec.name() != S_MODEL)
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            "Servable not found for request: Latest(" + spec.name() + ")");
    if (spec.has_version() && spec.version().value() != S_VERSION)
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            "Servable not found for request: Specific(" + spec.name() + ", " +
                                std::to_string(spec.version().value()) + ")");
    return grpc::Status::OK;
}

/* Sets the model_spec of an answer as model_server.py does. */
void s_fill_spec(tensorflow::serving::ModelSpec *out)
{
    out->set_name(S_MODEL);
    out->mutable_version()->set_value(S_VERSION);
    out->set_signature_name(S_SIGNATURE);
}

/* model_server.py's Predict for bert: checks the request, computes the
 * logits into *resp. Never reads past what the request holds. */
grpc::Status s_predict(const tensorflow::serving::PredictRequest &req,
                       tensorflow::serving::PredictResponse *resp)
{
    grpc::Status st = s_check_spec(req.model_spec());
    if (!st.ok())
        return st;
    auto in = req.inputs().find(S_INPUT);
    if (req.inputs().size() != 1 || in == req.inputs().end())
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            std::string("model bert expects exactly one input named '") + S_INPUT +
                                "'");
    int64_t ids[S_IDS];
    st = s_read_ids(in->second, ids);
    if (!st.ok())
        return st;
    for (const std::string &f : req.output_filter())
        if (f != S_OUTPUT)
            return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "output tensor alias not found in signature: " + f);

    /* numpy's int64 arithmetic wraps; so does this (unsigned, then cast). */
    uint64_t sum = 0;
    int64_t lo = ids[0], hi = ids[0];
    for (int i = 0; i < S_IDS; i++) {
        sum += static_cast<uint64_t>(ids[i]);
        lo = ids[i] < lo ? ids[i] : lo;
        hi = ids[i] > hi ? ids[i] : hi;
    }
    const int64_t span =
        static_cast<int64_t>(static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo));
    const float logits[2] = {
        static_cast<float>(static_cast<double>(static_cast<int64_t>(sum)) / 1000),
        static_cast<float>(static_cast<double>(span))};

    s_fill_spec(resp->mutable_model_spec());
    tensorflow::TensorProto &out = (*resp->mutable_outputs())[S_OUTPUT];
    out.set_dtype(tensorflow::DT_FLOAT);
    out.mutable_tensor_shape()->add_dim()->set_size(1);
    out.mutable_tensor_shape()->add_dim()->set_size(2);
    unsigned char raw[sizeof logits];
    for (size_t i = 0; i < 2; i++) {
        uint32_t u;
        memcpy(&u, &logits[i], sizeof u);
        for (size_t b = 0; b < 4; b++)
            raw[i * 4 + b] = static_cast<unsigned char>(u >> (8 * b));
    }
    out.set_tensor_content(raw, sizeof raw);
    return grpc::Status::OK;
}

/* Describes one tensor of the signature as model_server.py does: NAME:0,
 * the batch dimension -1. */
void s_tensor_info(google::protobuf::Map<std::string, tensorflow::TensorInfo> *coll,
                   const char *name, tensorflow::DataType dtype, int64_t width)
{
    tensorflow::TensorInfo &info = (*coll)[name];
    info.set_name(std::string(name) + ":0");
    info.set_dtype(dtype);
    info.mutable_tensor_shape()->add_dim()->set_size(-1);
    info.mutable_tensor_shape()->add_dim()->set_size(width);
}

/* model_server.py's GetModelMetadata for bert (signature_def only): kvc's
 * proxy asks it once per backend to learn the input's name and dtype. */
grpc::Status s_metadata(const tensorflow::serving::GetModelMetadataRequest &req,
                        tensorflow::serving::GetModelMetadataResponse *resp)
{
    grpc::Status st = s_check_spec(req.model_spec());
    if (!st.ok())
        return st;
    if (req.metadata_field_size() != 1 || req.metadata_field(0) != "signature_def")
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "Metadata field is not supported (only signature_def)");
    s_fill_spec(resp->mutable_model_spec());
    tensorflow::serving::SignatureDefMap map;
    tensorflow::SignatureDef &sig = (*map.mutable_signature_def())[S_SIGNATURE];
    sig.set_method_name("tensorflow/serving/predict");
    s_tensor_info(sig.mutable_inputs(), S_INPUT, tensorflow::DT_INT32, S_IDS);
    s_tensor_info(sig.mutable_outputs(), S_OUTPUT, tensorflow::DT_FLOAT, 2);
    (*resp->mutable_metadata())["signature_def"].PackFrom(map);
    return grpc::Status::OK;
}

/* Callback API: the answer is computed on gRPC's own thread, no hand-off. */
class s_service_t final : public tensorflow::serving::PredictionService::CallbackService
{
    grpc::ServerUnaryReactor *Predict(grpc::CallbackServerContext *ctx,
                                      const tensorflow::serving::PredictRequest *req,
                                      tensorflow::serving::PredictResponse *resp) override
    {
        grpc::ServerUnaryReactor *r = ctx->DefaultReactor();
        r->Finish(s_predict(*req, resp));
        return r;
    }

    grpc::ServerUnaryReactor *
    GetModelMetadata(grpc::CallbackServerContext *ctx,
                     const tensorflow::serving::GetModelMetadataRequest *req,
                     tensorflow::serving::GetModelMetadataResponse *resp) override
    {
        grpc::ServerUnaryReactor *r = ctx->DefaultReactor();
        r->Finish(s_metadata(*req, resp));
        return r;
    }
};

/* Writes {"grpc": PORT, "pid": PID} to path through a renamed temporary. */
bool s_write_port_file(const char *path, int port)
{
    std::string tmp = std::string(path) + ".tmp";
    FILE *f = fopen(tmp.c_str(), "w");
    if (!f)
        return false;
    int n = fprintf(f, "{\"grpc\": %d, \"pid\": %ld}\n", port, static_cast<long>(getpid()));
    if (fclose(f) != 0 || n < 0 || rename(tmp.c_str(), path) != 0) {
        unlink(tmp.c_str());
        return false;
    }
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc == 1) {
        printf("bench_model_server: skipped: a model server for tests/bench/bench_overhead.sh, "
               "not a benchmark\n");
        return 0;
    }
    s_args_t args;
    if (!s_parse_args(argc, argv, &args)) {
        fprintf(stderr, "usage: bench_model_server [--host 127.0.0.1] [--grpc-port 0] "
                        "[--port-file FILE] [--exit-with-parent]\n");
        return 2;
    }

    /* Block the stop signals before gRPC starts its threads, so they all
     * inherit the mask and only the sigtimedwait below ever takes them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    const pid_t parent = getppid();
    if (args.exit_with_parent) {
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
            perror("bench_model_server: prctl");
            return 1;
        }
        if (getppid() != parent) /* gone before prctl took effect */
            return 0;
    }

    s_service_t service;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(args.host + ":" + std::to_string(args.port),
                             grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port == 0) {
        fprintf(stderr, "bench_model_server: cannot listen on %s:%ld\n", args.host.c_str(),
                args.port);
        return 1;
    }
    if (args.port_file && !s_write_port_file(args.port_file, port)) {
        fprintf(stderr, "bench_model_server: cannot write %s: %s\n", args.port_file,
                strerror(errno));
        server->Shutdown();
        return 1;
    }
    fprintf(stderr, "bench_model_server: grpc %s:%d\n", args.host.c_str(), port);

    const struct timespec tick = {0, 500 * 1000 * 1000};
    for (;;) {
        int sig = sigtimedwait(&stop, nullptr, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            perror("bench_model_server: sigtimedwait");
            break;
        }
        if (args.exit_with_parent && getppid() != parent)
            break;
    }
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
    return 0;
}
