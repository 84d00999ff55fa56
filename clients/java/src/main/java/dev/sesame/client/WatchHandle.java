package dev.sesame.client;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

/** A running {@link SesameClient#watch(sesame.v1.EventOuterClass.WatchEventsRequest, WatchListener)}. */
public final class WatchHandle implements AutoCloseable {
  private final EventWatch watch;
  private final Thread thread;

  WatchHandle(EventWatch watch, WatchListener listener) {
    this.watch = watch;
    this.thread =
        new Thread(
            () -> {
              try {
                while (watch.hasNext()) {
                  listener.onEvent(watch.next());
                }
              } catch (RuntimeException error) {
                watch.close();
                listener.onError(error);
                return;
              }
              listener.onClosed();
            },
            "sesame-watch");
    this.thread.setDaemon(true);
  }

  void start() {
    thread.start();
  }

  /** The last resume point received: pass it as {@code after} to continue later. */
  public String cursor() {
    return watch.cursor();
  }

  /** How many times the stream was opened again after a break. */
  public int reconnects() {
    return watch.reconnects();
  }

  /** Stops the watch; the listener's {@code onClosed} follows on the watch's thread. */
  @Override
  public void close() {
    watch.close();
  }

  /** Waits until the listener got its last call ({@code onClosed} or {@code onError}). */
  public boolean awaitTermination(Duration timeout) throws InterruptedException {
    thread.join(TimeUnit.NANOSECONDS.toMillis(timeout.toNanos()) + 1);
    return !thread.isAlive();
  }
}
