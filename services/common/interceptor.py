"""The one shape of a server interceptor that wraps calls: the error mapping, tracing and RPC
metrics each say what to do around a call; this class does the gRPC plumbing once.

Server-streaming handlers are written as coroutines that send with `context.write` (not as
async generators), so they have the unary shape (request, context) -> awaitable and the same
wrappers apply: the call ends when the coroutine returns or aborts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class UnaryServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the unary-unary and unary-stream handlers of every method it `applies_to`; other
    calls pass."""

    def applies_to(self, method: str) -> bool:
        return True

    def wrap(self, method: str, inner: Unary) -> Unary:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not self.applies_to(method):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self.wrap(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
