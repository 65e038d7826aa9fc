from fanline_client._gen.feed.v1 import post_pb2 as _post_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntrySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_SOURCE_UNSPECIFIED: _ClassVar[EntrySource]
    ENTRY_SOURCE_INBOX: _ClassVar[EntrySource]
    ENTRY_SOURCE_PULL: _ClassVar[EntrySource]
ENTRY_SOURCE_UNSPECIFIED: EntrySource
ENTRY_SOURCE_INBOX: EntrySource
ENTRY_SOURCE_PULL: EntrySource

class GetTimelineRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TimelineEntry(_message.Message):
    __slots__ = ("post", "source")
    POST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    post: _post_pb2.Post
    source: EntrySource
    def __init__(self, post: _Optional[_Union[_post_pb2.Post, _Mapping]] = ..., source: _Optional[_Union[EntrySource, str]] = ...) -> None: ...

class GetTimelineResponse(_message.Message):
    __slots__ = ("entries", "next_page_token", "partial")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[TimelineEntry]
    next_page_token: str
    partial: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[TimelineEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., partial: _Optional[bool] = ...) -> None: ...

class WatchTimelineRequest(_message.Message):
    __slots__ = ("user_id", "resume_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    resume_token: str
    def __init__(self, user_id: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class WatchTimelineResponse(_message.Message):
    __slots__ = ("entry", "removed_post_id", "resume_token")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REMOVED_POST_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entry: TimelineEntry
    removed_post_id: str
    resume_token: str
    def __init__(self, entry: _Optional[_Union[TimelineEntry, _Mapping]] = ..., removed_post_id: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...
