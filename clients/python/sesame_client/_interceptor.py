"""Channel interceptor: bearer key, default deadline, per-attempt deadline,
retry of UNAVAILABLE (and of an attempt's DEADLINE_EXCEEDED for a submit
carrying a request_id)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc

logger = logging.getLogger("sesame_client")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter (AIP-194).

    Only UNAVAILABLE is retried, plus DEADLINE_EXCEEDED of one attempt for a
    SubmitAccessRequest with a ``request_id`` (the id returns the request the
    server may have committed, never a second one). ``max_attempts`` counts every attempt,
    the first included (1 disables retries). The delay before retry ``n``
    (1, 2, ...) is ``min(max_backoff, initial_backoff * multiplier**(n-1))``,
    scaled by a random factor in ``[1 - jitter, 1 + jitter]``.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


NO_RETRY = RetryPolicy(max_attempts=1)

SUBMIT_METHOD = "/sesame.v1.AccessRequestService/SubmitAccessRequest"


def _deadline_retryable(method: str, request: Any) -> bool:
    """Whether an attempt's DEADLINE_EXCEEDED may be retried: only for a
    submit carrying a request_id, which the server answers with the request
    it committed the first time instead of creating another (AIP-155)."""
    return method == SUBMIT_METHOD and bool(getattr(request, "request_id", ""))


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):  # type: ignore[misc]
    pass


class SesameInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <key>`` to every call; gives unary calls
    without a deadline ``default_timeout`` seconds and retries them on
    UNAVAILABLE within that deadline. Each attempt gets at most
    ``attempt_timeout`` seconds of it (None: all the time left); a submit with
    a ``request_id`` whose attempt ends DEADLINE_EXCEEDED is retried too while
    the deadline has time left. Streams get the key only: they are
    long-lived (no default deadline) and resumed by ``EventWatch``."""

    def __init__(
        self,
        api_key: str,
        default_timeout: float | None,
        retry: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        attempt_timeout: float | None = None,
    ) -> None:
        if attempt_timeout is not None and attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive")
        self._auth = ("authorization", f"Bearer {api_key}")
        self._attempt_timeout = attempt_timeout
        self._default_timeout = default_timeout
        self._retry = retry
        self._sleep = sleep

    def _details(self, details: Any, timeout: float | None) -> _ClientCallDetails:
        metadata = list(details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(self._auth)
        return _ClientCallDetails(
            details.method,
            timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        timeout = client_call_details.timeout
        if timeout is None:
            timeout = self._default_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        method = client_call_details.method
        retried_codes = [grpc.StatusCode.UNAVAILABLE]
        if _deadline_retryable(method, request):
            retried_codes.append(grpc.StatusCode.DEADLINE_EXCEEDED)
        attempt = 1
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            attempt_time = remaining
            if self._attempt_timeout is not None:
                attempt_time = (
                    self._attempt_timeout if remaining is None else min(self._attempt_timeout, remaining)
                )
            call = continuation(self._details(client_call_details, attempt_time), request)
            code = call.code()
            if code not in retried_codes or attempt >= self._retry.max_attempts:
                return call
            delay = self._retry.backoff(attempt)
            if deadline is not None and time.monotonic() + delay >= deadline:
                return call
            logger.info(
                "sesame_client: %s failed with %s (%s); retry %d/%d in %.2fs",
                method,
                code.name,
                call.details(),
                attempt,
                self._retry.max_attempts - 1,
                delay,
            )
            self._sleep(delay)
            attempt += 1

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details, client_call_details.timeout), request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Iterator[Any]
    ) -> Any:
        timeout = client_call_details.timeout
        if timeout is None:
            timeout = self._default_timeout
        return continuation(self._details(client_call_details, timeout), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Iterator[Any]
    ) -> Any:
        return continuation(
            self._details(client_call_details, client_call_details.timeout), request_iterator
        )
