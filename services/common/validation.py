"""Request validation shared by every service.

Each check raises InvalidArgument naming its field. A servicer checks a whole request inside
`with Fields() as v:` so that INVALID_ARGUMENT lists every bad field at once, not the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from fanline.common.config import ID_MAX_CHARS, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, TEXT_MAX_CHARS
from fanline.common.errors import InvalidArgument

T = TypeVar("T")

# Ids end up inside Redis keys and hash tags, so braces, whitespace and control characters
# are refused rather than escaped.
_ID_PATTERN = re.compile(r"[A-Za-z0-9._@:\-]+")
_POST_ID_PATTERN = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also admits "²" and "٣"
# google.protobuf.Timestamp's own range: 0001-01-01 to 9999-12-31.
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)


def user_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > ID_MAX_CHARS:
        raise InvalidArgument(field, f"must be at most {ID_MAX_CHARS} characters")
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidArgument(field, "may contain only letters, digits and . _ @ : -")
    return value


def post_id(value: str, field: str = "post_id") -> int:
    """Post ids are decimal integers we issued; anything else cannot name a post."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > ID_MAX_CHARS or not _POST_ID_PATTERN.fullmatch(value) or int(value) <= 0:
        raise InvalidArgument(field, "must be a post id issued by Fanline (a positive integer)")
    return int(value)


def text(value: str, field: str = "text") -> str:
    if not value or not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > TEXT_MAX_CHARS:
        raise InvalidArgument(field, f"must be at most {TEXT_MAX_CHARS} characters")
    return value


def optional_request_id(value: str, field: str = "request_id") -> str:
    return user_id(value, field) if value else ""


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    if value == 0:
        return PAGE_SIZE_DEFAULT
    return min(value, PAGE_SIZE_MAX)


def timestamp_ms(value: Timestamp, field: str) -> int:
    """Milliseconds since the epoch of a Timestamp inside its documented range."""
    low, high = _TIMESTAMP_SECONDS
    if not low <= value.seconds <= high or not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument(field, "must be a valid timestamp (years 1 to 9999)")
    return value.seconds * 1000 + value.nanos // 1_000_000


class Fields:
    """Collects the violations of one request; leaving the block raises them all together.

    Each method returns the checked value, or a neutral one when the field is bad: those are
    never used, since the block then raises.
    """

    def __init__(self) -> None:
        self.violations: list[tuple[str, str]] = []

    def __enter__(self) -> Fields:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None and self.violations:
            raise InvalidArgument.of(self.violations)

    def check(self, parse: Callable[[], T], neutral: T) -> T:
        """Runs a check of its own (a page token, say), recording its InvalidArgument."""
        try:
            return parse()
        except InvalidArgument as error:
            self.violations += error.violations
            return neutral

    def add(self, field: str, problem: str) -> None:
        self.violations.append((field, problem))

    def user_id(self, value: str, field: str) -> str:
        return self.check(lambda: user_id(value, field), "")

    def post_id(self, value: str, field: str = "post_id") -> int:
        return self.check(lambda: post_id(value, field), 0)

    def text(self, value: str, field: str = "text") -> str:
        return self.check(lambda: text(value, field), "")

    def optional_request_id(self, value: str, field: str = "request_id") -> str:
        return self.check(lambda: optional_request_id(value, field), "")

    def page_size(self, value: int, field: str = "page_size") -> int:
        return self.check(lambda: page_size(value, field), PAGE_SIZE_DEFAULT)

    def timestamp_ms(self, value: Timestamp, field: str) -> int:
        return self.check(lambda: timestamp_ms(value, field), 0)
