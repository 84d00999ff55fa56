package dev.sesame.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The details of a failed Sesame call (AIP-193), decoded with {@link StatusProto} from the
 * {@code grpc-status-details-bin} trailer.
 *
 * <p>Works on what the blocking stubs throw ({@link io.grpc.StatusRuntimeException}) and on what the
 * async stubs pass to {@code onError} ({@link io.grpc.StatusRuntimeException} or {@link
 * io.grpc.StatusException}), also when wrapped (e.g. in an {@code ExecutionException} of a future
 * stub):
 *
 * <pre>{@code
 * } catch (StatusRuntimeException e) {
 *   SesameError error = SesameError.from(e);
 *   if (error.code() == Status.Code.ABORTED && error.reason().equals("ETAG_MISMATCH")) { ... }
 *   error.fieldViolations().forEach(v -> System.out.println(v.getField() + ": " + v.getDescription()));
 * }
 * }</pre>
 */
public final class SesameError {
  /** The {@code ErrorInfo.domain} of every error made by Sesame itself. */
  public static final String DOMAIN = "sesame.dev";

  private final Status status;
  private final com.google.rpc.Status details;

  private SesameError(Status status, com.google.rpc.Status details) {
    this.status = status;
    this.details = details;
  }

  /**
   * Decodes a failure: the gRPC status of {@code error} (or of its first cause that has one) and its
   * {@code google.rpc.Status} details. A throwable without a gRPC status reads as {@code UNKNOWN}.
   */
  public static SesameError from(Throwable error) {
    Throwable cause = error;
    while (cause != null) {
      if (cause instanceof io.grpc.StatusRuntimeException || cause instanceof io.grpc.StatusException) {
        break;
      }
      cause = cause.getCause();
    }
    Throwable carrier = cause != null ? cause : error;
    Status status = Status.fromThrowable(carrier);
    com.google.rpc.Status details = null;
    try {
      details = StatusProto.fromThrowable(carrier);
    } catch (IllegalArgumentException mismatch) {
      // The details trailer named another code than the status: ignore the details.
    }
    return new SesameError(status, details);
  }

  /** The gRPC status. */
  public Status status() {
    return status;
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return status.getCode();
  }

  /** The status message ({@code ""} when there is none). */
  public String message() {
    return status.getDescription() == null ? "" : status.getDescription();
  }

  /** The {@code google.rpc.Status} with every detail, when the server sent one. */
  public Optional<com.google.rpc.Status> details() {
    return Optional.ofNullable(details);
  }

  /** The {@code google.rpc.ErrorInfo}: every Sesame error has one (domain {@value #DOMAIN}). */
  public Optional<ErrorInfo> errorInfo() {
    return detail(ErrorInfo.class);
  }

  /** {@code ErrorInfo.reason}, e.g. {@code REQUEST_NOT_FOUND}; {@code ""} without an ErrorInfo. */
  public String reason() {
    return errorInfo().map(ErrorInfo::getReason).orElse("");
  }

  /** {@code ErrorInfo.domain}; {@code ""} when the error came from gRPC itself. */
  public String domain() {
    return errorInfo().map(ErrorInfo::getDomain).orElse("");
  }

  /** {@code ErrorInfo.metadata}; empty without an ErrorInfo. */
  public Map<String, String> metadata() {
    return errorInfo().map(ErrorInfo::getMetadataMap).orElse(Map.of());
  }

  /** The {@code google.rpc.BadRequest} of an {@code INVALID_ARGUMENT}. */
  public Optional<BadRequest> badRequest() {
    return detail(BadRequest.class);
  }

  /** Every invalid field of the {@code BadRequest}; empty without one. */
  public List<BadRequest.FieldViolation> fieldViolations() {
    return badRequest().map(BadRequest::getFieldViolationsList).orElse(List.of());
  }

  /** The {@code google.rpc.RetryInfo}'s delay, when the server suggested one. */
  public Optional<Duration> retryDelay() {
    return detail(RetryInfo.class)
        .filter(RetryInfo::hasRetryDelay)
        .map(info -> Duration.ofSeconds(info.getRetryDelay().getSeconds(), info.getRetryDelay().getNanos()));
  }

  /** The first detail of type {@code type}, unpacked. */
  public <T extends Message> Optional<T> detail(Class<T> type) {
    if (details == null) {
      return Optional.empty();
    }
    for (Any any : details.getDetailsList()) {
      if (any.is(type)) {
        try {
          return Optional.of(any.unpack(type));
        } catch (InvalidProtocolBufferException corrupt) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }

  @Override
  public String toString() {
    String reason = reason();
    return code() + ": " + message() + (reason.isEmpty() ? "" : " [" + reason + "]");
  }
}
