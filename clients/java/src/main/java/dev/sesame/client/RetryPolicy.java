package dev.sesame.client;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Bounded exponential backoff with jitter (AIP-194), for unary calls that fail with
 * {@code UNAVAILABLE} and for reopening a broken watch stream.
 *
 * <p>{@code UNAVAILABLE} is retried, and an attempt's {@code DEADLINE_EXCEEDED} of a {@code
 * SubmitAccessRequest} carrying a {@code request_id} (see {@link
 * SesameClient.Builder#attemptTimeout}); nothing else. {@code maxAttempts} counts every attempt, the first
 * included ({@code 1} disables retries). The wait before retry {@code n} (1, 2, ...) is {@code
 * min(maxBackoff, initialBackoff * multiplier^(n-1))}, scaled by a random factor in {@code [1 -
 * jitter, 1 + jitter]}.
 *
 * @param maxAttempts attempts in all, at least 1
 * @param initialBackoff the wait before the first retry (before jitter)
 * @param maxBackoff the longest wait (before jitter)
 * @param multiplier growth of the wait from one retry to the next, at least 1
 * @param jitter relative spread of each wait, between 0 and 1
 */
public record RetryPolicy(
    int maxAttempts, Duration initialBackoff, Duration maxBackoff, double multiplier, double jitter) {

  /** Unary calls: up to 5 attempts, about 0.2 s, 0.4 s, 0.8 s, 1.6 s apart (+-20 %). */
  public static final RetryPolicy DEFAULT =
      new RetryPolicy(5, Duration.ofMillis(200), Duration.ofSeconds(5), 2.0, 0.2);

  /** Watch streams: up to 10 consecutive attempts to reopen (about 25 s in all). */
  public static final RetryPolicy DEFAULT_WATCH_RECONNECT =
      new RetryPolicy(10, Duration.ofMillis(200), Duration.ofSeconds(5), 2.0, 0.2);

  /** One attempt: no retry. */
  public static final RetryPolicy NONE =
      new RetryPolicy(1, Duration.ZERO, Duration.ZERO, 1.0, 0.0);

  public RetryPolicy {
    Objects.requireNonNull(initialBackoff, "initialBackoff");
    Objects.requireNonNull(maxBackoff, "maxBackoff");
    if (maxAttempts < 1) {
      throw new IllegalArgumentException("maxAttempts must be at least 1");
    }
    if (initialBackoff.isNegative() || maxBackoff.isNegative() || multiplier < 1) {
      throw new IllegalArgumentException("backoffs must be >= 0 and multiplier >= 1");
    }
    if (!(jitter >= 0 && jitter <= 1)) {
      throw new IllegalArgumentException("jitter must be between 0 and 1");
    }
  }

  /** A policy with the default backoff and {@code maxAttempts} attempts in all. */
  public static RetryPolicy ofAttempts(int maxAttempts) {
    return new RetryPolicy(
        maxAttempts, DEFAULT.initialBackoff, DEFAULT.maxBackoff, DEFAULT.multiplier, DEFAULT.jitter);
  }

  /** The wait before retry number {@code retry} (1-based), jitter applied. */
  public Duration backoff(int retry) {
    if (retry < 1) {
      throw new IllegalArgumentException("retry is 1-based");
    }
    double base =
        Math.min(
            maxBackoff.toNanos(), initialBackoff.toNanos() * Math.pow(multiplier, retry - 1));
    double factor =
        jitter == 0 ? 1.0 : ThreadLocalRandom.current().nextDouble(1 - jitter, 1 + jitter);
    return Duration.ofNanos(Math.round(base * factor));
  }
}
