from fanline_client._gen.feed.v1 import post_pb2 as _post_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_MODE_UNSPECIFIED: _ClassVar[DeliveryMode]
    DELIVERY_MODE_PUSH: _ClassVar[DeliveryMode]
    DELIVERY_MODE_PULL: _ClassVar[DeliveryMode]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_QUEUED: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FAILED: _ClassVar[DeliveryState]
DELIVERY_MODE_UNSPECIFIED: DeliveryMode
DELIVERY_MODE_PUSH: DeliveryMode
DELIVERY_MODE_PULL: DeliveryMode
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_QUEUED: DeliveryState
DELIVERY_STATE_DELIVERING: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_FAILED: DeliveryState

class FollowRequest(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ...) -> None: ...

class FollowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnfollowRequest(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ...) -> None: ...

class UnfollowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFollowersRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFollowersResponse(_message.Message):
    __slots__ = ("user_ids", "next_page_token")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFollowingRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFollowingResponse(_message.Message):
    __slots__ = ("user_ids", "next_page_token")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetAuthorRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetAuthorResponse(_message.Message):
    __slots__ = ("user_id", "follower_count", "following_count", "delivery_mode")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWER_COUNT_FIELD_NUMBER: _ClassVar[int]
    FOLLOWING_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_MODE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    follower_count: int
    following_count: int
    delivery_mode: DeliveryMode
    def __init__(self, user_id: _Optional[str] = ..., follower_count: _Optional[int] = ..., following_count: _Optional[int] = ..., delivery_mode: _Optional[_Union[DeliveryMode, str]] = ...) -> None: ...

class PublishPostRequest(_message.Message):
    __slots__ = ("post",)
    POST_FIELD_NUMBER: _ClassVar[int]
    post: _post_pb2.Post
    def __init__(self, post: _Optional[_Union[_post_pb2.Post, _Mapping]] = ...) -> None: ...

class PublishPostResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetractPostRequest(_message.Message):
    __slots__ = ("post_id", "author_id")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    author_id: str
    def __init__(self, post_id: _Optional[str] = ..., author_id: _Optional[str] = ...) -> None: ...

class RetractPostResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFanoutStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFanoutStatsResponse(_message.Message):
    __slots__ = ("posts_published", "inbox_writes", "write_amplification", "queue_depth", "posts_push", "posts_pull", "inbox_writes_skipped_inactive", "queue_pending", "queue_reclaimed", "inbox_rebuilds", "publish_refused_queue_full")
    POSTS_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    INBOX_WRITES_FIELD_NUMBER: _ClassVar[int]
    WRITE_AMPLIFICATION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    POSTS_PUSH_FIELD_NUMBER: _ClassVar[int]
    POSTS_PULL_FIELD_NUMBER: _ClassVar[int]
    INBOX_WRITES_SKIPPED_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_PENDING_FIELD_NUMBER: _ClassVar[int]
    QUEUE_RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    INBOX_REBUILDS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_REFUSED_QUEUE_FULL_FIELD_NUMBER: _ClassVar[int]
    posts_published: int
    inbox_writes: int
    write_amplification: float
    queue_depth: int
    posts_push: int
    posts_pull: int
    inbox_writes_skipped_inactive: int
    queue_pending: int
    queue_reclaimed: int
    inbox_rebuilds: int
    publish_refused_queue_full: int
    def __init__(self, posts_published: _Optional[int] = ..., inbox_writes: _Optional[int] = ..., write_amplification: _Optional[float] = ..., queue_depth: _Optional[int] = ..., posts_push: _Optional[int] = ..., posts_pull: _Optional[int] = ..., inbox_writes_skipped_inactive: _Optional[int] = ..., queue_pending: _Optional[int] = ..., queue_reclaimed: _Optional[int] = ..., inbox_rebuilds: _Optional[int] = ..., publish_refused_queue_full: _Optional[int] = ...) -> None: ...

class GetDeliveryRequest(_message.Message):
    __slots__ = ("post_id",)
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    def __init__(self, post_id: _Optional[str] = ...) -> None: ...

class GetDeliveryResponse(_message.Message):
    __slots__ = ("post_id", "delivery_mode", "state", "followers_targeted", "inbox_writes", "lag_ms", "trace_id")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_MODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FOLLOWERS_TARGETED_FIELD_NUMBER: _ClassVar[int]
    INBOX_WRITES_FIELD_NUMBER: _ClassVar[int]
    LAG_MS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    delivery_mode: DeliveryMode
    state: DeliveryState
    followers_targeted: int
    inbox_writes: int
    lag_ms: int
    trace_id: str
    def __init__(self, post_id: _Optional[str] = ..., delivery_mode: _Optional[_Union[DeliveryMode, str]] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., followers_targeted: _Optional[int] = ..., inbox_writes: _Optional[int] = ..., lag_ms: _Optional[int] = ..., trace_id: _Optional[str] = ...) -> None: ...
