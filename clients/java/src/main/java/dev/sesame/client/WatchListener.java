package dev.sesame.client;

import sesame.v1.EventOuterClass.Event;

/**
 * Receives the events of {@link SesameClient#watch(sesame.v1.EventOuterClass.WatchEventsRequest,
 * WatchListener)}, one at a time, on the watch's own thread, with the same resumption as {@link
 * EventWatch}.
 */
public interface WatchListener {
  /** One event, in order, never twice. An exception thrown here ends the watch ({@link #onError}). */
  void onEvent(Event event);

  /**
   * The watch ended for good: a non-resumable error, the reconnect attempts spent, or an exception
   * of {@link #onEvent}. Decode a gRPC error with {@link SesameError#from}.
   */
  default void onError(Throwable error) {}

  /** The watch was closed ({@link WatchHandle#close()} or {@link SesameClient#close()}). */
  default void onClosed() {}
}
