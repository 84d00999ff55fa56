"""SesameClient: a thin, typed wrapper over the generated gRPC stubs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar, overload

import grpc
from google.protobuf import timestamp_pb2

from ._errors import SesameError
from ._gen.sesame.v1 import (
    access_request_pb2,
    access_request_pb2_grpc,
    email_pb2_grpc,
    event_pb2,
    event_pb2_grpc,
)
from ._interceptor import RetryPolicy, SesameInterceptor
from ._watch import EventWatch

__version__ = "0.1.0"

DEFAULT_TIMEOUT = 10.0
"""Seconds given to a unary call that has no deadline of its own."""

DEFAULT_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.2, max_backoff=5.0)
"""Unary calls: up to 5 attempts, ~0.2 s, 0.4 s, 0.8 s, 1.6 s apart (+-20 %)."""

DEFAULT_WATCH_RECONNECT = RetryPolicy(max_attempts=10, initial_backoff=0.2, max_backoff=5.0)
"""Watch streams: up to 10 consecutive attempts to reopen (~25 s in all)."""

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

AccessRequest: TypeAlias = access_request_pb2.AccessRequest
UserType: TypeAlias = access_request_pb2.UserType.ValueType
AccessRequestState: TypeAlias = access_request_pb2.AccessRequestState.ValueType
EventType: TypeAlias = event_pb2.EventType.ValueType


def parse_target(target: str) -> tuple[str, bool | None]:
    """Split ``http://host:port`` / ``https://host[:port]`` into a gRPC target
    and whether TLS is implied; other targets (``host:port``, ``dns:///...``,
    ``unix:...``) are returned unchanged with ``None``."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme not in ("http", "https"):
        return target, None
    tls = scheme == "https"
    host = rest.split("/", 1)[0]
    has_port = "]:" in host if host.startswith("[") else ":" in host
    if not has_port:
        host = f"{host}:{443 if tls else 80}"
    return host, tls


class SesameClient:
    """Client of the Sesame gRPC API.

    ``target`` is ``host:port`` (plaintext unless ``tls``), ``http://host:port``
    or ``https://host[:port]`` (TLS), or any gRPC target name. Every call,
    through the methods below or the raw stubs (``access_request_service``,
    ``event_service``, ``email_service``), carries ``authorization: Bearer
    <api_key>``; unary calls without a ``timeout`` get ``default_timeout``
    seconds, and are retried on UNAVAILABLE per ``retry`` within that
    deadline. ``attempt_timeout`` (seconds, default None: the whole deadline)
    bounds each attempt; a submit carrying a ``request_id`` whose attempt
    ends DEADLINE_EXCEEDED is retried too, since the id returns the request
    the server may have committed instead of creating a second one. No other
    call is retried on DEADLINE_EXCEEDED. The methods raise ``SesameError``; the raw stubs raise grpc's
    ``RpcError`` (decode it with ``SesameError.from_rpc_error``).

    TLS: ``tls=True`` (or an ``https://`` target) uses
    ``grpc.ssl_channel_credentials(root_certificates)`` (system roots when
    ``root_certificates`` is None); ``channel_credentials`` overrides both.
    """

    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        tls: bool | None = None,
        root_certificates: bytes | None = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        default_timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        attempt_timeout: float | None = None,
        watch_reconnect: RetryPolicy = DEFAULT_WATCH_RECONNECT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        address, implied_tls = parse_target(target)
        if tls is None:
            tls = bool(implied_tls) or root_certificates is not None
        channel_options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", f"sesame-client-python/{__version__}"),
            # Reconnect quickly after a server restart (gRPC's default backoff
            # grows to 120 s and fails calls fast meanwhile).
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        channel_options.extend(options)
        if channel_credentials is None and tls:
            channel_credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        if channel_credentials is not None:
            self._base_channel = grpc.secure_channel(address, channel_credentials, options=channel_options)
        else:
            self._base_channel = grpc.insecure_channel(address, options=channel_options)
        self.target = address
        self.tls = channel_credentials is not None
        self.default_timeout = default_timeout
        self.retry = retry
        self.attempt_timeout = attempt_timeout
        self.watch_reconnect = watch_reconnect
        self.channel: grpc.Channel = grpc.intercept_channel(
            self._base_channel, SesameInterceptor(api_key, default_timeout, retry, attempt_timeout=attempt_timeout)
        )
        self.access_request_service = access_request_pb2_grpc.AccessRequestServiceStub(self.channel)
        """Raw generated stub of sesame.v1.AccessRequestService (key, deadline, retry applied)."""
        self.event_service = event_pb2_grpc.EventServiceStub(self.channel)
        """Raw generated stub of sesame.v1.EventService."""
        self.email_service = email_pb2_grpc.EmailServiceStub(self.channel)
        """Raw generated stub of sesame.v1.EmailService."""

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the channel; open watches end."""
        self._base_channel.close()

    def __enter__(self) -> SesameClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------

    @staticmethod
    def _call(
        method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req, timeout: float | None
    ) -> _Resp:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as error:
            raise SesameError.from_rpc_error(error) from error

    # -- AccessRequestService ----------------------------------------------

    def submit_access_request(
        self,
        *,
        applicant: access_request_pb2.Applicant,
        user_type: UserType,
        resource: str,
        justification: str,
        consent: access_request_pb2.Consent,
        locale: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AccessRequest:
        """Submit a request; it is PENDING. ``request_id`` (AIP-155) makes
        retries safe: when None a random UUID is sent, so the automatic retry
        of UNAVAILABLE, or of an attempt that timed out (``attempt_timeout``),
        never creates a second request; pass ``""`` to send none (then an
        attempt's DEADLINE_EXCEEDED is not retried)."""
        request = access_request_pb2.SubmitAccessRequestRequest(
            applicant=applicant,
            user_type=user_type,
            locale=locale,
            resource=resource,
            justification=justification,
            consent=consent,
            request_id=str(uuid.uuid4()) if request_id is None else request_id,
        )
        return self._call(
            self.access_request_service.SubmitAccessRequest, request, timeout
        ).access_request

    def get_access_request(self, name: str, *, timeout: float | None = None) -> AccessRequest:
        request = access_request_pb2.GetAccessRequestRequest(name=name)
        return self._call(self.access_request_service.GetAccessRequest, request, timeout).access_request

    def list_access_requests(
        self,
        *,
        state: AccessRequestState = access_request_pb2.ACCESS_REQUEST_STATE_UNSPECIFIED,
        user_type: UserType = access_request_pb2.USER_TYPE_UNSPECIFIED,
        create_time_start: timestamp_pb2.Timestamp | None = None,
        create_time_end: timestamp_pb2.Timestamp | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> access_request_pb2.ListAccessRequestsResponse:
        """One page, newest first; see ``iter_access_requests`` for all."""
        request = access_request_pb2.ListAccessRequestsRequest(
            page_size=page_size,
            page_token=page_token,
            state=state,
            user_type=user_type,
            create_time_start=create_time_start,
            create_time_end=create_time_end,
        )
        return self._call(self.access_request_service.ListAccessRequests, request, timeout)

    def iter_access_requests(
        self,
        *,
        state: AccessRequestState = access_request_pb2.ACCESS_REQUEST_STATE_UNSPECIFIED,
        user_type: UserType = access_request_pb2.USER_TYPE_UNSPECIFIED,
        create_time_start: timestamp_pb2.Timestamp | None = None,
        create_time_end: timestamp_pb2.Timestamp | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[AccessRequest]:
        """Every matching request, newest first, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_access_requests(
                state=state,
                user_type=user_type,
                create_time_start=create_time_start,
                create_time_end=create_time_end,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
            yield from page.access_requests
            token = page.next_page_token
            if not token:
                return

    def approve_access_request(
        self, name: str, *, note: str = "", etag: str = "", timeout: float | None = None
    ) -> AccessRequest:
        request = access_request_pb2.ApproveAccessRequestRequest(name=name, etag=etag, note=note)
        return self._call(
            self.access_request_service.ApproveAccessRequest, request, timeout
        ).access_request

    def reject_access_request(
        self, name: str, *, reason: str, etag: str = "", timeout: float | None = None
    ) -> AccessRequest:
        request = access_request_pb2.RejectAccessRequestRequest(name=name, etag=etag, reason=reason)
        return self._call(
            self.access_request_service.RejectAccessRequest, request, timeout
        ).access_request

    def cancel_access_request(
        self, name: str, *, reason: str = "", etag: str = "", timeout: float | None = None
    ) -> AccessRequest:
        request = access_request_pb2.CancelAccessRequestRequest(name=name, etag=etag, reason=reason)
        return self._call(
            self.access_request_service.CancelAccessRequest, request, timeout
        ).access_request

    # -- EventService ------------------------------------------------------

    @overload
    def watch(
        self,
        *,
        after: str = ...,
        event_types: Iterable[EventType] = ...,
        access_request: str = ...,
        include_control: Literal[False] = ...,
        reconnect: RetryPolicy | None = ...,
        ready_timeout: float | None = ...,
    ) -> EventWatch[event_pb2.Event]: ...

    @overload
    def watch(
        self,
        *,
        after: str = ...,
        event_types: Iterable[EventType] = ...,
        access_request: str = ...,
        include_control: Literal[True],
        reconnect: RetryPolicy | None = ...,
        ready_timeout: float | None = ...,
    ) -> EventWatch[event_pb2.WatchEventsResponse]: ...

    def watch(
        self,
        *,
        after: str = "",
        event_types: Iterable[EventType] = (),
        access_request: str = "",
        include_control: bool = False,
        reconnect: RetryPolicy | None = None,
        ready_timeout: float | None = 10.0,
    ) -> EventWatch[Any]:
        """Watch events, resuming across disconnects (see ``EventWatch``).

        Returns once the stream is live: every event committed afterwards
        (and, with ``after``, every event after that cursor) is yielded
        exactly once. Yields ``Event`` messages; with ``include_control`` it
        yields the raw ``WatchEventsResponse`` messages instead, ``ready``
        and ``heartbeat`` included (a ``ready`` again after each reconnect).
        ``reconnect`` defaults to the client's ``watch_reconnect``;
        ``ready_timeout`` bounds the wait for each stream's ``ready``.
        """
        return EventWatch(
            self.event_service,
            after=after,
            event_types=event_types,
            access_request=access_request,
            include_control=include_control,
            reconnect=reconnect or self.watch_reconnect,
            ready_timeout=ready_timeout,
        )
