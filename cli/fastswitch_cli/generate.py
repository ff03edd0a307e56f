"""`fastswitch generate`: stream a completion from a running scheduler (--addr) or from the
engine in-process (--local --model DIR)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace

import grpc

from fastswitch import settings, transport
from fastswitch.tokenizer import IncrementalDetokenizer
from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_worker.engine.config import EngineConfig

FINISH_NAMES = {common_pb2.FINISH_REASON_STOP: "stop", common_pb2.FINISH_REASON_LENGTH: "length",
                common_pb2.FINISH_REASON_ABORTED: "aborted"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ignore-eos", action="store_true")
    parser.add_argument("--conversation", "--conversation-id", dest="conversation_id", default="",
                        help="conversation id: the next turn reuses this turn's KV")
    parser.add_argument("--json", action="store_true", help="one JSON object per streamed chunk")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--addr", help="scheduler HOST:PORT")
    target.add_argument("--local", action="store_true", help="run the engine in this process")
    # With --local: the engine's own settings.
    settings.add_arguments(parser, EngineConfig, only=("model", "device", "dtype"))
    parser.add_argument("--tenant-token", "--token", dest="token", default="",
                        help="bearer token identifying the tenant to the scheduler")
    parser.add_argument("--tls", action="store_true",
                        help="connect over TLS, verifying the scheduler with the system's CAs")
    parser.add_argument("--ca", default="", metavar="PEM",
                        help="connect over TLS, verifying the scheduler with this CA (implies --tls)")
    parser.add_argument("--cert", default="", metavar="PEM",
                        help="client certificate, when the scheduler requires mTLS")
    parser.add_argument("--key", default="", metavar="PEM", help="private key of --cert")


def run(args: argparse.Namespace) -> int:
    if args.addr is not None and not _has_port(args.addr):
        print(f"error: --addr must be HOST:PORT, got {args.addr!r}", file=sys.stderr)
        return 2
    chunks = _local(args) if args.local else _remote(args)
    try:
        for token_ids, text, finish in chunks:
            if args.json:
                print(json.dumps({"token_ids": token_ids, "text": text, "finish_reason": finish}),
                      flush=True)
            else:
                sys.stdout.write(text)
                sys.stdout.flush()
    except grpc.RpcError as exc:
        print(f"\nerror: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `generate --json | head -1`: the reader is done, so are we
        chunks.close()  # ends the stream (the scheduler cancels the request)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    if not args.json:
        print()
    return 0


def _remote(args: argparse.Namespace) -> Iterator[tuple[list[int], str, str | None]]:
    request = scheduler_pb2.GenerateRequest(
        text=args.prompt, conversation_id=args.conversation_id,
        sampling=common_pb2.SamplingParams(temperature=args.temperature, top_p=args.top_p,
                                           top_k=args.top_k, seed=args.seed),
        stop=common_pb2.StopConditions(max_tokens=args.max_tokens, ignore_eos=args.ignore_eos))
    metadata = transport.bearer_metadata(args.token)
    with _channel(args) as channel:
        for response in scheduler_pb2_grpc.SchedulerStub(channel).Generate(request, metadata=metadata):
            yield list(response.token_ids), response.text, FINISH_NAMES.get(response.finish_reason)


def _has_port(address: str) -> bool:
    """gRPC reads a target without a port as port 443: refuse it instead."""
    _, sep, port = address.rpartition(":")
    return bool(sep) and port.isdigit() and not address.endswith("]")


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext unless --tls or --ca; raises ValueError for missing or unreadable files."""
    if not (args.tls or args.ca):
        return grpc.insecure_channel(args.addr)
    security = transport.TransportSecurity(tls_ca=args.ca, tls_cert=args.cert, tls_key=args.key)
    return grpc.secure_channel(args.addr, transport.channel_credentials(security))


def _local(args: argparse.Namespace) -> Iterator[tuple[list[int], str, str | None]]:
    from fastswitch_worker.engine.engine import Engine
    from fastswitch_worker.engine.sequence import SamplingParams, StopConditions

    engine = Engine(replace(settings.from_args(EngineConfig, args), seed=args.seed or 0))
    try:
        prompt = engine.tokenizer.encode(args.prompt)
        engine.add_request("local", prompt, sampling=SamplingParams(
            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed),
            stop=StopConditions(max_tokens=args.max_tokens, ignore_eos=args.ignore_eos))
        detokenizer = IncrementalDetokenizer(engine.tokenizer, prompt_token_ids=prompt)
        while engine.has_unfinished_requests():
            for output in engine.step().outputs:
                text = detokenizer.feed(list(output.new_token_ids))
                finish = output.finish_reason.value if output.finish_reason else None
                if finish:
                    text += detokenizer.flush()
                yield list(output.new_token_ids), text, finish
    finally:
        engine.close()
