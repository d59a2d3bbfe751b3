#!/usr/bin/python3
"""End-to-end client of the public Squeeze API in Python.

Proves the API is usable outside C++ with only Debian's python3-grpcio and
python3-protobuf: the message classes come from `protoc --python_out` at
start, and the method stubs are made by hand (grpc_tools is not needed).

It uploads a model (and an optional calibration set), submits a one-pass
QuantizePass job, watches it to a final state, then checks that it SUCCEEDED
with a variant whose artifact downloads intact and is smaller than the model.

Exit status: 0 when every check passes, 1 with a one-line reason otherwise.
The whole run is bounded by --timeout seconds (default 120).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK_BYTES = 1 << 20


class CheckFailed(Exception):
    """A check of the end-to-end run did not hold."""


def load_messages(out_dir):
    """Generates squeeze_pb2 from the repository's proto and imports it."""
    subprocess.run(
        ["protoc", f"--python_out={out_dir}", "-I", os.path.join(REPO, "proto"),
         "squeeze/v1/squeeze.proto"],
        check=True)
    sys.path.insert(0, out_dir)
    from squeeze.v1 import squeeze_pb2  # pylint: disable=import-outside-toplevel
    return squeeze_pb2


class SqueezeStub:
    """Hand-made stubs for the squeeze.v1.Squeeze methods this script uses."""

    def __init__(self, channel, pb):
        def method(kind, name, request, response):
            return getattr(channel, kind)(
                f"/squeeze.v1.Squeeze/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString)

        self.UploadBlob = method("stream_unary", "UploadBlob", pb.UploadChunk,
                                 pb.UploadBlobResponse)
        self.DownloadBlob = method("unary_stream", "DownloadBlob", pb.DownloadBlobRequest,
                                   pb.DownloadChunk)
        self.SubmitJob = method("unary_unary", "SubmitJob", pb.SubmitJobRequest,
                                pb.SubmitJobResponse)
        self.WatchJob = method("unary_stream", "WatchJob", pb.WatchJobRequest, pb.JobEvent)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def upload(stub, pb, path, kind, metadata, deadline):
    """Uploads `path` as a header then 1 MiB chunks; returns its BlobRef."""
    size = os.path.getsize(path)
    if size == 0:
        raise CheckFailed(f"{path} is empty")

    def chunks():
        yield pb.UploadChunk(header=pb.UploadHeader(
            kind=kind, size_bytes=size, sha256=sha256_file(path),
            filename=os.path.basename(path)))
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK_BYTES), b""):
                yield pb.UploadChunk(data=block)

    response = stub.UploadBlob(chunks(), metadata=metadata, timeout=remaining(deadline))
    note = " (already present)" if response.already_present else ""
    print(f"uploaded {path}: {response.blob.sha256} {response.blob.size_bytes} bytes{note}")
    return response.blob


def remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise CheckFailed("overall timeout reached")
    return left


def check_health_and_reflection(channel, deadline):
    """The standard gRPC health service answers SERVING, and server
    reflection lists our services. Both protocols' messages are tiny, so they
    are written as raw protobuf bytes rather than generated code."""
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda raw: raw,
                                response_deserializer=lambda raw: raw)
    # HealthCheckRequest{service: ""} is empty; HealthCheckResponse{status:
    # SERVING (1)} is field 1 varint 1.
    if check(b"", timeout=min(10, remaining(deadline))) != b"\x08\x01":
        raise CheckFailed("health service did not answer SERVING")
    reflect = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
    # ServerReflectionRequest{list_services: ""}: field 7, length-delimited, empty.
    replies = b"".join(reflect(iter([b"\x3a\x00"]), timeout=min(10, remaining(deadline))))
    for service in (b"squeeze.v1.Squeeze", b"squeeze.v1.WorkerControl"):
        if service not in replies:
            raise CheckFailed(f"server reflection does not list {service.decode()}")
    print("health: SERVING; reflection lists squeeze.v1.Squeeze and WorkerControl")


def run(args):
    deadline = time.monotonic() + args.timeout
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    with tempfile.TemporaryDirectory(prefix="squeeze_py_") as tmp:
        pb = load_messages(tmp)
        with grpc.insecure_channel(args.addr) as channel:
            check_health_and_reflection(channel, deadline)
            stub = SqueezeStub(channel, pb)

            spec = pb.JobSpec()
            spec.model.CopyFrom(upload(stub, pb, args.model, pb.BLOB_KIND_MODEL, metadata,
                                       deadline))
            if args.calibration:
                spec.calibration_dataset.CopyFrom(upload(
                    stub, pb, args.calibration, pb.BLOB_KIND_DATASET, metadata, deadline))
            spec.recipe.passes.add().quantize.bits = args.bits
            spec.labels["client"] = "python"

            submitted = stub.SubmitJob(pb.SubmitJobRequest(spec=spec), metadata=metadata,
                                       timeout=min(30, remaining(deadline)))
            job_id = submitted.job.id
            print(f"submitted {job_id}")

            final_states = {pb.SUCCEEDED, pb.FAILED, pb.CANCELLED}
            job = None
            for event in stub.WatchJob(pb.WatchJobRequest(id=job_id), metadata=metadata,
                                       timeout=remaining(deadline)):
                job = event.job
                progress = job.progress
                steps = f" {progress.step}/{progress.total}" if progress.total > 0 else ""
                print(f"{pb.JobState.Name(job.state)} {progress.fraction * 100:.0f}% "
                      f"{progress.stage}{steps}", flush=True)
                if job.state in final_states:
                    break
            if job is None or job.state not in final_states:
                raise CheckFailed("the watch stream ended before a final state")
            if job.state != pb.SUCCEEDED:
                raise CheckFailed(f"job {job_id} ended {pb.JobState.Name(job.state)}: "
                                  f"{job.error.message}")

            variants = [v for v in job.variants if v.artifact.sha256]
            if not variants:
                raise CheckFailed(f"job {job_id} has no variant with an artifact")
            artifact = variants[0].artifact

            digest = hashlib.sha256()
            size = 0
            out_path = os.path.join(tmp, "artifact.safetensors")
            with open(out_path, "wb") as out:
                for chunk in stub.DownloadBlob(pb.DownloadBlobRequest(sha256=artifact.sha256),
                                               metadata=metadata, timeout=remaining(deadline)):
                    out.write(chunk.data)
                    digest.update(chunk.data)
                    size += len(chunk.data)
            if digest.hexdigest() != artifact.sha256:
                raise CheckFailed(f"artifact {artifact.sha256} downloaded with digest "
                                  f"{digest.hexdigest()}")
            model_size = os.path.getsize(args.model)
            if size >= model_size:
                raise CheckFailed(f"artifact is {size} bytes, not smaller than the model's "
                                  f"{model_size}")
            print(f"ok: {job_id} {variants[0].technique} on {variants[0].device}: "
                  f"{size} bytes from {model_size}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addr", default=os.environ.get("SQUEEZE_ADDR", "127.0.0.1:7400"))
    parser.add_argument("--token", default=os.environ.get("SQUEEZE_TOKEN", ""))
    parser.add_argument("--model", required=True)
    parser.add_argument("--calibration")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds for the whole run")
    args = parser.parse_args()
    try:
        run(args)
    except (CheckFailed, OSError, subprocess.CalledProcessError) as error:
        print(f"python_client: FAIL: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        print(f"python_client: FAIL: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
