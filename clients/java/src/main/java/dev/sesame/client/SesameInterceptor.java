package dev.sesame.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;
import sesame.v1.AccessRequestOuterClass.SubmitAccessRequestRequest;

/**
 * Gives unary calls without a deadline the client's default one, each attempt at most the
 * attempt timeout of it, fills a missing {@code request_id} of {@code SubmitAccessRequest}, and
 * retries unary calls that fail with {@code UNAVAILABLE} within their deadline; an attempt's {@code
 * DEADLINE_EXCEEDED} is retried for a {@code SubmitAccessRequest} carrying a {@code request_id}
 * only (the id returns the request the server may have committed). Streams pass through untouched: they are long-lived
 * (no default deadline) and resumed by {@link EventWatch}.
 */
final class SesameInterceptor implements ClientInterceptor {
  static final Logger LOG = Logger.getLogger("dev.sesame.client");

  private final Duration defaultTimeout;
  private final Duration attemptTimeout;
  private final RetryPolicy retry;
  private final boolean generateRequestIds;
  private final ScheduledExecutorService scheduler;
  private final Runnable beforeRetry;

  SesameInterceptor(
      Duration defaultTimeout,
      Duration attemptTimeout,
      RetryPolicy retry,
      boolean generateRequestIds,
      ScheduledExecutorService scheduler,
      Runnable beforeRetry) {
    this.defaultTimeout = defaultTimeout;
    this.attemptTimeout = attemptTimeout;
    this.retry = retry;
    this.generateRequestIds = generateRequestIds;
    this.scheduler = scheduler;
    this.beforeRetry = beforeRetry;
  }

  @Override
  public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
      MethodDescriptor<ReqT, RespT> method, CallOptions callOptions, Channel next) {
    if (method.getType() != MethodDescriptor.MethodType.UNARY) {
      return next.newCall(method, callOptions);
    }
    CallOptions options = callOptions;
    if (options.getDeadline() == null && defaultTimeout != null) {
      options = options.withDeadlineAfter(defaultTimeout.toNanos(), TimeUnit.NANOSECONDS);
    }
    return new RetryingUnaryCall<>(next, method, options);
  }

  /** Fills a missing request_id (AIP-155) so that a retried submit cannot create a duplicate. */
  private Object withRequestId(Object message) {
    if (generateRequestIds
        && message instanceof SubmitAccessRequestRequest submit
        && submit.getRequestId().isEmpty()) {
      return submit.toBuilder().setRequestId(UUID.randomUUID().toString()).build();
    }
    return message;
  }

  /**
   * One unary call made of one or more attempts. The request is kept until the call ends; the
   * response of an attempt is delivered only when that attempt is not retried.
   */
  private final class RetryingUnaryCall<ReqT, RespT> extends ClientCall<ReqT, RespT> {
    private final Channel next;
    private final MethodDescriptor<ReqT, RespT> method;
    private final CallOptions options;
    // Attempts after the first start on the scheduler's thread, in the caller's context.
    private final Context context = Context.current();
    private final Object lock = new Object();

    private Listener<RespT> listener;
    private Metadata headers;
    private ReqT message;
    private int requested;
    private int attempts;
    private ClientCall<ReqT, RespT> current;
    private ScheduledFuture<?> pendingRetry;
    private boolean cancelled;
    private boolean finished;

    RetryingUnaryCall(Channel next, MethodDescriptor<ReqT, RespT> method, CallOptions options) {
      this.next = next;
      this.method = method;
      this.options = options;
    }

    @Override
    public void start(Listener<RespT> responseListener, Metadata requestHeaders) {
      synchronized (lock) {
        this.listener = responseListener;
        this.headers = requestHeaders;
      }
    }

    @Override
    public void request(int numMessages) {
      ClientCall<ReqT, RespT> call;
      synchronized (lock) {
        requested += numMessages;
        call = current;
      }
      if (call != null) {
        call.request(numMessages);
      }
    }

    @Override
    @SuppressWarnings("unchecked")
    public void sendMessage(ReqT request) {
      synchronized (lock) {
        if (message != null) {
          throw new IllegalStateException("a unary call sends one message");
        }
        message = (ReqT) withRequestId(request);
      }
    }

    @Override
    public void halfClose() {
      startAttempt();
    }

    @Override
    public void cancel(String reason, Throwable cause) {
      ClientCall<ReqT, RespT> call;
      boolean closeHere;
      synchronized (lock) {
        if (cancelled || finished) {
          return;
        }
        cancelled = true;
        call = current;
        if (pendingRetry != null) {
          pendingRetry.cancel(false);
        }
        // Between attempts (or before the first) no attempt will report the end: do it here.
        closeHere = call == null && listener != null;
        if (closeHere) {
          finished = true;
        }
      }
      if (call != null) {
        call.cancel(reason, cause);
      } else if (closeHere) {
        listener.onClose(Status.CANCELLED.withDescription(reason).withCause(cause), new Metadata());
      }
    }

    @Override
    public boolean isReady() {
      synchronized (lock) {
        return current != null && current.isReady();
      }
    }

    private void startAttempt() {
      ClientCall<ReqT, RespT> call;
      Metadata attemptHeaders = new Metadata();
      int toRequest;
      synchronized (lock) {
        if (cancelled || finished) {
          return;
        }
        attempts += 1;
        pendingRetry = null;
        call = next.newCall(method, attemptOptions());
        current = call;
        attemptHeaders.merge(headers);
        toRequest = requested;
      }
      call.start(new AttemptListener(call), attemptHeaders);
      if (toRequest > 0) {
        call.request(toRequest);
      }
      call.sendMessage(message);
      call.halfClose();
    }

    /** The deadline of the whole call: its own or its context's, whichever is first. */
    private Deadline deadline() {
      Deadline own = options.getDeadline();
      Deadline inherited = context.getDeadline();
      if (own == null) {
        return inherited;
      }
      return inherited == null ? own : own.minimum(inherited);
    }

    /** The call's options with the attempt's deadline: the attempt timeout when sooner. */
    private CallOptions attemptOptions() {
      if (attemptTimeout == null) {
        return options;
      }
      Deadline attemptDeadline = Deadline.after(attemptTimeout.toNanos(), TimeUnit.NANOSECONDS);
      Deadline own = options.getDeadline();
      return options.withDeadline(own == null ? attemptDeadline : own.minimum(attemptDeadline));
    }

    /**
     * Whether an attempt's {@code DEADLINE_EXCEEDED} may be retried: only for a submit carrying a
     * {@code request_id}, which returns the request a timed-out attempt may have committed instead
     * of creating another (AIP-155).
     */
    private boolean deadlineRetryable() {
      synchronized (lock) {
        return message instanceof SubmitAccessRequestRequest submit && !submit.getRequestId().isEmpty();
      }
    }

    /** Schedules another attempt if this failure may be retried; false to deliver it. */
    private boolean scheduleRetry(Status status, boolean gotResponse) {
      Status.Code code = status.getCode();
      boolean retryable =
          code == Status.Code.UNAVAILABLE
              || (code == Status.Code.DEADLINE_EXCEEDED && deadlineRetryable());
      if (!retryable || gotResponse) {
        return false;
      }
      int attempt;
      synchronized (lock) {
        attempt = attempts;
        if (cancelled || attempt >= retry.maxAttempts()) {
          return false;
        }
      }
      Duration delay = retry.backoff(attempt);
      Deadline deadline = deadline();
      // The call's own deadline spent: it ends as it is (DEADLINE_EXCEEDED).
      if (deadline != null && deadline.timeRemaining(TimeUnit.NANOSECONDS) <= delay.toNanos()) {
        return false;
      }
      LOG.log(
          Level.FINE,
          String.format(
              "sesame-client: %s failed with %s (%s); retry %d/%d in %d ms",
              method.getFullMethodName(),
              code,
              status.getDescription(),
              attempt,
              retry.maxAttempts() - 1,
              delay.toMillis()));
      beforeRetry.run();
      synchronized (lock) {
        if (cancelled) {
          return false;
        }
        try {
          pendingRetry =
              scheduler.schedule(
                  context.wrap(this::startAttempt), delay.toNanos(), TimeUnit.NANOSECONDS);
        } catch (RejectedExecutionException clientClosed) {
          return false;
        }
        current = null;
      }
      return true;
    }

    private final class AttemptListener extends Listener<RespT> {
      private final ClientCall<ReqT, RespT> call;
      private Metadata responseHeaders;
      private RespT response;

      AttemptListener(ClientCall<ReqT, RespT> call) {
        this.call = call;
      }

      @Override
      public void onHeaders(Metadata received) {
        responseHeaders = received;
      }

      @Override
      public void onMessage(RespT received) {
        response = received;
      }

      @Override
      public void onReady() {
        listener.onReady();
      }

      @Override
      public void onClose(Status status, Metadata trailers) {
        if (!status.isOk() && scheduleRetry(status, response != null)) {
          return;
        }
        synchronized (lock) {
          if (finished) {
            return;
          }
          finished = true;
          if (current == call) {
            current = null;
          }
        }
        if (responseHeaders != null) {
          listener.onHeaders(responseHeaders);
        }
        if (response != null) {
          listener.onMessage(response);
        }
        listener.onClose(status, trailers);
      }
    }
  }
}
