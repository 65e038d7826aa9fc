"""Request validation shared by every service. Raises InvalidArgument naming the field."""

from __future__ import annotations

import re

from services.common.config import ID_MAX_CHARS, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, TEXT_MAX_CHARS
from services.common.errors import InvalidArgument

# Ids end up inside Redis keys and hash tags, so braces, whitespace and control characters
# are refused rather than escaped.
_ID_PATTERN = re.compile(r"[A-Za-z0-9._@:\-]+")


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
    if len(value) > ID_MAX_CHARS or not value.isdigit() or int(value) <= 0:
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
