"""Domain errors and their gRPC status.

Domain code raises these; the server interceptor turns them into a status with a message that
names the field, plus google.rpc rich details (BadRequest for invalid fields). Anything else
escaping a servicer is a bug and surfaces as INTERNAL with no detail leaked.
"""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2


class DomainError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=self.message)


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def to_status(self) -> status_pb2.Status:
        status = super().to_status()
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=self.field, description=self.problem
                )
            ]
        )
        status.details.add().Pack(detail)
        return status


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
