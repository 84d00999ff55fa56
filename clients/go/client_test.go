package sesame_test

// The client against the real server: calls, errors, deadlines, retries.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sesame "sesame.dev/client/go"
	sesamev1 "sesame.dev/client/go/gen/sesame/v1"
)

const retryLog = "sesame call failed with UNAVAILABLE; retrying"

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// logBuffer collects the client's log lines (safe for concurrent writes).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns how many logged lines contain message.
func (b *logBuffer) count(message string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), message)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// newClient connects to srv with its admin key; it is closed with the test.
func newClient(t *testing.T, srv *testServer, opts ...sesame.Option) *sesame.Client {
	t.Helper()
	client, err := sesame.New(srv.target(), srv.adminKey, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// newSubmitter is a backend's client, with a new submitter key: the admin may
// not approve a request it submitted itself.
func newSubmitter(t *testing.T, srv *testServer) *sesame.Client {
	t.Helper()
	client, err := sesame.New(srv.target(), srv.createKey("backend", "submitter"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func submitRequest(requestID, resource string) *sesamev1.SubmitAccessRequestRequest {
	return &sesamev1.SubmitAccessRequestRequest{
		Applicant:     &sesamev1.Applicant{Email: "ada@example.com", FullName: "Ada Lovelace", Organization: "Analytical Engines"},
		UserType:      sesamev1.UserType_USER_TYPE_PARTNER,
		Resource:      resource,
		Justification: "Maintenance of the difference engine",
		Consent:       &sesamev1.Consent{Version: "2026-01", Purposes: []string{"access_management"}},
		RequestId:     requestID,
	}
}

// submit submits a valid request (a generated request_id), failing the test
// on error.
func submit(t *testing.T, client *sesame.Client) *sesamev1.AccessRequest {
	t.Helper()
	request, err := client.Submit(context.Background(), submitRequest("", "vpn-paris"))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return request
}

// wantError checks a failed call's code and ErrorInfo reason.
func wantError(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v %s, got no error", code, reason)
	}
	if got := sesame.Code(err); got != code {
		t.Fatalf("want code %v, got %v (%v)", code, got, err)
	}
	if got := sesame.Reason(err); got != reason {
		t.Fatalf("want reason %q, got %q (%v)", reason, got, err)
	}
}

func TestSubmitIsIdempotentWithRequestID(t *testing.T) {
	client := newClient(t, startServer(t))
	ctx := context.Background()
	first, err := client.Submit(ctx, submitRequest("walkthrough-1", "vpn-paris"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := client.Submit(ctx, submitRequest("walkthrough-1", "vpn-paris"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first.GetName(), "accessRequests/") {
		t.Errorf("name %q", first.GetName())
	}
	if again.GetName() != first.GetName() || !proto.Equal(again.GetCreateTime(), first.GetCreateTime()) {
		t.Errorf("a repeated submit made another request: %v then %v", first, again)
	}
	if first.GetState() != sesamev1.AccessRequestState_ACCESS_REQUEST_STATE_PENDING ||
		first.GetRequestId() != "walkthrough-1" || first.GetSubmitter() != "bootstrap-admin" {
		t.Errorf("unexpected request %v", first)
	}

	_, err = client.Submit(ctx, submitRequest("walkthrough-1", "another-resource"))
	wantError(t, err, codes.AlreadyExists, "REQUEST_ID_REUSED")
}

func TestSubmitSendsAGeneratedRequestIDByDefault(t *testing.T) {
	client := newClient(t, startServer(t))
	req := submitRequest("", "vpn-paris")
	a, err := client.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetName() == b.GetName() || a.GetRequestId() == b.GetRequestId() {
		t.Errorf("two submits without request_id gave %v and %v", a, b)
	}
	if !uuidPattern.MatchString(a.GetRequestId()) {
		t.Errorf("request_id %q is not a random UUID", a.GetRequestId())
	}
	if req.GetRequestId() != "" {
		t.Errorf("Submit modified the caller's message: request_id %q", req.GetRequestId())
	}
}

func TestGetAndList(t *testing.T) {
	srv := startServer(t)
	client, backend := newClient(t, srv), newSubmitter(t, srv)
	ctx := context.Background()
	var created []*sesamev1.AccessRequest
	for range 3 {
		created = append(created, submit(t, backend))
	}
	got, err := client.Get(ctx, created[0].GetName())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, created[0]) {
		t.Errorf("get: %v, want %v", got, created[0])
	}

	page, err := client.List(ctx, &sesamev1.ListAccessRequestsRequest{PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if names := namesOf(page.GetAccessRequests()); names != namesOf([]*sesamev1.AccessRequest{created[2], created[1]}) {
		t.Errorf("first page %s, want the two newest", names)
	}
	if page.GetNextPageToken() == "" {
		t.Error("no next page token")
	}
	var all []*sesamev1.AccessRequest
	for request, err := range client.All(ctx, &sesamev1.ListAccessRequestsRequest{PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, request)
	}
	if namesOf(all) != namesOf([]*sesamev1.AccessRequest{created[2], created[1], created[0]}) {
		t.Errorf("All: %s", namesOf(all))
	}

	if _, err := client.Approve(ctx, &sesamev1.ApproveAccessRequestRequest{Name: created[1].GetName()}); err != nil {
		t.Fatal(err)
	}
	pending, err := client.List(ctx, &sesamev1.ListAccessRequestsRequest{State: sesamev1.AccessRequestState_ACCESS_REQUEST_STATE_PENDING})
	if err != nil {
		t.Fatal(err)
	}
	if namesOf(pending.GetAccessRequests()) != namesOf([]*sesamev1.AccessRequest{created[2], created[0]}) {
		t.Errorf("pending: %s", namesOf(pending.GetAccessRequests()))
	}
}

func namesOf(requests []*sesamev1.AccessRequest) string {
	names := make([]string, len(requests))
	for i, request := range requests {
		names[i] = request.GetName()
	}
	return strings.Join(names, ",")
}

func TestApproveWithEtag(t *testing.T) {
	srv := startServer(t)
	client, backend := newClient(t, srv), newSubmitter(t, srv)
	ctx := context.Background()
	request := submit(t, backend)
	approved, err := client.Approve(ctx, &sesamev1.ApproveAccessRequestRequest{Name: request.GetName(), Note: "welcome", Etag: request.GetEtag()})
	if err != nil {
		t.Fatal(err)
	}
	if approved.GetState() != sesamev1.AccessRequestState_ACCESS_REQUEST_STATE_APPROVED ||
		approved.GetDecision().GetReason() != "welcome" || approved.GetDecision().GetActor() != "bootstrap-admin" {
		t.Errorf("approved: %v", approved)
	}
	if approved.GetEtag() == request.GetEtag() {
		t.Error("the etag did not change with the decision")
	}

	_, err = client.Approve(ctx, &sesamev1.ApproveAccessRequestRequest{Name: request.GetName()})
	wantError(t, err, codes.FailedPrecondition, "REQUEST_ALREADY_DECIDED")
	if info := sesame.ErrorInfo(err); info.GetDomain() != sesame.ErrorDomain {
		t.Errorf("ErrorInfo %v, want domain %s", info, sesame.ErrorDomain)
	}
}

func TestStaleEtagIsAbortedWithEtagMismatch(t *testing.T) {
	client := newClient(t, startServer(t))
	ctx := context.Background()
	request := submit(t, client)
	other := submit(t, client)
	// An etag that is not the request's current one: nothing is decided.
	_, err := client.Approve(ctx, &sesamev1.ApproveAccessRequestRequest{Name: request.GetName(), Etag: other.GetEtag()})
	wantError(t, err, codes.Aborted, "ETAG_MISMATCH")
	_, err = client.Reject(ctx, &sesamev1.RejectAccessRequestRequest{Name: request.GetName(), Reason: "stale", Etag: "not-the-etag"})
	wantError(t, err, codes.Aborted, "ETAG_MISMATCH")

	current, err := client.Get(ctx, request.GetName())
	if err != nil {
		t.Fatal(err)
	}
	if current.GetState() != sesamev1.AccessRequestState_ACCESS_REQUEST_STATE_PENDING || current.GetEtag() != request.GetEtag() {
		t.Fatalf("a refused decision changed the request: %v", current)
	}
}

func TestRejectWithReasonAndCancel(t *testing.T) {
	client := newClient(t, startServer(t))
	ctx := context.Background()
	request := submit(t, client)
	rejected, err := client.Reject(ctx, &sesamev1.RejectAccessRequestRequest{Name: request.GetName(), Reason: "no contract on file"})
	if err != nil {
		t.Fatal(err)
	}
	if rejected.GetState() != sesamev1.AccessRequestState_ACCESS_REQUEST_STATE_REJECTED || rejected.GetDecision().GetReason() != "no contract on file" {
		t.Errorf("rejected: %v", rejected)
	}

	other := submit(t, client)
	cancelled, err := client.Cancel(ctx, &sesamev1.CancelAccessRequestRequest{Name: other.GetName(), Reason: "not needed any more"})
	if err != nil {
		t.Fatal(err)
	}
	if cancelled.GetState() != sesamev1.AccessRequestState_ACCESS_REQUEST_STATE_CANCELLED {
		t.Errorf("cancelled: %v", cancelled)
	}
	_, err = client.Approve(ctx, &sesamev1.ApproveAccessRequestRequest{Name: other.GetName()})
	wantError(t, err, codes.FailedPrecondition, "REQUEST_ALREADY_CANCELLED")
}

func TestInvalidSubmitHasFieldViolationsAndIsNotRetried(t *testing.T) {
	var logs logBuffer
	client := newClient(t, startServer(t), sesame.WithLogger(logs.logger()))
	req := submitRequest("", "vpn-paris")
	req.Applicant = &sesamev1.Applicant{Email: "not-an-email", FullName: "", Organization: "Analytical Engines"}
	req.Justification = "x"
	started := time.Now()
	_, err := client.Submit(context.Background(), req)
	wantError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	if domain := sesame.ErrorInfo(err).GetDomain(); domain != "sesame.dev" {
		t.Errorf("domain %q", domain)
	}
	fields := map[string]string{}
	for _, violation := range sesame.FieldViolations(err) {
		fields[violation.GetField()] = violation.GetDescription()
	}
	if len(fields) != 2 || fields["applicant.email"] == "" || fields["applicant.full_name"] == "" {
		t.Errorf("field violations %v, want applicant.email and applicant.full_name with descriptions", fields)
	}
	// The details also decode through a wrapped error.
	wrapped := fmt.Errorf("submitting: %w", err)
	if len(sesame.FieldViolations(wrapped)) != 2 || sesame.Reason(wrapped) != "INVALID_ARGUMENT" {
		t.Errorf("wrapped error lost its details")
	}
	// Not retryable: returned at once, after one attempt.
	if n := logs.count(retryLog); n != 0 {
		t.Errorf("%d retries of INVALID_ARGUMENT", n)
	}
	if elapsed := time.Since(started); elapsed > 2*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

func TestUnknownRequestIsNotFound(t *testing.T) {
	client := newClient(t, startServer(t))
	_, err := client.Approve(context.Background(), &sesamev1.ApproveAccessRequestRequest{Name: "accessRequests/" + sesame.NewRequestID()})
	wantError(t, err, codes.NotFound, "REQUEST_NOT_FOUND")
}

func TestKeysAndRoles(t *testing.T) {
	srv := startServer(t)
	stranger, err := sesame.New(srv.target(), "sesame_not-a-real-key")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	_, err = stranger.List(context.Background(), &sesamev1.ListAccessRequestsRequest{})
	wantError(t, err, codes.Unauthenticated, "API_KEY_INVALID")

	key := srv.createKey("billing-backend", "submitter")
	submitter, err := sesame.New("http://"+srv.target(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer submitter.Close()
	request := submit(t, submitter)
	if request.GetSubmitter() != "billing-backend" {
		t.Errorf("submitter %q", request.GetSubmitter())
	}
	_, err = submitter.Approve(context.Background(), &sesamev1.ApproveAccessRequestRequest{Name: request.GetName()})
	wantError(t, err, codes.PermissionDenied, "ROLE_NOT_ALLOWED")

	if _, err := sesame.New(srv.target(), ""); err == nil {
		t.Error("New accepted an empty key")
	}
}

func TestRawStubsCarryTheKeyAndDecode(t *testing.T) {
	client := newClient(t, startServer(t))
	ctx := context.Background()
	request := submit(t, client)
	response, err := client.AccessRequests.GetAccessRequest(ctx, &sesamev1.GetAccessRequestRequest{Name: request.GetName()})
	if err != nil || response.GetAccessRequest().GetName() != request.GetName() {
		t.Fatalf("raw get: %v %v", response, err)
	}
	chain, err := client.Events.VerifyAuditChain(ctx, &sesamev1.VerifyAuditChainRequest{})
	if err != nil || !chain.GetIntact() {
		t.Fatalf("VerifyAuditChain: %v %v", chain, err)
	}
	_, err = client.AccessRequests.GetAccessRequest(ctx, &sesamev1.GetAccessRequestRequest{Name: "accessRequests/" + sesame.NewRequestID()})
	wantError(t, err, codes.NotFound, "REQUEST_NOT_FOUND")
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.NotFound {
		t.Fatalf("status.FromError: %v %v", st, ok)
	}
}

func TestDeadlineBoundsRetriesAndIsOverridablePerCall(t *testing.T) {
	srv := startServer(t)
	endless := sesame.RetryPolicy{MaxAttempts: 1000, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	client := newClient(t, srv, sesame.WithTimeout(500*time.Millisecond), sesame.WithRetry(endless))
	srv.stop()

	started := time.Now()
	_, err := client.List(context.Background(), &sesamev1.ListAccessRequestsRequest{})
	defaultElapsed := time.Since(started)

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	started = time.Now()
	_, ownErr := client.List(ctx, &sesamev1.ListAccessRequestsRequest{})
	ownElapsed := time.Since(started)

	// The last attempt fails at once (UNAVAILABLE) or waits out what is left
	// (DEADLINE_EXCEEDED): either way the retries end at the deadline.
	for _, e := range []error{err, ownErr} {
		if code := sesame.Code(e); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("want UNAVAILABLE or DEADLINE_EXCEEDED, got %v", e)
		}
	}
	if defaultElapsed < 300*time.Millisecond || defaultElapsed > 2*time.Second {
		t.Errorf("default 0.5 s deadline: the call took %v", defaultElapsed)
	}
	if ownElapsed < 1200*time.Millisecond || ownElapsed > 3500*time.Millisecond {
		t.Errorf("the call's own 1.5 s deadline: it took %v", ownElapsed)
	}
}

func TestDeadlineExceededIsNotRetried(t *testing.T) {
	var logs logBuffer
	client := newClient(t, startServer(t), sesame.WithLogger(logs.logger()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	_, err := client.List(ctx, &sesamev1.ListAccessRequestsRequest{})
	if sesame.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("want DEADLINE_EXCEEDED, got %v", err)
	}
	if n := logs.count(retryLog); n != 0 {
		t.Errorf("%d retries of DEADLINE_EXCEEDED", n)
	}
}

func TestUnavailableIsRetriedWhileTheServerRestarts(t *testing.T) {
	srv := startServer(t)
	var logs logBuffer
	retry := sesame.RetryPolicy{MaxAttempts: 10, InitialBackoff: 200 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2, Jitter: 0.2}
	client := newClient(t, srv, sesame.WithRetry(retry), sesame.WithLogger(logs.logger()))
	request := submit(t, client)
	srv.stop()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		restarted <- srv.tryStart()
	}()
	got, err := client.Get(context.Background(), request.GetName()) // fails until the server is back
	if startErr := <-restarted; startErr != nil {
		t.Fatal(startErr)
	}
	if err != nil {
		t.Fatalf("get across the restart: %v", err)
	}
	if got.GetName() != request.GetName() {
		t.Errorf("got %v", got)
	}
	if n := logs.count(retryLog); n < 1 {
		t.Errorf("no retry was logged")
	}
}

func TestSubmitIsRetriedWithoutDuplicate(t *testing.T) {
	srv := startServer(t)
	var logs logBuffer
	retry := sesame.RetryPolicy{MaxAttempts: 10, InitialBackoff: 200 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}
	client := newClient(t, srv, sesame.WithRetry(retry), sesame.WithLogger(logs.logger()))
	srv.stop()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		restarted <- srv.tryStart()
	}()
	request, err := client.Submit(context.Background(), submitRequest("", "vpn-paris"))
	if startErr := <-restarted; startErr != nil {
		t.Fatal(startErr)
	}
	if err != nil {
		t.Fatalf("submit across the restart: %v", err)
	}
	if logs.count(retryLog) < 1 {
		t.Errorf("the submit was not retried")
	}
	page, err := client.List(context.Background(), &sesamev1.ListAccessRequestsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if namesOf(page.GetAccessRequests()) != request.GetName() {
		t.Errorf("requests after a retried submit: %s", namesOf(page.GetAccessRequests()))
	}

	// A raw submit without request_id is never retried: it could create two.
	srv.stop()
	before := logs.count(retryLog)
	_, err = client.AccessRequests.SubmitAccessRequest(context.Background(), submitRequest("", "vpn-paris"))
	if sesame.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE, got %v", err)
	}
	if logs.count(retryLog) != before {
		t.Error("a submit without request_id was retried")
	}
}

func TestRetriesAreBounded(t *testing.T) {
	srv := startServer(t)
	var logs logBuffer
	retry := sesame.RetryPolicy{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Multiplier: 2}
	client := newClient(t, srv, sesame.WithRetry(retry), sesame.WithLogger(logs.logger()))
	srv.stop()
	_, err := client.List(context.Background(), &sesamev1.ListAccessRequestsRequest{})
	if sesame.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE, got %v", err)
	}
	if n := logs.count(retryLog); n != 2 {
		t.Errorf("%d retries, want 2 (3 attempts in all)", n)
	}

	noRetry := newClient(t, srv, sesame.WithRetry(sesame.NoRetry), sesame.WithLogger(logs.logger()))
	before := logs.count(retryLog)
	_, err = noRetry.List(context.Background(), &sesamev1.ListAccessRequestsRequest{})
	if sesame.Code(err) != codes.Unavailable || logs.count(retryLog) != before {
		t.Errorf("NoRetry: %v, %d retries", err, logs.count(retryLog)-before)
	}
}

func TestRetryBackoffIsJittered(t *testing.T) {
	policy := sesame.DefaultRetry
	for retry, base := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 4: 1600 * time.Millisecond, 10: 5 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			delay := policy.Backoff(retry)
			if delay < base*8/10 || delay > base*12/10 {
				t.Fatalf("retry %d: %v outside %v +-20%%", retry, delay, base)
			}
			seen[delay] = true
		}
		if len(seen) < 10 {
			t.Errorf("retry %d: only %d distinct delays in 50", retry, len(seen))
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		target, address string
		tls             bool
	}{
		{"127.0.0.1:50051", "127.0.0.1:50051", false},
		{"http://127.0.0.1:50051", "127.0.0.1:50051", false},
		{"https://sesame.example.com", "sesame.example.com:443", true},
		{"https://[::1]:8443/", "[::1]:8443", true},
		{"http://sesame", "sesame:80", false},
		{"dns:///sesame:50051", "dns:///sesame:50051", false},
	} {
		address, tls, err := sesame.ParseTarget(tc.target)
		if err != nil || address != tc.address || tls != tc.tls {
			t.Errorf("ParseTarget(%q) = %q, %v, %v; want %q, %v", tc.target, address, tls, err, tc.address, tc.tls)
		}
	}
	if _, _, err := sesame.ParseTarget("https://"); err == nil {
		t.Error("ParseTarget accepted https:// without a host")
	}
}

func TestErrorHelpersOnOtherErrors(t *testing.T) {
	if sesame.Code(nil) != codes.OK || sesame.Reason(nil) != "" || sesame.FieldViolations(nil) != nil || sesame.ErrorInfo(nil) != nil {
		t.Error("nil error")
	}
	plain := errors.New("boom")
	if sesame.Code(plain) != codes.Unknown || sesame.Reason(plain) != "" {
		t.Error("plain error")
	}
	if sesame.Code(context.Canceled) != codes.Canceled || sesame.Code(context.DeadlineExceeded) != codes.DeadlineExceeded {
		t.Error("context errors")
	}
	bare := status.Error(codes.Unavailable, "connection refused")
	if sesame.Code(bare) != codes.Unavailable || sesame.ErrorInfo(bare) != nil {
		t.Error("a status without details")
	}
	if _, ok := sesame.RetryDelay(bare); ok {
		t.Error("RetryDelay without RetryInfo")
	}
}

const deadlineRetryLog = "sesame call failed with DEADLINE_EXCEEDED; retrying"

// storedFor lists the requests whose applicant is email.
func storedFor(t *testing.T, client *sesame.Client, email string) []*sesamev1.AccessRequest {
	t.Helper()
	resp, err := client.List(context.Background(), &sesamev1.ListAccessRequestsRequest{ApplicantEmail: email})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetAccessRequests()
}

func submissionAs(email, requestID string) *sesamev1.SubmitAccessRequestRequest {
	req := submitRequest(requestID, "vpn-paris")
	req.Applicant.Email = email
	return req
}

// Guards the operator's finding: a submit whose attempt timed out while the
// server committed it is retried and returns that request, never a second.
func TestASubmitWhoseAttemptTimesOutIsRetriedAndReturnsTheCommittedRequest(t *testing.T) {
	srv := startServer(t)
	direct := newClient(t, srv)
	// Answers held 800 ms from the first request on; attempts get 400 ms.
	var logs logBuffer
	delayed, err := sesame.New(startDelayProxy(t, srv, 800), srv.adminKey,
		sesame.WithTimeout(10*time.Second), sesame.WithAttemptTimeout(400*time.Millisecond),
		sesame.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer delayed.Close()
	started := time.Now()
	submitted, err := delayed.Submit(context.Background(), submissionAs("held@example.com", ""))
	if err != nil {
		t.Fatalf("want the committed request after a retry, got %v", err)
	}
	if elapsed := time.Since(started); elapsed < 400*time.Millisecond {
		t.Errorf("the first attempt did not time out: %v", elapsed)
	}
	if n := logs.count(deadlineRetryLog); n < 1 {
		t.Errorf("no retry of DEADLINE_EXCEEDED logged")
	}
	stored := storedFor(t, direct, "held@example.com")
	if len(stored) != 1 || stored[0].GetName() != submitted.GetName() || stored[0].GetRequestId() != submitted.GetRequestId() {
		t.Fatalf("want exactly the returned request %s stored, got %v", submitted.GetName(), stored)
	}

	// Without a request_id (the raw stub): one attempt, DEADLINE_EXCEEDED,
	// and the server has the request.
	var unkeyedLogs logBuffer
	unkeyed, err := sesame.New(startDelayProxy(t, srv, 800), srv.adminKey,
		sesame.WithTimeout(10*time.Second), sesame.WithAttemptTimeout(400*time.Millisecond),
		sesame.WithLogger(unkeyedLogs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer unkeyed.Close()
	started = time.Now()
	_, err = unkeyed.AccessRequests.SubmitAccessRequest(context.Background(), submissionAs("unkeyed@example.com", ""))
	if sesame.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("want DEADLINE_EXCEEDED, got %v", err)
	}
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Errorf("one attempt, not the whole deadline: %v", elapsed)
	}
	if n := unkeyedLogs.count("retrying"); n != 0 {
		t.Errorf("%d retries of a submit without request_id", n)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(storedFor(t, direct, "unkeyed@example.com")); n != 1 {
		t.Fatalf("want the one request stored, got %d", n)
	}
}

func TestDeadlineExceededOfAnAttemptOfAnotherCallIsNotRetried(t *testing.T) {
	srv := startServer(t)
	known := submit(t, newClient(t, srv))
	var logs logBuffer
	delayed, err := sesame.New(startDelayProxy(t, srv, 800), srv.adminKey,
		sesame.WithTimeout(10*time.Second), sesame.WithAttemptTimeout(400*time.Millisecond),
		sesame.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer delayed.Close()
	_, err = delayed.Get(context.Background(), known.GetName())
	if sesame.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("want DEADLINE_EXCEEDED, got %v", err)
	}
	if n := logs.count("retrying"); n != 0 {
		t.Errorf("%d retries of a Get", n)
	}
}
