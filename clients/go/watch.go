package sesame

import (
	"context"
	"errors"
	"io"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sesamev1 "sesame.dev/client/go/gen/sesame/v1"
)

// ErrWatchClosed is returned by Watch.Next after Close.
var ErrWatchClosed = errors.New("sesame: watch closed")

// Watch is a WatchEvents stream that resumes from its last cursor when it
// breaks. Make one with Client.Watch; read it with Next or Events; Close it
// (or cancel its context) when done. Next and Events are for one goroutine;
// Close, Cursor and Reconnects may be called from any.
type Watch struct {
	client *Client
	ctx    context.Context
	cancel context.CancelFunc
	req    *sesamev1.WatchEventsRequest

	stream       sesamev1.EventService_WatchEventsClient
	streamCancel context.CancelFunc
	pending      *sesamev1.Event
	lastSequence int64

	mu         sync.Mutex
	cursor     string
	reconnects int
	closed     bool
}

// Watch opens a WatchEvents stream and returns once it is live (the server's
// `ready` arrived): every event committed afterwards, and with req.After
// every event after that cursor, is then delivered exactly once, in order.
//
// The watch remembers the last cursor it received (of an event, a `ready` or
// a heartbeat: all safe resume points). When the stream breaks with
// UNAVAILABLE (server restart or shutdown, lost connection), with
// RESOURCE_EXHAUSTED/WATCHER_TOO_SLOW, or simply ends, it opens a new one
// with After set to that cursor and the same filters, after a backoff
// (WithWatchReconnect); it gives up after that many consecutive failed
// attempts and returns the last error. Any other error (e.g. CURSOR_INVALID,
// CURSOR_EXPIRED, a revoked key) is returned at once.
//
// Cancelling ctx, or calling Close, ends the watch. Streams have no deadline.
func (c *Client) Watch(ctx context.Context, req *sesamev1.WatchEventsRequest) (*Watch, error) {
	if req == nil {
		req = &sesamev1.WatchEventsRequest{}
	}
	watchCtx, cancel := context.WithCancel(ctx)
	w := &Watch{
		client: c,
		ctx:    watchCtx,
		cancel: cancel,
		req:    proto.CloneOf(req),
		cursor: req.GetAfter(),
	}
	if err := w.open(false); err != nil {
		cancel()
		return nil, err
	}
	return w, nil
}

// Cursor is the last resume point received: pass it as After to continue
// later, e.g. in another process.
func (w *Watch) Cursor() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cursor
}

// Reconnects counts how many times the stream was opened again after a break.
func (w *Watch) Reconnects() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reconnects
}

// Close ends the watch and its stream; Next then returns ErrWatchClosed.
func (w *Watch) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
}

func (w *Watch) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// ended returns why the watch is over (closed, or its context ended), or nil.
func (w *Watch) ended() error {
	if w.isClosed() {
		return ErrWatchClosed
	}
	return w.ctx.Err()
}

// Next blocks until the next event and returns it. It returns ErrWatchClosed
// after Close, the context's error once it is cancelled, and otherwise an
// error (a gRPC status: see Code, Reason) when the watch cannot go on.
func (w *Watch) Next() (*sesamev1.Event, error) {
	for {
		if err := w.ended(); err != nil {
			return nil, err
		}
		if w.pending != nil {
			event := w.pending
			w.pending = nil
			return event, nil
		}
		response, err := w.stream.Recv()
		if err != nil {
			if ended := w.ended(); ended != nil {
				return nil, ended
			}
			if !errors.Is(err, io.EOF) && !resumable(err) {
				return nil, err
			}
			w.log("sesame watch stream broke; resuming", err)
			w.mu.Lock()
			w.reconnects++
			w.mu.Unlock()
			if err := w.open(true); err != nil {
				return nil, err
			}
			continue
		}
		if event := w.accept(response); event != nil {
			return event, nil
		}
	}
}

// Events iterates over the events with Next. The loop ends without an
// error when the watch is closed or its context cancelled; any other error
// is yielded once, as the last item. Leaving the loop does not close the
// watch.
func (w *Watch) Events() iter.Seq2[*sesamev1.Event, error] {
	return func(yield func(*sesamev1.Event, error) bool) {
		for {
			event, err := w.Next()
			if err != nil {
				if errors.Is(err, ErrWatchClosed) || w.ctx.Err() != nil {
					return
				}
				yield(nil, err)
				return
			}
			if !yield(event, nil) {
				return
			}
		}
	}
}

// accept records the message's cursor and returns its event, if new.
func (w *Watch) accept(response *sesamev1.WatchEventsResponse) *sesamev1.Event {
	var cursor string
	var event *sesamev1.Event
	switch kind := response.GetKind().(type) {
	case *sesamev1.WatchEventsResponse_Event:
		event = kind.Event
		cursor = event.GetCursor()
	case *sesamev1.WatchEventsResponse_Ready:
		cursor = kind.Ready.GetCursor()
	case *sesamev1.WatchEventsResponse_Heartbeat:
		cursor = kind.Heartbeat.GetCursor()
	}
	if cursor != "" {
		w.mu.Lock()
		w.cursor = cursor
		w.mu.Unlock()
	}
	if event == nil {
		return nil
	}
	// The log is gap-free and ordered; a resumed stream starts after the
	// cursor, so this only guards against a replayed duplicate.
	if event.GetSequence() != 0 && event.GetSequence() <= w.lastSequence {
		return nil
	}
	w.lastSequence = event.GetSequence()
	return event
}

// open opens a stream from the cursor and waits for its first message
// (`ready`). After a break (resuming) it waits a backoff before its first
// attempt too.
func (w *Watch) open(resuming bool) error {
	policy := w.client.watchReconnect
	var lastErr error
	for attempt := 1; ; attempt++ {
		if attempt > policy.attempts() {
			return lastErr
		}
		retry := attempt - 1
		if resuming {
			retry = attempt
		}
		if retry > 0 && !sleep(w.ctx, policy.Backoff(retry)) {
			return w.ended()
		}
		err := w.openOnce()
		if err == nil {
			return nil
		}
		if ended := w.ended(); ended != nil {
			return ended
		}
		if !resumable(err) {
			return err
		}
		lastErr = err
		w.log("sesame watch failed to open; retrying", err)
	}
}

func (w *Watch) openOnce() error {
	if w.streamCancel != nil {
		w.streamCancel()
	}
	req := proto.CloneOf(w.req)
	req.After = w.Cursor()
	streamCtx, streamCancel := context.WithCancel(w.ctx)
	var timedOut atomic.Bool
	if w.client.readyTimeout > 0 {
		timer := time.AfterFunc(w.client.readyTimeout, func() {
			timedOut.Store(true)
			streamCancel()
		})
		defer timer.Stop()
	}
	first, err := w.first(streamCtx, req)
	if err != nil && timedOut.Load() && w.ended() == nil {
		streamCancel()
		return status.Errorf(codes.Unavailable, "no ready message within %s", w.client.readyTimeout)
	}
	if err != nil {
		streamCancel()
		return err
	}
	w.streamCancel = streamCancel
	w.pending = w.accept(first)
	return nil
}

func (w *Watch) first(ctx context.Context, req *sesamev1.WatchEventsRequest) (*sesamev1.WatchEventsResponse, error) {
	stream, err := w.client.Events.WatchEvents(ctx, req)
	if err != nil {
		return nil, err
	}
	response, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, status.Error(codes.Unavailable, "watch stream ended before ready")
	}
	if err != nil {
		return nil, err
	}
	w.stream = stream
	return response, nil
}

func (w *Watch) log(message string, err error) {
	if w.client.logger == nil {
		return
	}
	w.client.logger.InfoContext(w.ctx, message, "error", err.Error(), "cursor", w.Cursor())
}

// resumable reports the stream ends after which resuming from the last
// cursor is right.
func resumable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true // server shutting down, connection lost or refused
	case codes.ResourceExhausted:
		return Reason(err) == "WATCHER_TOO_SLOW"
	default:
		return false
	}
}
