package sesame_test

// The resumable watch against the real server.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sesame "sesame.dev/client/go"
	sesamev1 "sesame.dev/client/go/gen/sesame/v1"
)

var requestEvents = []sesamev1.EventType{
	sesamev1.EventType_EVENT_TYPE_REQUEST_SUBMITTED,
	sesamev1.EventType_EVENT_TYPE_REQUEST_APPROVED,
	sesamev1.EventType_EVENT_TYPE_REQUEST_REJECTED,
	sesamev1.EventType_EVENT_TYPE_REQUEST_CANCELLED,
}

// watch opens a watch of request events; it is closed with the test.
func watch(t *testing.T, client *sesame.Client, after string) *sesame.Watch {
	t.Helper()
	w, err := client.Watch(context.Background(), &sesamev1.WatchEventsRequest{After: after, EventTypes: requestEvents})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(w.Close)
	return w
}

// next reads one event, failing the test on error or after 20 s.
func next(t *testing.T, w *sesame.Watch) *sesamev1.Event {
	t.Helper()
	type result struct {
		event *sesamev1.Event
		err   error
	}
	done := make(chan result, 1)
	go func() {
		event, err := w.Next()
		done <- result{event, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("watch: %v", r.err)
		}
		return r.event
	case <-time.After(20 * time.Second):
		w.Close()
		t.Fatal("no event within 20 s")
		return nil
	}
}

func TestWatchReceivesSubmittedAndApproved(t *testing.T) {
	srv := startServer(t)
	client, backend := newClient(t, srv), newSubmitter(t, srv)
	w := watch(t, client, "")
	if w.Cursor() == "" {
		t.Fatal("the watch returned before its ready cursor")
	}
	request := submit(t, backend)
	if _, err := client.Approve(context.Background(), &sesamev1.ApproveAccessRequestRequest{Name: request.GetName(), Note: "welcome"}); err != nil {
		t.Fatal(err)
	}
	submitted, approved := next(t, w), next(t, w)
	if submitted.GetType() != sesamev1.EventType_EVENT_TYPE_REQUEST_SUBMITTED || approved.GetType() != sesamev1.EventType_EVENT_TYPE_REQUEST_APPROVED {
		t.Errorf("events %v, %v", submitted.GetType(), approved.GetType())
	}
	if submitted.GetAccessRequest() != request.GetName() || approved.GetAccessRequest() != request.GetName() {
		t.Errorf("events about %s and %s, want %s", submitted.GetAccessRequest(), approved.GetAccessRequest(), request.GetName())
	}
	if approved.GetReason() != "welcome" || approved.GetSequence() <= submitted.GetSequence() {
		t.Errorf("approved event %v after %v", approved, submitted)
	}
	if w.Cursor() != approved.GetCursor() {
		t.Errorf("cursor %q, want the last event's %q", w.Cursor(), approved.GetCursor())
	}
}

func TestWatchReplaysAfterACursor(t *testing.T) {
	client := newClient(t, startServer(t))
	first, second := submit(t, client), submit(t, client)
	listed, err := client.Events.ListEvents(context.Background(), &sesamev1.ListEventsRequest{
		EventTypes: []sesamev1.EventType{sesamev1.EventType_EVENT_TYPE_REQUEST_SUBMITTED},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed.GetEvents()) != 2 || listed.GetEvents()[0].GetAccessRequest() != first.GetName() {
		t.Fatalf("listed %v", listed.GetEvents())
	}
	w := watch(t, client, listed.GetEvents()[0].GetCursor())
	if got := next(t, w); got.GetAccessRequest() != second.GetName() {
		t.Errorf("replay gave %v, want the second request", got)
	}
	third := submit(t, client)
	if got := next(t, w); got.GetAccessRequest() != third.GetName() {
		t.Errorf("live gave %v, want the third request", got)
	}
}

func TestWatchContextCancellationEndsIt(t *testing.T) {
	client := newClient(t, startServer(t))
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.Watch(ctx, &sesamev1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, cancel)
	started := time.Now()
	_, err = w.Next()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v, want context.Canceled", err)
	}
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Errorf("cancellation took %v", elapsed)
	}

	// The range loop ends without an error.
	ctx, cancel = context.WithCancel(context.Background())
	w, err = client.Watch(ctx, &sesamev1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, cancel)
	for event, err := range w.Events() {
		t.Fatalf("the loop yielded %v, %v", event, err)
	}

	// A context already cancelled: Watch returns its error.
	if _, err := client.Watch(ctx, &sesamev1.WatchEventsRequest{}); !errors.Is(err, context.Canceled) && sesame.Code(err) != codes.Canceled {
		t.Errorf("Watch with a cancelled context: %v", err)
	}
}

func TestWatchCloseEndsTheLoop(t *testing.T) {
	client := newClient(t, startServer(t))
	w := watch(t, client, "")
	time.AfterFunc(300*time.Millisecond, w.Close)
	for event, err := range w.Events() {
		t.Fatalf("the loop yielded %v, %v", event, err)
	}
	if _, err := w.Next(); !errors.Is(err, sesame.ErrWatchClosed) {
		t.Errorf("Next after Close: %v", err)
	}
}

func TestWatchReturnsNonResumableErrors(t *testing.T) {
	client := newClient(t, startServer(t))
	_, err := client.Watch(context.Background(), &sesamev1.WatchEventsRequest{After: "not-a-cursor"})
	wantError(t, err, codes.InvalidArgument, "CURSOR_INVALID")
}

func TestWatchResumesAcrossAServerRestart(t *testing.T) {
	srv := startServer(t)
	var logs logBuffer
	client := newClient(t, srv, sesame.WithLogger(logs.logger()))
	w := watch(t, client, "")
	a := submit(t, client)
	eventA := next(t, w)
	if eventA.GetAccessRequest() != a.GetName() {
		t.Fatalf("first event %v", eventA)
	}

	// Restart on the same database and port. The shutdown ends the stream
	// (UNAVAILABLE, SERVER_SHUTTING_DOWN); B and C are committed before the
	// watch notices, so they come from the replay after A's cursor, and D
	// arrives live on the resumed stream.
	srv.restart()
	b, c := submit(t, client), submit(t, client)
	received := []*sesamev1.Event{next(t, w), next(t, w)}
	d := submit(t, client)
	received = append(received, next(t, w))

	if w.Reconnects() < 1 {
		t.Errorf("reconnects %d", w.Reconnects())
	}
	want := namesOf([]*sesamev1.AccessRequest{b, c, d})
	var got []string
	sequences := []int64{eventA.GetSequence()}
	for _, event := range received {
		got = append(got, event.GetAccessRequest())
		sequences = append(sequences, event.GetSequence())
		if event.GetType() != sesamev1.EventType_EVENT_TYPE_REQUEST_SUBMITTED {
			t.Errorf("event %v", event)
		}
	}
	if joined := joinNames(got); joined != want {
		t.Errorf("after the restart: %s, want %s", joined, want)
	}
	// No gap, no duplicate: the same events as the log holds, in order
	// (other events, such as emails, have sequences in between).
	listed, err := client.Events.ListEvents(context.Background(), &sesamev1.ListEventsRequest{EventTypes: requestEvents})
	if err != nil {
		t.Fatal(err)
	}
	var logged []int64
	for _, event := range listed.GetEvents() {
		logged = append(logged, event.GetSequence())
	}
	if fmt.Sprint(logged) != fmt.Sprint(sequences) {
		t.Errorf("watched sequences %v, the log has %v", sequences, logged)
	}
	if w.Cursor() != received[2].GetCursor() {
		t.Errorf("cursor %q, want %q", w.Cursor(), received[2].GetCursor())
	}
	if logs.count("sesame watch stream broke; resuming") < 1 {
		t.Error("the resumption was not logged")
	}
}

func TestWatchReconnectsWhileTheServerIsDown(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv)
	w := watch(t, client, "")
	a := submit(t, client)
	if got := next(t, w); got.GetAccessRequest() != a.GetName() {
		t.Fatalf("first event %v", got)
	}
	srv.stop()
	// The next read finds the stream broken and the server down; the server
	// comes back 1.5 s later with a request already waiting.
	submitted := make(chan *sesamev1.AccessRequest, 1)
	failed := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		if err := srv.tryStart(); err != nil {
			failed <- err
			return
		}
		other, err := sesame.New(srv.target(), srv.adminKey)
		if err != nil {
			failed <- err
			return
		}
		defer other.Close()
		request, err := other.Submit(context.Background(), submitRequest("", "vpn-paris"))
		if err != nil {
			failed <- err
			return
		}
		submitted <- request
	}()
	eventB := next(t, w)
	select {
	case err := <-failed:
		t.Fatal(err)
	case b := <-submitted:
		if eventB.GetAccessRequest() != b.GetName() {
			t.Errorf("event %v, want the request submitted while the watch was away", eventB)
		}
	}
}

func joinNames(names []string) string {
	requests := make([]*sesamev1.AccessRequest, len(names))
	for i, name := range names {
		requests[i] = &sesamev1.AccessRequest{Name: name}
	}
	return namesOf(requests)
}
