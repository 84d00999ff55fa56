package dev.sesame.client;

import static dev.sesame.client.Fixtures.submit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import sesame.v1.AccessRequestOuterClass.AccessRequest;
import sesame.v1.AccessRequestOuterClass.ApproveAccessRequestRequest;
import sesame.v1.EventOuterClass.Event;
import sesame.v1.EventOuterClass.EventType;
import sesame.v1.EventOuterClass.ListEventsRequest;
import sesame.v1.EventOuterClass.WatchEventsRequest;

/** The resumable watch, as an Iterator and with a listener, against the real server. */
@ExtendWith(SesameServerExtension.class)
class WatchTest {
  private static final WatchEventsRequest REQUEST_EVENTS =
      WatchEventsRequest.newBuilder()
          .addEventTypes(EventType.EVENT_TYPE_REQUEST_SUBMITTED)
          .addEventTypes(EventType.EVENT_TYPE_REQUEST_APPROVED)
          .addEventTypes(EventType.EVENT_TYPE_REQUEST_REJECTED)
          .addEventTypes(EventType.EVENT_TYPE_REQUEST_CANCELLED)
          .build();

  private static ApproveAccessRequestRequest approve(AccessRequest request) {
    return ApproveAccessRequestRequest.newBuilder().setName(request.getName()).setNote("welcome").build();
  }

  @Test
  void theIteratorReceivesSubmittedAndApproved(SesameServer server) throws Exception {
    try (SesameClient client = server.clientBuilder().build();
        SesameClient backend = server.submitterBuilder().build();
        EventWatch events = client.watch(REQUEST_EVENTS)) {
      assertFalse(events.cursor().isEmpty(), "live: the ready cursor is known before any submit");
      AccessRequest request = submit(backend);
      client.accessRequests().approveAccessRequest(approve(request));
      Event submitted = events.next();
      Event approved = events.next();
      assertEquals(EventType.EVENT_TYPE_REQUEST_SUBMITTED, submitted.getType());
      assertEquals(EventType.EVENT_TYPE_REQUEST_APPROVED, approved.getType());
      assertEquals(request.getName(), submitted.getAccessRequest());
      assertEquals(request.getName(), approved.getAccessRequest());
      assertEquals("welcome", approved.getReason());
      assertTrue(approved.getSequence() > submitted.getSequence());
      assertEquals(approved.getCursor(), events.cursor());
    }
  }

  @Test
  void theListenerReceivesSubmittedAndApproved(SesameServer server) throws Exception {
    BlockingQueue<Event> received = new LinkedBlockingQueue<>();
    CompletableFuture<Void> closed = new CompletableFuture<>();
    try (SesameClient client = server.clientBuilder().build();
        SesameClient backend = server.submitterBuilder().build()) {
      WatchHandle handle =
          client.watch(
              REQUEST_EVENTS,
              new WatchListener() {
                @Override
                public void onEvent(Event event) {
                  received.add(event);
                }

                @Override
                public void onError(Throwable error) {
                  closed.completeExceptionally(error);
                }

                @Override
                public void onClosed() {
                  closed.complete(null);
                }
              });
      AccessRequest request = submit(backend);
      client.accessRequests().approveAccessRequest(approve(request));
      Event submitted = received.poll(10, TimeUnit.SECONDS);
      Event approved = received.poll(10, TimeUnit.SECONDS);
      assertEquals(EventType.EVENT_TYPE_REQUEST_SUBMITTED, submitted.getType());
      assertEquals(EventType.EVENT_TYPE_REQUEST_APPROVED, approved.getType());
      assertEquals(request.getName(), approved.getAccessRequest());
      handle.close();
      closed.get(10, TimeUnit.SECONDS); // onClosed, not onError
      assertTrue(handle.awaitTermination(Duration.ofSeconds(5)));
      assertEquals(approved.getCursor(), handle.cursor());
    }
  }

  @Test
  void aCursorReplaysWhatFollowsIt(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build()) {
      AccessRequest first = submit(client);
      AccessRequest second = submit(client);
      AccessRequest third = submit(client);
      List<Event> listed =
          client.events()
              .listEvents(ListEventsRequest.newBuilder().addEventTypes(EventType.EVENT_TYPE_REQUEST_SUBMITTED).build())
              .getEventsList();
      assertEquals(
          List.of(first.getName(), second.getName(), third.getName()),
          listed.stream().map(Event::getAccessRequest).toList());
      try (EventWatch replay =
          client.watch(REQUEST_EVENTS.toBuilder().setAfter(listed.get(0).getCursor()).build())) {
        assertEquals(second.getName(), replay.next().getAccessRequest());
        assertEquals(third.getName(), replay.next().getAccessRequest());
      }
    }
  }

  @Test
  void closeFromAnotherThreadEndsTheIteration(SesameServer server) throws Exception {
    ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
    try (SesameClient client = server.clientBuilder().build()) {
      EventWatch events = client.watch(WatchEventsRequest.getDefaultInstance());
      timer.schedule(events::close, 300, TimeUnit.MILLISECONDS);
      assertFalse(events.hasNext());
      assertTrue(events.isClosed());
    } finally {
      timer.shutdownNow();
    }
  }

  @Test
  void closingTheClientEndsItsWatches(SesameServer server) throws Exception {
    CompletableFuture<Void> closed = new CompletableFuture<>();
    SesameClient client = server.clientBuilder().build();
    EventWatch events = client.watch(REQUEST_EVENTS);
    WatchHandle handle =
        client.watch(
            REQUEST_EVENTS,
            new WatchListener() {
              @Override
              public void onEvent(Event event) {}

              @Override
              public void onError(Throwable error) {
                closed.completeExceptionally(error);
              }

              @Override
              public void onClosed() {
                closed.complete(null);
              }
            });
    long started = System.nanoTime();
    client.close();
    closed.get(5, TimeUnit.SECONDS); // onClosed, not onError, and not after reconnect attempts
    assertFalse(events.hasNext());
    assertTrue(handle.awaitTermination(Duration.ofSeconds(5)));
    assertTrue(SesameServer.elapsedSince(started).compareTo(Duration.ofSeconds(2)) < 0);
  }

  @Test
  void aNonResumableErrorIsThrown(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build()) {
      StatusRuntimeException invalid =
          assertThrows(
              StatusRuntimeException.class,
              () -> client.watch(WatchEventsRequest.newBuilder().setAfter("not-a-cursor").build()));
      assertEquals(Status.Code.INVALID_ARGUMENT, SesameError.from(invalid).code());
      assertEquals("CURSOR_INVALID", SesameError.from(invalid).reason());
    }
  }

  @Test
  void theIteratorResumesAcrossAServerRestartWithoutGapOrDuplicate(SesameServer server) throws Exception {
    try (SesameClient client = server.clientBuilder().build();
        EventWatch events = client.watch(REQUEST_EVENTS)) {
      AccessRequest a = submit(client);
      Event eventA = events.next();
      assertEquals(a.getName(), eventA.getAccessRequest());

      // Restart on the same database and port. The shutdown ends the stream (UNAVAILABLE,
      // SERVER_SHUTTING_DOWN); B and C are committed before the iterator notices, so they come from
      // the replay after A's cursor, and D arrives live on the resumed stream.
      server.restart();
      AccessRequest b = submit(client);
      AccessRequest c = submit(client);
      List<Event> received = new ArrayList<>(List.of(events.next(), events.next()));
      AccessRequest d = submit(client);
      received.add(events.next());

      assertTrue(events.reconnects() >= 1);
      assertEquals(
          List.of(b.getName(), c.getName(), d.getName()),
          received.stream().map(Event::getAccessRequest).toList());
      assertTrue(received.stream().allMatch(e -> e.getType() == EventType.EVENT_TYPE_REQUEST_SUBMITTED));
      List<Long> sequences = new ArrayList<>(List.of(eventA.getSequence()));
      received.forEach(e -> sequences.add(e.getSequence()));
      assertEquals(sequences.stream().distinct().sorted().toList(), sequences, "in order, no duplicate");
      assertEquals(received.get(2).getCursor(), events.cursor());
      // The same events as the audit log: no gap.
      List<String> logged =
          client.events()
              .listEvents(ListEventsRequest.newBuilder().addEventTypes(EventType.EVENT_TYPE_REQUEST_SUBMITTED).build())
              .getEventsList()
              .stream()
              .map(Event::getAccessRequest)
              .toList();
      assertEquals(List.of(a.getName(), b.getName(), c.getName(), d.getName()), logged);
    }
  }

  @Test
  void theListenerReconnectsWhileTheServerIsDown(SesameServer server) throws Exception {
    BlockingQueue<Event> received = new LinkedBlockingQueue<>();
    ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
    try (SesameClient client = server.clientBuilder().build();
        WatchHandle handle = client.watch(REQUEST_EVENTS, received::add)) {
      AccessRequest a = submit(client);
      assertEquals(a.getName(), received.poll(10, TimeUnit.SECONDS).getAccessRequest());
      server.stop();
      // The stream breaks and the server is down; it comes back 1.5 s later with a request
      // already waiting, which the resumed stream replays.
      ScheduledFuture<AccessRequest> later =
          timer.schedule(
              () -> {
                server.start();
                try (SesameClient other = server.clientBuilder().build()) {
                  return submit(other);
                }
              },
              1500,
              TimeUnit.MILLISECONDS);
      Event eventB = received.poll(30, TimeUnit.SECONDS);
      AccessRequest b = later.get(30, TimeUnit.SECONDS);
      assertEquals(b.getName(), eventB.getAccessRequest());
      assertTrue(handle.reconnects() >= 1);
      assertEquals(null, received.poll(300, TimeUnit.MILLISECONDS), "no duplicate");
    } finally {
      timer.shutdownNow();
    }
  }
}
