// Package sesame is the Go client of Sesame, the gRPC access-request service.
//
// The messages and gRPC stubs are generated from proto/sesame/v1 into
// sesame.dev/client/go/gen/sesame/v1 (package sesamev1). This package adds a
// thin layer over them, the same behaviour as Sesame's other clients:
//
//   - every call carries `authorization: Bearer <key>`;
//   - a unary call whose context has no deadline gets the client's default
//     (10 s), covering its retries;
//   - unary calls failing with UNAVAILABLE are retried with jittered
//     exponential backoff (AIP-194); WithAttemptTimeout bounds each attempt;
//   - Submit fills in a random request_id (AIP-155), so a retry cannot create
//     a second request; that makes an attempt of a submit that ended
//     DEADLINE_EXCEEDED safe to retry too, and it is (no other call is);
//   - Watch resumes a broken event stream from its last cursor;
//   - ErrorInfo, Reason and FieldViolations read the AIP-193 error details.
package sesame

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sesamev1 "sesame.dev/client/go/gen/sesame/v1"
)

// Version is this client's version, sent in the user agent.
const Version = "0.1.0"

// DefaultTimeout is the deadline given to a unary call whose context has none.
const DefaultTimeout = 10 * time.Second

// Client is a connection to a Sesame server. It is safe for concurrent use;
// Close it when done.
type Client struct {
	conn *grpc.ClientConn

	// AccessRequests is the generated stub of sesame.v1.AccessRequestService
	// on the client's connection: key, default deadline and retry applied.
	AccessRequests sesamev1.AccessRequestServiceClient
	// Events is the generated stub of sesame.v1.EventService.
	Events sesamev1.EventServiceClient
	// Emails is the generated stub of sesame.v1.EmailService.
	Emails sesamev1.EmailServiceClient
	// Gateway is the generated stub of sesame.v1.GatewayService.
	Gateway sesamev1.GatewayServiceClient
	// Privacy is the generated stub of sesame.v1.PrivacyService.
	Privacy sesamev1.PrivacyServiceClient

	apiKey         string
	timeout        time.Duration
	attemptTimeout time.Duration
	retry          RetryPolicy
	watchReconnect RetryPolicy
	readyTimeout   time.Duration
	logger         *slog.Logger
}

type config struct {
	timeout        time.Duration
	attemptTimeout time.Duration
	retry          RetryPolicy
	watchReconnect RetryPolicy
	readyTimeout   time.Duration
	tls            *tls.Config
	creds          credentials.TransportCredentials
	logger         *slog.Logger
	dialOptions    []grpc.DialOption
}

// Option configures New.
type Option func(*config)

// WithTimeout sets the default deadline of unary calls whose context has
// none (DefaultTimeout by default; 0 means no default deadline).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithAttemptTimeout sets the deadline of each attempt of a unary call: an
// attempt gets d or what is left of the call's deadline, whichever is
// shorter (0, the default: one attempt may use all that is left). A
// SubmitAccessRequest carrying a request_id whose attempt ends
// DEADLINE_EXCEEDED is retried like UNAVAILABLE while the call's deadline has
// time left: the server returns the request it may have committed, never a
// second one. No other call is retried on DEADLINE_EXCEEDED.
func WithAttemptTimeout(d time.Duration) Option { return func(c *config) { c.attemptTimeout = d } }

// WithRetry sets the retry policy of unary calls (DefaultRetry by default;
// NoRetry disables retries).
func WithRetry(p RetryPolicy) Option { return func(c *config) { c.retry = p } }

// WithWatchReconnect sets how a broken watch stream is reopened
// (DefaultWatchReconnect by default).
func WithWatchReconnect(p RetryPolicy) Option { return func(c *config) { c.watchReconnect = p } }

// WithReadyTimeout bounds the wait for each watch stream's `ready` message
// (10 s by default); a stream that does not get ready in time is reopened.
func WithReadyTimeout(d time.Duration) Option { return func(c *config) { c.readyTimeout = d } }

// WithTLS connects with TLS using cfg (e.g. a private CA in RootCAs, or a
// client certificate for mutual TLS). An https:// target uses TLS with the
// system roots without this option.
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// WithTransportCredentials overrides the transport credentials entirely.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.creds = creds }
}

// WithLogger logs each retry and each watch resumption at Info level to l
// (nothing is logged by default). Keys are never logged.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithDialOptions adds gRPC dial options (applied after the client's own).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// New makes a client of the server at target: "host:port" (plaintext unless
// WithTLS), "http://host:port" (plaintext), "https://host[:port]" (TLS, port
// 443 by default) or any gRPC target ("dns:///host:port", "unix:path").
// Like grpc.NewClient it does not connect yet: the first call does.
func New(target, apiKey string, opts ...Option) (*Client, error) {
	if apiKey == "" {
		return nil, errors.New("sesame: an API key is required")
	}
	cfg := config{
		timeout:        DefaultTimeout,
		retry:          DefaultRetry,
		watchReconnect: DefaultWatchReconnect,
		readyTimeout:   10 * time.Second,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	address, impliedTLS, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	creds := cfg.creds
	if creds == nil {
		switch {
		case cfg.tls != nil:
			creds = credentials.NewTLS(cfg.tls)
		case impliedTLS:
			creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
		default:
			creds = insecure.NewCredentials()
		}
	}
	c := &Client{
		apiKey:         apiKey,
		timeout:        cfg.timeout,
		attemptTimeout: cfg.attemptTimeout,
		retry:          cfg.retry,
		watchReconnect: cfg.watchReconnect,
		readyTimeout:   cfg.readyTimeout,
		logger:         cfg.logger,
	}
	dialOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("sesame-client-go/" + Version),
		// Reconnect quickly after a server restart: gRPC's default backoff
		// grows to 120 s, and calls fail fast with UNAVAILABLE meanwhile.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithChainUnaryInterceptor(c.unaryInterceptor),
		grpc.WithChainStreamInterceptor(c.streamInterceptor),
	}
	conn, err := grpc.NewClient(address, append(dialOptions, cfg.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("sesame: %w", err)
	}
	c.conn = conn
	c.AccessRequests = sesamev1.NewAccessRequestServiceClient(conn)
	c.Events = sesamev1.NewEventServiceClient(conn)
	c.Emails = sesamev1.NewEmailServiceClient(conn)
	c.Gateway = sesamev1.NewGatewayServiceClient(conn)
	c.Privacy = sesamev1.NewPrivacyServiceClient(conn)
	return c, nil
}

// ParseTarget turns "http://host:port" and "https://host[:port]" into a gRPC
// target and whether TLS is implied; other targets ("host:port",
// "dns:///...", "unix:...") are returned unchanged with false.
func ParseTarget(target string) (address string, tls bool, err error) {
	scheme, _, found := strings.Cut(target, "://")
	if !found || (scheme != "http" && scheme != "https") {
		return target, false, nil
	}
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return "", false, fmt.Errorf("sesame: invalid target %q", target)
	}
	tls = scheme == "https"
	if u.Port() != "" {
		return u.Host, tls, nil
	}
	port := "80"
	if tls {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), tls, nil
}

// Close closes the connection; open watches end.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the client's gRPC connection (key, deadline and retry applied by
// its interceptors), for stubs of other services.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

func (c *Client) withKey(ctx context.Context) context.Context {
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		return ctx // the caller sent its own
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.apiKey)
}

// unaryInterceptor adds the key, the default deadline, the attempt deadline
// and the retry of UNAVAILABLE (and, for a submit with a request_id, of an
// attempt's DEADLINE_EXCEEDED) to every unary call made on the connection.
func (c *Client) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx = c.withKey(ctx)
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	maxAttempts := c.retry.attempts()
	retryDeadline := false
	if submit, ok := req.(*sesamev1.SubmitAccessRequestRequest); ok {
		if submit.GetRequestId() == "" {
			maxAttempts = 1 // without a request_id a retry could submit twice
		}
		// The request_id returns the request a timed-out attempt may have
		// committed, instead of creating a second one.
		retryDeadline = submit.GetRequestId() != ""
	}
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, method, req, reply, cc, invoker, opts...)
		code := status.Code(err)
		retryable := code == codes.Unavailable ||
			(code == codes.DeadlineExceeded && retryDeadline && ctx.Err() == nil)
		if !retryable || attempt >= maxAttempts {
			return err
		}
		delay := c.retry.Backoff(attempt)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= delay {
			return err
		}
		if c.logger != nil {
			failure := "UNAVAILABLE"
			if code == codes.DeadlineExceeded {
				failure = "DEADLINE_EXCEEDED"
			}
			c.logger.InfoContext(ctx, "sesame call failed with "+failure+"; retrying",
				"method", method, "error", status.Convert(err).Message(),
				"retry", attempt, "max_retries", maxAttempts-1, "delay", delay)
		}
		if !sleep(ctx, delay) {
			return err
		}
	}
}

// attempt makes one attempt of a unary call, under the attempt deadline when
// one is set (context.WithTimeout keeps the call's deadline when sooner).
func (c *Client) attempt(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if c.attemptTimeout <= 0 {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	attemptCtx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()
	return invoker(attemptCtx, method, req, reply, cc, opts...)
}

// streamInterceptor adds the key only: streams are long-lived (no default
// deadline) and resumed by Watch.
func (c *Client) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(c.withKey(ctx), desc, cc, method, opts...)
}

// NewRequestID returns a random UUID (version 4), as Submit sends.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Submit submits an access request; it is PENDING (or decided at once by a
// rule). When req.RequestId is empty a random one is sent (req itself is not
// modified), so the automatic retry of UNAVAILABLE, or of an attempt that
// timed out (WithAttemptTimeout), never creates a second request (AIP-155); the returned request's RequestId is the one used.
func (c *Client) Submit(ctx context.Context, req *sesamev1.SubmitAccessRequestRequest) (*sesamev1.AccessRequest, error) {
	if req == nil {
		req = &sesamev1.SubmitAccessRequestRequest{}
	}
	if req.GetRequestId() == "" {
		req = proto.CloneOf(req)
		req.RequestId = NewRequestID()
	}
	resp, err := c.AccessRequests.SubmitAccessRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetAccessRequest(), nil
}

// Get returns one access request by name ("accessRequests/...").
func (c *Client) Get(ctx context.Context, name string) (*sesamev1.AccessRequest, error) {
	resp, err := c.AccessRequests.GetAccessRequest(ctx, &sesamev1.GetAccessRequestRequest{Name: name})
	if err != nil {
		return nil, err
	}
	return resp.GetAccessRequest(), nil
}

// List returns one page of access requests, newest first; pass the
// response's NextPageToken as PageToken for the next. See All for every page.
func (c *Client) List(ctx context.Context, req *sesamev1.ListAccessRequestsRequest) (*sesamev1.ListAccessRequestsResponse, error) {
	return c.AccessRequests.ListAccessRequests(ctx, req)
}

// All iterates over every access request matching req (its PageToken is the
// starting point), newest first, fetching pages as needed; each page is one
// call with its own deadline. It stops after yielding an error.
func (c *Client) All(ctx context.Context, req *sesamev1.ListAccessRequestsRequest) iter.Seq2[*sesamev1.AccessRequest, error] {
	return func(yield func(*sesamev1.AccessRequest, error) bool) {
		page := proto.CloneOf(req)
		if page == nil {
			page = &sesamev1.ListAccessRequestsRequest{}
		}
		for {
			resp, err := c.List(ctx, page)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, request := range resp.GetAccessRequests() {
				if !yield(request, nil) {
					return
				}
			}
			if resp.GetNextPageToken() == "" {
				return
			}
			page.PageToken = resp.GetNextPageToken()
		}
	}
}

// Approve approves a pending request. Set Etag to the one you read to make
// sure the decision is about that version (ABORTED, reason ETAG_MISMATCH,
// otherwise). For the gateway code of ReturnCode, call
// c.AccessRequests.ApproveAccessRequest.
func (c *Client) Approve(ctx context.Context, req *sesamev1.ApproveAccessRequestRequest) (*sesamev1.AccessRequest, error) {
	resp, err := c.AccessRequests.ApproveAccessRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetAccessRequest(), nil
}

// Reject rejects a pending request; Reason is required.
func (c *Client) Reject(ctx context.Context, req *sesamev1.RejectAccessRequestRequest) (*sesamev1.AccessRequest, error) {
	resp, err := c.AccessRequests.RejectAccessRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetAccessRequest(), nil
}

// Cancel cancels a pending request.
func (c *Client) Cancel(ctx context.Context, req *sesamev1.CancelAccessRequestRequest) (*sesamev1.AccessRequest, error) {
	resp, err := c.AccessRequests.CancelAccessRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetAccessRequest(), nil
}
