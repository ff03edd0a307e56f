"""OpenAI error bodies, `{"error": {"message", "type", "param", "code"}}`, and the one table
that maps the gRPC status codes the core produces onto HTTP statuses."""

from __future__ import annotations

import json
from typing import NamedTuple

import grpc
from aiohttp import web


class HttpStatus(NamedTuple):
    status: int
    type: str  # the OpenAI error `type`


# Every status the frontend, the scheduler or a worker can end a request with.
HTTP_BY_GRPC: dict[grpc.StatusCode, HttpStatus] = {
    grpc.StatusCode.INVALID_ARGUMENT: HttpStatus(400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: HttpStatus(400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: HttpStatus(400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: HttpStatus(401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: HttpStatus(403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: HttpStatus(404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: HttpStatus(409, "conflict_error"),
    grpc.StatusCode.ABORTED: HttpStatus(409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpStatus(429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: HttpStatus(499, "cancelled_error"),
    grpc.StatusCode.UNIMPLEMENTED: HttpStatus(501, "server_error"),
    grpc.StatusCode.UNAVAILABLE: HttpStatus(503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpStatus(504, "timeout_error"),
}
INTERNAL = HttpStatus(500, "server_error")  # INTERNAL, UNKNOWN, DATA_LOSS and anything else


class ApiError(Exception):
    """Ends an HTTP request with an OpenAI error body (or, once a stream has begun, with an
    error event)."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    @classmethod
    def from_grpc(cls, code: grpc.StatusCode, message: str) -> ApiError:
        mapped = HTTP_BY_GRPC.get(code, INTERNAL)
        return cls(mapped.status, message, type=mapped.type, code=code.name.lower())

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=json.dumps(self.body()),
                            content_type="application/json")


def invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model `{model[:200]}` does not exist.", param="model",
                    code="model_not_found")


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, message, type="authentication_error", code="invalid_api_key")
