package dev.sesame.client;

import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import java.util.logging.Level;
import sesame.v1.EventOuterClass.Event;
import sesame.v1.EventOuterClass.WatchEventsRequest;
import sesame.v1.EventOuterClass.WatchEventsResponse;
import sesame.v1.EventServiceGrpc.EventServiceBlockingStub;

/**
 * The events of a {@code WatchEvents} stream as an {@link Iterator}, resumed from its cursor when the
 * stream breaks. Made by {@link SesameClient#watch(WatchEventsRequest)}.
 *
 * <p>When it is returned the subscription is live (the server's {@code ready} was received), so
 * every event committed after that is delivered. It remembers the last cursor received (of an
 * event, a {@code ready} or a {@code heartbeat}: each a safe resume point). When the stream breaks
 * with {@code UNAVAILABLE} (server restart or shutdown, lost connection) or {@code
 * RESOURCE_EXHAUSTED}/{@code WATCHER_TOO_SLOW}, or simply ends, it opens a new one with {@code
 * after} = that cursor after a backoff, so each event is returned exactly once, in order (an event
 * whose sequence is not above the last one returned is dropped). The reconnect policy bounds
 * consecutive failed attempts; once they are spent, or on any other error (e.g. {@code
 * CURSOR_EXPIRED}), {@link #hasNext()} throws the {@link StatusRuntimeException}; decode it with
 * {@link SesameError#from}.
 *
 * <p>{@link #hasNext()} blocks until an event arrives. {@link #close()}, also from another thread,
 * ends the iteration: {@code hasNext()} then returns {@code false}. One thread iterates at a time.
 */
public final class EventWatch implements Iterator<Event>, AutoCloseable {
  private final EventServiceBlockingStub stub;
  private final WatchEventsRequest request;
  private final RetryPolicy reconnect;
  private final Duration readyTimeout;
  private final ScheduledExecutorService scheduler;
  private final Runnable beforeReconnect;
  private final BooleanSupplier clientClosed;
  private final Object lock = new Object();
  private final CountDownLatch closedLatch = new CountDownLatch(1);

  private volatile String cursor;
  private volatile boolean closed;
  private volatile int reconnects;
  private long lastSequence = Long.MIN_VALUE;
  private Context.CancellableContext callContext;
  private Iterator<WatchEventsResponse> stream;
  private Event nextEvent;

  EventWatch(
      EventServiceBlockingStub stub,
      WatchEventsRequest request,
      RetryPolicy reconnect,
      Duration readyTimeout,
      ScheduledExecutorService scheduler,
      Runnable beforeReconnect,
      BooleanSupplier clientClosed) {
    this.stub = stub;
    this.request = request;
    this.cursor = request.getAfter();
    this.reconnect = reconnect;
    this.readyTimeout = readyTimeout;
    this.scheduler = scheduler;
    this.beforeReconnect = beforeReconnect;
    this.clientClosed = clientClosed;
    open(true);
  }

  /** The last resume point received: pass it as {@code after} to continue later. */
  public String cursor() {
    return cursor;
  }

  /** How many times the stream was opened again after a break. */
  public int reconnects() {
    return reconnects;
  }

  /** Whether {@link #close()} was called. */
  public boolean isClosed() {
    return closed;
  }

  /** Ends the stream and the iteration; safe from any thread, idempotent. */
  @Override
  public void close() {
    Context.CancellableContext context;
    synchronized (lock) {
      closed = true;
      context = callContext;
    }
    closedLatch.countDown();
    if (context != null) {
      context.cancel(null);
    }
  }

  @Override
  public boolean hasNext() {
    while (true) {
      if (nextEvent != null) {
        return true;
      }
      if (closed || stream == null) {
        return false;
      }
      try {
        if (!stream.hasNext()) {
          if (closed) {
            return false;
          }
          SesameInterceptor.LOG.fine(
              "sesame-client: watch stream ended; resuming after " + quoted(cursor));
          reopen();
          continue;
        }
        nextEvent = accept(stream.next());
      } catch (StatusRuntimeException broken) {
        if (closed || clientClosed.getAsBoolean()) {
          close(); // the client was closed: its channel is gone, nothing to resume
          return false;
        }
        if (!resumable(broken)) {
          throw broken;
        }
        SesameInterceptor.LOG.fine(
            "sesame-client: watch stream broke ("
                + SesameError.from(broken)
                + "); resuming after "
                + quoted(cursor));
        reopen();
      }
    }
  }

  /** The next event; blocks until there is one. */
  @Override
  public Event next() {
    if (!hasNext()) {
      throw new NoSuchElementException(closed ? "the watch is closed" : "the watch ended");
    }
    Event event = nextEvent;
    nextEvent = null;
    return event;
  }

  static boolean resumable(StatusRuntimeException error) {
    SesameError decoded = SesameError.from(error);
    if (decoded.code() == Status.Code.UNAVAILABLE) {
      return true; // server shutting down, connection lost or refused
    }
    return decoded.code() == Status.Code.RESOURCE_EXHAUSTED
        && decoded.reason().equals("WATCHER_TOO_SLOW");
  }

  /** Records the message's cursor; returns the event to hand out, or null. */
  private Event accept(WatchEventsResponse message) {
    switch (message.getKindCase()) {
      case EVENT:
        Event event = message.getEvent();
        cursor = event.getCursor();
        if (event.getSequence() <= lastSequence) {
          return null; // already returned before a reconnection
        }
        lastSequence = event.getSequence();
        return event;
      case HEARTBEAT:
        if (!message.getHeartbeat().getCursor().isEmpty()) {
          cursor = message.getHeartbeat().getCursor();
        }
        return null;
      case READY:
        if (!message.getReady().getCursor().isEmpty()) {
          cursor = message.getReady().getCursor();
        }
        return null;
      default:
        return null;
    }
  }

  private void reopen() {
    reconnects += 1;
    open(false);
  }

  /** Opens a stream from the cursor and waits for its {@code ready}. */
  private void open(boolean first) {
    int tries = 0;
    StatusRuntimeException lastError = null;
    stream = null;
    while (true) {
      if (tries >= reconnect.maxAttempts()) {
        throw lastError;
      }
      if (tries > 0 || !first) {
        // A broken stream also waits before its first new attempt.
        beforeReconnect.run();
        if (sleep(reconnect.backoff(first ? tries : tries + 1))) {
          return; // closed meanwhile
        }
      }
      if (clientClosed.getAsBoolean()) {
        close();
        return;
      }
      tries += 1;
      Context.CancellableContext context = Context.current().withCancellation();
      synchronized (lock) {
        if (closed) {
          context.cancel(null);
          return;
        }
        if (callContext != null) {
          callContext.cancel(null); // the broken stream's: releases it
        }
        callContext = context;
      }
      AtomicBoolean timedOut = new AtomicBoolean();
      ScheduledFuture<?> timer = null;
      if (readyTimeout != null) {
        timer =
            scheduler.schedule(
                () -> {
                  timedOut.set(true);
                  context.cancel(null);
                },
                readyTimeout.toNanos(),
                TimeUnit.NANOSECONDS);
      }
      try {
        Iterator<WatchEventsResponse> opened;
        Context previous = context.attach();
        try {
          opened = stub.watchEvents(request.toBuilder().setAfter(cursor).build());
        } finally {
          context.detach(previous);
        }
        if (!opened.hasNext()) {
          lastError =
              Status.UNAVAILABLE.withDescription("watch stream ended before ready").asRuntimeException();
          continue;
        }
        WatchEventsResponse firstMessage = opened.next();
        if (timer != null && !timer.cancel(false)) {
          // The ready came as the timeout fired: this stream's context is cancelled, open another.
          lastError =
              Status.DEADLINE_EXCEEDED
                  .withDescription("no ready message within " + readyTimeout)
                  .asRuntimeException();
          continue;
        }
        stream = opened;
        nextEvent = accept(firstMessage);
        return;
      } catch (StatusRuntimeException error) {
        if (closed || clientClosed.getAsBoolean()) {
          close();
          return;
        }
        if (timedOut.get()) {
          lastError =
              Status.DEADLINE_EXCEEDED
                  .withDescription("no ready message within " + readyTimeout)
                  .asRuntimeException();
          SesameInterceptor.LOG.fine("sesame-client: " + lastError.getMessage() + "; retrying");
          continue;
        }
        if (!resumable(error)) {
          throw error;
        }
        lastError = error;
        SesameInterceptor.LOG.log(
            Level.FINE,
            String.format(
                "sesame-client: watch failed to open (%s); attempt %d/%d",
                SesameError.from(error),
                tries,
                reconnect.maxAttempts()));
      } finally {
        if (timer != null) {
          timer.cancel(false);
        }
      }
    }
  }

  /** Waits, or less if closed meanwhile; true when closed. */
  private boolean sleep(Duration delay) {
    try {
      return closedLatch.await(delay.toNanos(), TimeUnit.NANOSECONDS);
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
      close();
      return true;
    }
  }

  private static String quoted(String value) {
    return "'" + value + "'";
  }
}
