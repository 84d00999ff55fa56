"""A resumable iterator over EventService.WatchEvents."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Generic, TypeVar, Union

import grpc

from ._errors import SesameError
from ._gen.sesame.v1 import event_pb2, event_pb2_grpc
from ._interceptor import RetryPolicy

logger = logging.getLogger("sesame_client")

T = TypeVar("T", event_pb2.Event, event_pb2.WatchEventsResponse)

_Message = Union[event_pb2.Event, event_pb2.WatchEventsResponse]


def _resumable(error: SesameError) -> bool:
    """Stream ends after which resuming from the last cursor is right."""
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return True  # server shutting down, connection lost or refused
    return error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "WATCHER_TOO_SLOW"


def _expire(flag: threading.Event, call: grpc.Call) -> None:
    flag.set()
    call.cancel()


class EventWatch(Generic[T]):
    """Iterator over the events of a WatchEvents stream, resumed on failure.

    Made by ``SesameClient.watch``. When it is returned the subscription is
    live (the server's ``ready`` was received), so every event committed after
    that is delivered. It remembers the last cursor received (of an event,
    ``ready`` or ``heartbeat``: each is a safe resume point); when the stream
    breaks with UNAVAILABLE (server restart, lost connection) or
    RESOURCE_EXHAUSTED/WATCHER_TOO_SLOW, or simply ends, it opens a new one
    with ``after=<cursor>`` after a backoff, so each event is yielded exactly
    once. ``reconnect.max_attempts`` bounds consecutive failed attempts; once
    spent, or on any other error, it raises ``SesameError``. ``close()`` (from
    any thread) ends the iteration.
    """

    def __init__(
        self,
        stub: event_pb2_grpc.EventServiceStub,
        *,
        after: str,
        event_types: Iterable[event_pb2.EventType.ValueType],
        access_request: str,
        include_control: bool,
        reconnect: RetryPolicy,
        ready_timeout: float | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._stub = stub
        self._cursor = after
        self._event_types = list(event_types)
        self._access_request = access_request
        self._include_control = include_control
        self._reconnect = reconnect
        self._ready_timeout = ready_timeout
        self._sleep = sleep
        self._lock = threading.Lock()
        self._closed = False
        self._call: grpc.Call | None = None
        self._stream: Iterable[event_pb2.WatchEventsResponse] | None = None
        self._pending: collections.deque[_Message] = collections.deque()
        self.reconnects = 0
        """How many times the stream was opened again after a break."""
        self._open(first=True)

    @property
    def cursor(self) -> str:
        """The last resume point received: pass it as ``after`` to continue."""
        return self._cursor

    def close(self) -> None:
        with self._lock:
            self._closed = True
            call = self._call
        if call is not None:
            call.cancel()

    def __enter__(self) -> EventWatch[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> EventWatch[T]:
        return self

    def __next__(self) -> T:
        while True:
            if self._pending:
                return self._pending.popleft()  # type: ignore[return-value]
            if self._closed or self._stream is None:
                raise StopIteration
            try:
                message = next(iter(self._stream))
            except StopIteration:
                if self._closed:
                    raise
                logger.info("sesame_client: watch stream ended; resuming after %r", self._cursor)
                self._reopen()
                continue
            except grpc.RpcError as rpc_error:
                if self._closed:
                    raise StopIteration from None
                error = SesameError.from_rpc_error(rpc_error)
                if not _resumable(error):
                    raise error from rpc_error
                logger.info(
                    "sesame_client: watch stream broke (%s); resuming after %r", error, self._cursor
                )
                self._reopen()
                continue
            item = self._accept(message)
            if item is not None:
                return item  # type: ignore[return-value]

    def _accept(self, message: event_pb2.WatchEventsResponse) -> _Message | None:
        """Record the message's cursor; return what the caller should get."""
        kind = message.WhichOneof("kind")
        if kind == "event":
            self._cursor = message.event.cursor
            return message if self._include_control else message.event
        if kind == "heartbeat":
            self._cursor = message.heartbeat.cursor or self._cursor
        elif kind == "ready":
            self._cursor = message.ready.cursor or self._cursor
        return message if self._include_control else None

    def _reopen(self) -> None:
        self.reconnects += 1
        self._open(first=False)

    def _open(self, *, first: bool) -> None:
        """Open a stream from the cursor and wait for its ``ready``."""
        tries = 0
        last_error: SesameError | None = None
        while True:
            if tries >= self._reconnect.max_attempts:
                assert last_error is not None
                raise last_error
            if tries > 0 or not first:
                # A broken stream also waits before its first new attempt.
                self._sleep(self._reconnect.backoff(tries if first else tries + 1))
            tries += 1
            request = event_pb2.WatchEventsRequest(
                after=self._cursor,
                event_types=self._event_types,
                access_request=self._access_request,
            )
            call = self._stub.WatchEvents(request)
            with self._lock:
                if self._closed:
                    call.cancel()
                    self._stream = None
                    return
                self._call = call
            timed_out = threading.Event()
            timer: threading.Timer | None = None
            if self._ready_timeout is not None:

                timer = threading.Timer(self._ready_timeout, _expire, (timed_out, call))
                timer.daemon = True
                timer.start()
            try:
                first_message = next(iter(call))
            except StopIteration:
                last_error = SesameError(grpc.StatusCode.UNAVAILABLE, "watch stream ended before ready")
                continue
            except grpc.RpcError as rpc_error:
                if self._closed:
                    self._stream = None
                    return
                if timed_out.is_set():
                    last_error = SesameError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"no ready message within {self._ready_timeout}s",
                    )
                    logger.info("sesame_client: %s; retrying", last_error)
                    continue
                error = SesameError.from_rpc_error(rpc_error)
                if not _resumable(error):
                    raise error from rpc_error
                last_error = error
                logger.info(
                    "sesame_client: watch failed to open (%s); attempt %d/%d",
                    error,
                    tries,
                    self._reconnect.max_attempts,
                )
                continue
            finally:
                if timer is not None:
                    timer.cancel()
            self._stream = call
            item = self._accept(first_message)
            if item is not None:
                self._pending.append(item)
            return
