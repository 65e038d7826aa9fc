"""Domain errors and their gRPC status.

Domain code raises these; the server interceptor turns them into a status with a message that
names the fields, plus google.rpc rich details (a BadRequest listing every invalid field),
encoded by grpcio-status. Anything else escaping a servicer is a bug and surfaces as INTERNAL
with no detail leaked. docs/security.md lists which RPC answers which code.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class DomainError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=self.message)

    def to_grpc_status(self) -> grpc.Status:
        """Code, message and the `grpc-status-details-bin` trailer carrying `to_status()`."""
        return rpc_status.to_status(self.to_status())


class InvalidArgument(DomainError):
    """One or more invalid fields: `InvalidArgument(field, problem)` or `.of(violations)`."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        self.violations: list[tuple[str, str]] = [(field, problem)]
        super().__init__(f"{field}: {problem}")

    @classmethod
    def of(cls, violations: Sequence[tuple[str, str]]) -> InvalidArgument:
        error = cls(*violations[0])
        error.violations = list(violations)
        error.message = "; ".join(f"{f}: {p}" for f, p in violations)
        error.args = (error.message,)
        return error

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.violations]

    @property
    def field(self) -> str:
        return self.violations[0][0]

    @property
    def problem(self) -> str:
        return self.violations[0][1]

    def to_status(self) -> status_pb2.Status:
        status = super().to_status()
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=p)
            for f, p in self.violations
        ]))
        return status


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
