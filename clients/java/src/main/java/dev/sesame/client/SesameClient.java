package dev.sesame.client;

import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.MetadataUtils;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import sesame.v1.AccessRequestServiceGrpc;
import sesame.v1.AccessRequestServiceGrpc.AccessRequestServiceBlockingStub;
import sesame.v1.AccessRequestServiceGrpc.AccessRequestServiceFutureStub;
import sesame.v1.AccessRequestServiceGrpc.AccessRequestServiceStub;
import sesame.v1.EmailServiceGrpc;
import sesame.v1.EmailServiceGrpc.EmailServiceBlockingStub;
import sesame.v1.EventOuterClass.WatchEventsRequest;
import sesame.v1.EventServiceGrpc;
import sesame.v1.EventServiceGrpc.EventServiceBlockingStub;
import sesame.v1.EventServiceGrpc.EventServiceStub;

/**
 * Client of the Sesame gRPC API: the generated grpc-java stubs on one channel (grpc-java over
 * Netty) with a thin layer.
 *
 * <ul>
 *   <li>Every call, of every stub made on {@link #channel()}, carries {@code authorization: Bearer
 *       <key>}.
 *   <li>A unary call without a deadline gets the default one (10 s); a stub's {@code
 *       withDeadlineAfter} sets another for its calls. Streams get no default deadline.
 *   <li>Unary calls that fail with {@code UNAVAILABLE} are retried with exponential backoff and
 *       jitter ({@link RetryPolicy#DEFAULT}) within their deadline; {@link
 *       Builder#attemptTimeout(Duration)} bounds each attempt.
 *   <li>A {@code SubmitAccessRequest} without {@code request_id} gets a random UUID before its first
 *       attempt, so a retry returns the request the first attempt created (AIP-155). A submit
 *       carrying a {@code request_id} is also retried when an attempt ends {@code
 *       DEADLINE_EXCEEDED} (no other call is).
 *   <li>{@link #watch(WatchEventsRequest)} resumes the event stream from its cursor after a break.
 * </ul>
 *
 * <pre>{@code
 * try (SesameClient client = SesameClient.builder("http://127.0.0.1:50051", key).build()) {
 *   AccessRequest request = client.accessRequests().getAccessRequest(...).getAccessRequest();
 * }
 * }</pre>
 */
public final class SesameClient implements AutoCloseable {
  /** The version of this client, sent in the user agent. */
  public static final String VERSION = "0.1.0";

  /** Given to a unary call that has no deadline of its own. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(10);

  /** Bounds the wait for each watch stream's {@code ready}. */
  public static final Duration DEFAULT_READY_TIMEOUT = Duration.ofSeconds(10);

  private final String target;
  private final boolean tls;
  private final ManagedChannel managedChannel;
  private final Channel channel;
  private final ScheduledExecutorService scheduler;
  private final RetryPolicy watchReconnect;
  private final Duration readyTimeout;

  private SesameClient(Builder builder) {
    ParsedTarget parsed = parseTarget(builder.target);
    boolean useTls = builder.tls != null ? builder.tls : parsed.tls() || builder.trustedCertificates != null;
    ChannelCredentials credentials = builder.channelCredentials;
    if (credentials == null) {
      credentials = useTls ? tlsCredentials(builder.trustedCertificates) : InsecureChannelCredentials.create();
    }
    this.target = parsed.target();
    this.tls = !(credentials instanceof InsecureChannelCredentials);
    this.managedChannel =
        Grpc.newChannelBuilder(parsed.target(), credentials)
            .userAgent("sesame-client-java/" + VERSION)
            .build();
    this.scheduler =
        Executors.newSingleThreadScheduledExecutor(
            runnable -> {
              Thread thread = new Thread(runnable, "sesame-client-retry");
              thread.setDaemon(true);
              return thread;
            });
    Metadata auth = new Metadata();
    auth.put(
        Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER),
        "Bearer " + builder.apiKey);
    // The retry interceptor makes each attempt on the channel that adds the key.
    Channel withKey =
        ClientInterceptors.intercept(managedChannel, MetadataUtils.newAttachHeadersInterceptor(auth));
    // Reconnect at once after a failure instead of after grpc-java's growing backoff (up to 2 min).
    Runnable resetBackoff = managedChannel::resetConnectBackoff;
    this.channel =
        ClientInterceptors.intercept(
            withKey,
            new SesameInterceptor(
                builder.defaultTimeout,
                builder.attemptTimeout,
                builder.retry, builder.generateRequestIds, scheduler, resetBackoff));
    this.watchReconnect = builder.watchReconnect;
    this.readyTimeout = builder.readyTimeout;
  }

  /**
   * A builder for a client of {@code target} with {@code apiKey}.
   *
   * <p>{@code target}: {@code host:port} (plaintext), {@code http://host:port}, {@code
   * https://host[:port]} (TLS, port 443 by default), or any gRPC target ({@code dns:///...}).
   */
  public static Builder builder(String target, String apiKey) {
    return new Builder(target, apiKey);
  }

  /** The channel with the key, deadline, retry and request_id layer: make any stub on it. */
  public Channel channel() {
    return channel;
  }

  /** The gRPC target the channel connects to ({@code host:port}). */
  public String target() {
    return target;
  }

  /** Whether the channel uses TLS. */
  public boolean tls() {
    return tls;
  }

  /** Blocking stub of {@code sesame.v1.AccessRequestService}. */
  public AccessRequestServiceBlockingStub accessRequests() {
    return AccessRequestServiceGrpc.newBlockingStub(channel);
  }

  /** Async ({@code StreamObserver}) stub of {@code sesame.v1.AccessRequestService}. */
  public AccessRequestServiceStub accessRequestsAsync() {
    return AccessRequestServiceGrpc.newStub(channel);
  }

  /** Future ({@code ListenableFuture}) stub of {@code sesame.v1.AccessRequestService}. */
  public AccessRequestServiceFutureStub accessRequestsFuture() {
    return AccessRequestServiceGrpc.newFutureStub(channel);
  }

  /** Blocking stub of {@code sesame.v1.EventService} (a raw {@code WatchEvents} is not resumed). */
  public EventServiceBlockingStub events() {
    return EventServiceGrpc.newBlockingStub(channel);
  }

  /** Async stub of {@code sesame.v1.EventService}. */
  public EventServiceStub eventsAsync() {
    return EventServiceGrpc.newStub(channel);
  }

  /** Blocking stub of {@code sesame.v1.EmailService}. */
  public EmailServiceBlockingStub emails() {
    return EmailServiceGrpc.newBlockingStub(channel);
  }

  /**
   * Watches events, resumed across disconnects (see {@link EventWatch}). Returns once the stream is
   * live: every event committed afterwards (and, with {@code after}, every event after that cursor)
   * is returned exactly once. Throws {@link io.grpc.StatusRuntimeException} when it cannot open.
   */
  public EventWatch watch(WatchEventsRequest request) {
    return new EventWatch(
        EventServiceGrpc.newBlockingStub(channel),
        request,
        watchReconnect,
        readyTimeout,
        scheduler,
        managedChannel::resetConnectBackoff,
        managedChannel::isShutdown);
  }

  /**
   * Like {@link #watch(WatchEventsRequest)}, but hands each event to {@code listener} on a thread of
   * its own. Returns once the stream is live.
   */
  public WatchHandle watch(WatchEventsRequest request, WatchListener listener) {
    Objects.requireNonNull(listener, "listener");
    WatchHandle handle = new WatchHandle(watch(request), listener);
    handle.start();
    return handle;
  }

  /** Closes the channel: calls in flight and open watches end. */
  @Override
  public void close() {
    managedChannel.shutdownNow();
    scheduler.shutdownNow();
    try {
      managedChannel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  /** A gRPC target and whether its scheme implies TLS. */
  public record ParsedTarget(String target, boolean tls) {}

  /**
   * Splits {@code http://host:port} / {@code https://host[:port]} into a gRPC target and whether TLS
   * is implied; other targets ({@code host:port}, {@code dns:///...}) are returned unchanged, without
   * TLS.
   */
  public static ParsedTarget parseTarget(String target) {
    Objects.requireNonNull(target, "target");
    int sep = target.indexOf("://");
    if (sep < 0) {
      return new ParsedTarget(target, false);
    }
    String scheme = target.substring(0, sep);
    if (!scheme.equals("http") && !scheme.equals("https")) {
      return new ParsedTarget(target, false);
    }
    boolean tls = scheme.equals("https");
    String rest = target.substring(sep + 3);
    int slash = rest.indexOf('/');
    String host = slash < 0 ? rest : rest.substring(0, slash);
    boolean hasPort = host.startsWith("[") ? host.contains("]:") : host.contains(":");
    if (!hasPort) {
      host = host + ":" + (tls ? 443 : 80);
    }
    return new ParsedTarget(host, tls);
  }

  private static ChannelCredentials tlsCredentials(byte[] trustedCertificates) {
    if (trustedCertificates == null) {
      return TlsChannelCredentials.create();
    }
    try {
      return TlsChannelCredentials.newBuilder()
          .trustManager(new ByteArrayInputStream(trustedCertificates))
          .build();
    } catch (IOException invalid) {
      throw new UncheckedIOException("cannot read the trusted certificates", invalid);
    }
  }

  /** Options of a {@link SesameClient}. */
  public static final class Builder {
    private final String target;
    private final String apiKey;
    private Boolean tls;
    private byte[] trustedCertificates;
    private ChannelCredentials channelCredentials;
    private Duration defaultTimeout = DEFAULT_TIMEOUT;
    private Duration attemptTimeout;
    private RetryPolicy retry = RetryPolicy.DEFAULT;
    private RetryPolicy watchReconnect = RetryPolicy.DEFAULT_WATCH_RECONNECT;
    private Duration readyTimeout = DEFAULT_READY_TIMEOUT;
    private boolean generateRequestIds = true;

    private Builder(String target, String apiKey) {
      this.target = Objects.requireNonNull(target, "target");
      if (apiKey == null || apiKey.isEmpty()) {
        throw new IllegalArgumentException("apiKey is required");
      }
      this.apiKey = apiKey;
    }

    /** TLS on or off; by default on for {@code https://} targets or trusted certificates. */
    public Builder tls(boolean tls) {
      this.tls = tls;
      return this;
    }

    /** Trust these PEM certificates (a private CA) instead of the system roots; implies TLS. */
    public Builder trustedCertificates(byte[] pem) {
      this.trustedCertificates = pem.clone();
      return this;
    }

    /** Any credentials (e.g. mutual TLS); overrides {@link #tls} and the trusted certificates. */
    public Builder channelCredentials(ChannelCredentials credentials) {
      this.channelCredentials = credentials;
      return this;
    }

    /** The deadline of unary calls that have none of their own; {@code null} for none. */
    public Builder defaultTimeout(Duration timeout) {
      this.defaultTimeout = timeout;
      return this;
    }

    /**
     * The deadline of each attempt of a unary call: an attempt gets this or what is left of the
     * call's deadline, whichever is sooner; {@code null} (the default) lets one attempt use all
     * that is left. A {@code SubmitAccessRequest} carrying a {@code request_id} whose attempt ends
     * {@code DEADLINE_EXCEEDED} is retried like {@code UNAVAILABLE} while the call's deadline has
     * time left: the server returns the request it may have committed, never a second one. No
     * other call is retried on {@code DEADLINE_EXCEEDED}.
     */
    public Builder attemptTimeout(Duration timeout) {
      if (timeout != null && (timeout.isZero() || timeout.isNegative())) {
        throw new IllegalArgumentException("attemptTimeout must be positive");
      }
      this.attemptTimeout = timeout;
      return this;
    }

    /**
     * The retry of {@code UNAVAILABLE} unary calls (and of an attempt's {@code DEADLINE_EXCEEDED}
     * for a submit with a {@code request_id}); {@link RetryPolicy#NONE} turns it off.
     */
    public Builder retry(RetryPolicy policy) {
      this.retry = Objects.requireNonNull(policy, "policy");
      return this;
    }

    /** The backoff and bound of consecutive attempts to reopen a broken watch. */
    public Builder watchReconnect(RetryPolicy policy) {
      this.watchReconnect = Objects.requireNonNull(policy, "policy");
      return this;
    }

    /** The wait for each watch stream's {@code ready}; {@code null} for no bound. */
    public Builder readyTimeout(Duration timeout) {
      this.readyTimeout = timeout;
      return this;
    }

    /**
     * Whether a {@code SubmitAccessRequest} without {@code request_id} gets a random UUID (default
     * true); false sends what you give.
     */
    public Builder generateRequestIds(boolean generate) {
      this.generateRequestIds = generate;
      return this;
    }

    public SesameClient build() {
      return new SesameClient(this);
    }
  }
}
