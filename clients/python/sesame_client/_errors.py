"""Sesame errors (AIP-193): the gRPC status plus its google.rpc details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a google.rpc.BadRequest."""

    field: str
    description: str
    reason: str = ""


class SesameError(grpc.RpcError):
    """A failed Sesame call, with the decoded AIP-193 details.

    It is a ``grpc.RpcError`` and offers the same ``code()``, ``details()`` and
    ``trailing_metadata()`` as the error grpc raises, plus:

    * ``reason``, ``domain``, ``metadata``: the ``google.rpc.ErrorInfo``
      (``domain`` is ``sesame.dev`` for errors made by Sesame; empty when the
      error came from gRPC itself, e.g. a connection failure);
    * ``field_violations``: the ``google.rpc.BadRequest`` of INVALID_ARGUMENT;
    * ``retry_delay``: seconds from a ``google.rpc.RetryInfo``, if any.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_delay: float | None = None,
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" [{reason}]" if reason else ""))
        self._code = code
        self._message = message
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.retry_delay = retry_delay
        self._trailing_metadata = tuple(trailing_metadata)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[Any, ...]:
        return self._trailing_metadata

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> SesameError:
        """Decode the error raised by a call on a raw generated stub."""
        if isinstance(error, SesameError):
            return error
        call: Any = error
        code = call.code() if callable(getattr(call, "code", None)) else grpc.StatusCode.UNKNOWN
        message = call.details() if callable(getattr(call, "details", None)) else str(error)
        trailing: Sequence[tuple[str, str | bytes]] = ()
        if callable(getattr(call, "trailing_metadata", None)):
            trailing = tuple(call.trailing_metadata() or ())
        kwargs: dict[str, Any] = {}
        for key, value in trailing:
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                kwargs = _decode_status_details(value)
        return cls(
            code or grpc.StatusCode.UNKNOWN,
            message or "",
            trailing_metadata=trailing,
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"SesameError(code={self._code.name}, message={self._message!r}, "
            f"reason={self.reason!r}, domain={self.domain!r}, metadata={dict(self.metadata)!r}, "
            f"field_violations={list(self.field_violations)!r})"
        )


def _decode_status_details(raw: bytes) -> dict[str, Any]:
    status = status_pb2.Status.FromString(raw)
    out: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out["reason"] = info.reason
            out["domain"] = info.domain
            out["metadata"] = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(
                FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            out["retry_delay"] = retry.retry_delay.ToTimedelta().total_seconds()
    if violations:
        out["field_violations"] = violations
    return out
