"""Python client of Sesame, the gRPC access-request service.

``SesameClient`` wraps the generated stubs (bearer key, default deadline,
retry of UNAVAILABLE, resumable watch). The generated modules are re-exported
here: ``access_request_pb2``, ``event_pb2``, ``email_pb2`` (messages and
enums) and their ``*_pb2_grpc`` counterparts (stubs). They live in
``sesame_client._gen`` and are made by ``buf generate`` (see README.md).
"""

from ._client import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    DEFAULT_WATCH_RECONNECT,
    SesameClient,
    __version__,
    parse_target,
)
from ._errors import FieldViolation, SesameError
from ._gen.sesame.v1 import (
    access_request_pb2,
    access_request_pb2_grpc,
    email_pb2,
    email_pb2_grpc,
    event_pb2,
    event_pb2_grpc,
)
from ._interceptor import NO_RETRY, RetryPolicy, SesameInterceptor
from ._watch import EventWatch

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WATCH_RECONNECT",
    "NO_RETRY",
    "EventWatch",
    "FieldViolation",
    "RetryPolicy",
    "SesameClient",
    "SesameError",
    "SesameInterceptor",
    "__version__",
    "access_request_pb2",
    "access_request_pb2_grpc",
    "email_pb2",
    "email_pb2_grpc",
    "event_pb2",
    "event_pb2_grpc",
    "parse_target",
]
