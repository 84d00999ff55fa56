package sesame

import (
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the ErrorInfo domain of every error made by Sesame itself.
const ErrorDomain = "sesame.dev"

// Code returns the gRPC code of err: codes.OK for nil, codes.Unknown for an
// error that carries no gRPC status, the context's code (Canceled,
// DeadlineExceeded) for a context error.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return status.FromContextError(err).Code()
}

// ErrorInfo returns the google.rpc.ErrorInfo of a failed call (AIP-193), or
// nil when err carries none (e.g. a connection failure made by gRPC itself).
// Its Reason is one of the reasons tabled in Sesame's README, its Domain is
// ErrorDomain, and Metadata holds details such as the current `state`.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	for _, detail := range details(err) {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// Reason returns the ErrorInfo reason of err (e.g. "ETAG_MISMATCH",
// "REQUEST_NOT_FOUND"), or "" when it has none.
func Reason(err error) string {
	return ErrorInfo(err).GetReason()
}

// FieldViolations returns the google.rpc.BadRequest field violations of an
// INVALID_ARGUMENT error: every invalid field at once, each with its Field
// path (e.g. "applicant.email") and Description. Nil when there are none.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	var violations []*errdetails.BadRequest_FieldViolation
	for _, detail := range details(err) {
		if bad, ok := detail.(*errdetails.BadRequest); ok {
			violations = append(violations, bad.GetFieldViolations()...)
		}
	}
	return violations
}

// RetryDelay returns the google.rpc.RetryInfo delay of err (sent with
// RESOURCE_EXHAUSTED rate limits) and whether there was one.
func RetryDelay(err error) (time.Duration, bool) {
	for _, detail := range details(err) {
		if info, ok := detail.(*errdetails.RetryInfo); ok {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// details decodes the google.rpc.Status details of err; status.FromError
// also finds a status wrapped with fmt.Errorf("...: %w", err).
func details(err error) []any {
	if err == nil {
		return nil
	}
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return nil
	}
	st, _ := status.FromError(err)
	return st.Details()
}
