"""fastswitch.transport with real gRPC servers on 127.0.0.1: the decode guard, the cluster
credential, TLS and mTLS handshakes, and a port in use being an error."""

from __future__ import annotations

import argparse
import asyncio
import collections

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fastswitch import grpc_server, settings, transport
from fastswitch.v1 import common_pb2

TOKEN = "t" * 32
GARBAGE = b"\xff\xff\xff\xff"  # field 31, wire type 7: not a protobuf message
Usage = common_pb2.Usage


async def _unary(request: Usage, context) -> Usage:
    return Usage(num_prompt_tokens=request.num_prompt_tokens + 1)


async def _unary_stream(request: Usage, context):
    for i in range(request.num_prompt_tokens):
        yield Usage(num_prompt_tokens=i)


async def _stream_stream(request_iterator, context):
    async for request in request_iterator:
        yield Usage(num_prompt_tokens=request.num_prompt_tokens * 2)


def _echo_handler() -> grpc.GenericRpcHandler:
    kwargs = dict(request_deserializer=Usage.FromString, response_serializer=Usage.SerializeToString)
    return grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, **kwargs),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(_unary_stream, **kwargs),
        "StreamStream": grpc.stream_stream_rpc_method_handler(_stream_stream, **kwargs),
    })


async def _start(security: transport.TransportSecurity, *, require_cluster_token: bool):
    server = transport.server(security, require_cluster_token=require_cluster_token)
    server.add_generic_rpc_handlers([_echo_handler()])
    health = grpc_server.ServiceHealth(server, "test.Echo")
    port = transport.bind(server, "127.0.0.1:0", security)
    await server.start()
    await health.set(True)
    return server, port


def _raw(channel: grpc.aio.Channel, kind: str, method: str):
    return getattr(channel, kind)(f"/test.Echo/{method}", request_serializer=lambda b: b,
                                  response_deserializer=Usage.FromString)


def _typed(channel: grpc.aio.Channel, kind: str, method: str):
    return getattr(channel, kind)(f"/test.Echo/{method}", request_serializer=Usage.SerializeToString,
                                  response_deserializer=Usage.FromString)


async def test_undecodable_messages_get_invalid_argument_and_the_server_keeps_serving():
    server, port = await _start(transport.TransportSecurity(), require_cluster_token=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await _raw(channel, "unary_unary", "Unary")(GARBAGE, timeout=5)
            assert unary.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as server_stream:
                async for _ in _raw(channel, "unary_stream", "UnaryStream")(GARBAGE, timeout=5):
                    pass
            assert server_stream.value.code() is grpc.StatusCode.INVALID_ARGUMENT

            async def good_then_garbage():
                yield Usage(num_prompt_tokens=3).SerializeToString()
                yield GARBAGE

            received = []
            with pytest.raises(grpc.aio.AioRpcError) as bidi:
                async for response in _raw(channel, "stream_stream", "StreamStream")(
                        good_then_garbage(), timeout=5):
                    received.append(response.num_prompt_tokens)
            assert bidi.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert received == [6]  # the good message was served before the bad one ended it
            ok = await _typed(channel, "unary_unary", "Unary")(Usage(num_prompt_tokens=1), timeout=5)
            assert ok.num_prompt_tokens == 2
    finally:
        await server.stop(0)


async def test_internal_port_refuses_calls_without_the_cluster_token_but_not_health():
    security = transport.TransportSecurity(cluster_token=TOKEN)
    server, port = await _start(security, require_cluster_token=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as anonymous:
            for metadata in ((), (("authorization", "Bearer " + "x" * 32),),
                             (("authorization", TOKEN),)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await _typed(anonymous, "unary_unary", "Unary")(Usage(), metadata=metadata, timeout=5)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as refused_stream:
                async for _ in _typed(anonymous, "unary_stream", "UnaryStream")(
                        Usage(num_prompt_tokens=2), timeout=5):
                    pass
            assert refused_stream.value.code() is grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(anonymous)
            status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        async with transport.channel(f"127.0.0.1:{port}", security) as member:
            reply = await _typed(member, "unary_unary", "Unary")(Usage(num_prompt_tokens=4), timeout=5)
            assert reply.num_prompt_tokens == 5
            stream = _typed(member, "stream_stream", "StreamStream")(
                iter([Usage(num_prompt_tokens=1), Usage(num_prompt_tokens=2)]), timeout=5)
            assert [r.num_prompt_tokens async for r in stream] == [2, 4]
    finally:
        await server.stop(0)


async def test_internal_port_without_a_configured_token_refuses_everyone():
    server, port = await _start(transport.TransportSecurity(), require_cluster_token=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _typed(channel, "unary_unary", "Unary")(
                    Usage(), metadata=(("authorization", "Bearer "),), timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)


async def test_tls_handshake_and_mutual_tls(tls_files):
    server_side = transport.TransportSecurity(
        tls_cert=str(tls_files.server_cert), tls_key=str(tls_files.server_key),
        tls_client_ca=str(tls_files.ca))
    server, port = await _start(server_side, require_cluster_token=False)
    address = f"localhost:{port}"
    try:
        with_client_cert = transport.TransportSecurity(
            tls_ca=str(tls_files.ca), tls_cert=str(tls_files.client_cert),
            tls_key=str(tls_files.client_key))
        async with transport.channel(address, with_client_cert) as channel:
            reply = await _typed(channel, "unary_unary", "Unary")(Usage(num_prompt_tokens=1), timeout=10)
            assert reply.num_prompt_tokens == 2
        without_client_cert = transport.TransportSecurity(tls_ca=str(tls_files.ca))
        async with transport.channel(address, without_client_cert) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _typed(channel, "unary_unary", "Unary")(Usage(), timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # handshake refused
        async with grpc.aio.insecure_channel(address) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError):
                await _typed(plaintext, "unary_unary", "Unary")(Usage(), timeout=5)
    finally:
        await server.stop(0)


async def test_a_pod_dialled_by_ip_is_verified_by_its_service_name(tls_files):
    """The scheduler dials worker pods by IP; their certificate names the Service."""
    server_side = transport.TransportSecurity(tls_cert=str(tls_files.service_cert),
                                              tls_key=str(tls_files.service_key))
    server, port = await _start(server_side, require_cluster_token=False)
    client_side = transport.TransportSecurity(tls_ca=str(tls_files.ca))
    try:
        async with transport.channel(f"127.0.0.1:{port}", client_side,
                                     server_name="fastswitch-workers.test.svc") as channel:
            reply = await _typed(channel, "unary_unary", "Unary")(Usage(num_prompt_tokens=1), timeout=10)
            assert reply.num_prompt_tokens == 2
        async with transport.channel(f"127.0.0.1:{port}", client_side) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:  # the IP is not in the cert
                await _typed(channel, "unary_unary", "Unary")(Usage(), timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_a_burst_of_thousands_of_streams_all_reach_the_application():
    """gRPC core's default pending-call limits (1,000 soft, 3,000 hard) silently CANCELled about
    a third of 4,096 concurrent streams before any handler saw them."""
    server, port = await _start(transport.TransportSecurity(), require_cluster_token=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = _typed(channel, "unary_stream", "UnaryStream")

            async def one() -> str:
                try:
                    return "OK" if [r async for r in call(Usage(num_prompt_tokens=2))] else "EMPTY"
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name

            endings = await asyncio.gather(*(one() for _ in range(4096)))
        assert collections.Counter(endings) == {"OK": 4096}
    finally:
        await server.stop(0)


async def test_a_port_in_use_is_an_error():
    first, port = await _start(transport.TransportSecurity(), require_cluster_token=False)
    second = transport.server(transport.TransportSecurity(), require_cluster_token=False)
    try:
        with pytest.raises(OSError, match="cannot bind"):
            transport.bind(second, f"127.0.0.1:{port}", transport.TransportSecurity())
    finally:
        await first.stop(0)
        await second.stop(0)


def security_from(argv: list[str], environ: dict[str, str]) -> transport.TransportSecurity:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, transport.TransportSecurity)
    return settings.from_args(transport.TransportSecurity, parser.parse_args(argv), environ)


def test_flags_and_environment_fill_the_settings(tmp_path, tls_files):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    security = security_from(["--cluster-token-file", str(token_file)],
                             {"FASTSWITCH_TLS_CA": str(tls_files.ca)})
    assert security.cluster_token == TOKEN and security.tls_ca == str(tls_files.ca)
    assert security_from([], {transport.CLUSTER_TOKEN_ENV: TOKEN}).cluster_token == TOKEN
    assert security_from([], {"FASTSWITCH_CLUSTER_TOKEN_FILE": str(token_file)}
                         ).cluster_token == TOKEN


def test_the_cluster_token_never_goes_on_a_command_line(tls_files):
    security = transport.TransportSecurity(tls_ca=str(tls_files.ca), cluster_token=TOKEN)
    assert settings.to_args(security) == [f"--tls-ca={tls_files.ca}"]
    assert settings.to_env(security) == {transport.CLUSTER_TOKEN_ENV: TOKEN}
    assert TOKEN not in repr(security)
    assert security_from(settings.to_args(security), settings.to_env(security)) == security


def test_an_unreadable_token_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot read --cluster-token-file"):
        security_from(["--cluster-token-file", str(tmp_path / "missing")], {})


@pytest.mark.parametrize("values, message", [
    (dict(tls_cert="x.pem"), "go together"),
    (dict(tls_client_ca="ca.pem"), "needs --tls-cert"),
    (dict(tls_ca="/no/such/ca.pem"), "no such file"),
    (dict(cluster_token="short"), "at least 16"),
    (dict(cluster_token="a token with spaces in it"), "without spaces"),
])
def test_incomplete_settings_are_refused(values, message):
    with pytest.raises(transport.TransportConfigError, match=message):
        transport.TransportSecurity(**values)
