// Agreement: the cross-client agreement scenario, as every client runs it.
//
// Submit with a request id twice, list, approve with the etag, approve again
// with the now stale etag, read the request's events from a watch opened
// before the first submit, and one invalid submit. Prints one JSON document
// with the volatile values (names, etags, cursors, sequences) replaced by
// relations; server/tests/it/agreement.rs runs it in each of the five clients
// against one server and checks that the documents are equal.
//
//	cd clients/go
//	SESAME_URL=http://127.0.0.1:50051 SESAME_ADMIN_KEY=sesame_... SESAME_SUBMITTER_KEY=sesame_... \
//	SESAME_RUN=r1 go run ./examples/agreement
//
// (SESAME_RUN keeps runs apart on one server: it is the request id and the
// resource of the run's request.)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sesame "sesame.dev/client/go"
	sesamev1 "sesame.dev/client/go/gen/sesame/v1"
)

// object is one JSON object of the document (encoding/json sorts its keys).
type object = map[string]any

var uuidName = regexp.MustCompile(`^accessRequests/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func main() {
	env := map[string]string{}
	for _, name := range []string{"SESAME_URL", "SESAME_ADMIN_KEY", "SESAME_SUBMITTER_KEY", "SESAME_RUN"} {
		env[name] = os.Getenv(name)
		if env[name] == "" {
			fmt.Fprintf(os.Stderr, "agreement: %s is not set\n", name)
			os.Exit(2)
		}
	}
	document, err := scenario(context.Background(), env["SESAME_URL"], env["SESAME_ADMIN_KEY"], env["SESAME_SUBMITTER_KEY"], env["SESAME_RUN"])
	if err != nil {
		fmt.Fprintln(os.Stderr, "agreement:", err)
		os.Exit(1)
	}
	out, err := json.MarshalIndent(document, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, "agreement:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

// scenario runs the scenario against url and returns its normalized document.
func scenario(ctx context.Context, url, adminKey, submitterKey, run string) (object, error) {
	admin, err := sesame.New(url, adminKey)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	submitter, err := sesame.New(url, submitterKey)
	if err != nil {
		return nil, err
	}
	defer submitter.Close()
	resource := "agreement-" + run
	requestID := "agreement-" + run

	// Live before the first submit: every event of the request comes through it.
	watch, err := admin.Watch(ctx, &sesamev1.WatchEventsRequest{})
	if err != nil {
		return nil, err
	}
	defer watch.Close()

	submission := &sesamev1.SubmitAccessRequestRequest{
		Applicant:     &sesamev1.Applicant{Email: "ada@example.com", FullName: "Ada Lovelace", Organization: "Analytical Engines"},
		UserType:      sesamev1.UserType_USER_TYPE_PARTNER,
		Locale:        "en",
		Resource:      resource,
		Justification: "Agreement run " + run,
		Consent:       &sesamev1.Consent{Version: "2026-01", Purposes: []string{"access_management"}},
		RequestId:     requestID,
	}
	first, err := submitter.Submit(ctx, submission)
	if err != nil {
		return nil, err
	}
	retry, err := submitter.Submit(ctx, submission)
	if err != nil {
		return nil, err
	}

	thisRun := []string{}
	pending := &sesamev1.ListAccessRequestsRequest{
		State:    sesamev1.AccessRequestState_ACCESS_REQUEST_STATE_PENDING,
		UserType: sesamev1.UserType_USER_TYPE_PARTNER,
	}
	for request, err := range admin.All(ctx, pending) {
		if err != nil {
			return nil, err
		}
		if request.GetResource() == resource {
			thisRun = append(thisRun, request.GetName())
		}
	}

	approve := &sesamev1.ApproveAccessRequestRequest{Name: first.GetName(), Etag: first.GetEtag()}
	approved, err := admin.Approve(ctx, approve)
	if err != nil {
		return nil, err
	}
	_, stale := admin.Approve(ctx, approve)
	if stale == nil {
		return nil, errors.New("an approve with a stale etag succeeded")
	}

	// The audit trail says which events the request has; the watch is read
	// up to the last of them (events arrive in log order).
	listed, err := admin.Events.ListEvents(ctx, &sesamev1.ListEventsRequest{AccessRequest: first.GetName()})
	if err != nil {
		return nil, err
	}
	audit := listed.GetEvents()
	if len(audit) == 0 {
		return nil, errors.New("the request has no event")
	}
	last := audit[len(audit)-1].GetSequence()
	var watched []*sesamev1.Event
	for {
		event, err := watch.Next()
		if err != nil {
			return nil, err
		}
		if event.GetAccessRequest() == first.GetName() {
			watched = append(watched, event)
		}
		if event.GetSequence() >= last {
			break
		}
	}

	bad := proto.CloneOf(submission)
	bad.Applicant.Email = ""
	bad.Justification = strings.Repeat("x", 2001)
	bad.RequestId = ""
	_, invalid := submitter.Submit(ctx, bad)
	if invalid == nil {
		return nil, errors.New("an invalid submit succeeded")
	}
	violations := []object{}
	for _, violation := range sesame.FieldViolations(invalid) {
		violations = append(violations, object{"field": violation.GetField(), "description": violation.GetDescription()})
	}
	slices.SortFunc(violations, func(a, b object) int {
		if c := strings.Compare(a["field"].(string), b["field"].(string)); c != 0 {
			return c
		}
		return strings.Compare(a["description"].(string), b["description"].(string))
	})
	invalidJSON := errorJSON(invalid)
	invalidJSON["field_violations"] = violations

	eventTypes, actors, states := []string{}, []string{}, []string{}
	for _, event := range watched {
		eventTypes = append(eventTypes, event.GetType().String())
		actors = append(actors, event.GetActor())
		states = append(states, event.GetState().String())
	}
	gatewayCode := ""
	if approved.GetGatewayCode() != nil {
		gatewayCode = approved.GetGatewayCode().GetState().String()
	}

	return object{
		"submit": object{
			"name":              nameShape(first.GetName()),
			"state":             first.GetState().String(),
			"submitter":         first.GetSubmitter(),
			"request_id_echoed": first.GetRequestId() == requestID,
			"resource_echoed":   first.GetResource() == resource,
			"retry_same_name":   retry.GetName() == first.GetName(),
			"retry_same_etag":   retry.GetEtag() == first.GetEtag(),
			"retry_state":       retry.GetState().String(),
		},
		"list": object{
			"this_run":                  len(thisRun),
			"this_run_is_the_submitted": slices.Equal(thisRun, []string{first.GetName()}),
		},
		"approve": object{
			"state":        approved.GetState().String(),
			"same_name":    approved.GetName() == first.GetName(),
			"etag_changed": approved.GetEtag() != first.GetEtag(),
			"decided_by":   approved.GetDecision().GetActor(),
			"gateway_code": gatewayCode,
		},
		"approve_stale_etag": errorJSON(stale),
		"watch": object{
			"event_types":         eventTypes,
			"actors":              actors,
			"states":              states,
			"same_as_audit_trail": slices.EqualFunc(watched, audit, sameEvent),
		},
		"invalid_submit": invalidJSON,
	}, nil
}

// sameEvent says whether two events are the same entry of the log.
func sameEvent(a, b *sesamev1.Event) bool {
	return a.GetSequence() == b.GetSequence() && a.GetType() == b.GetType()
}

// nameShape is accessRequests/{uuid} when name has that shape, else name itself.
func nameShape(name string) string {
	if uuidName.MatchString(name) {
		return "accessRequests/{uuid}"
	}
	return name
}

// errorJSON is the code, ErrorInfo reason and message of an error.
func errorJSON(err error) object {
	return object{
		"code":    codeName(sesame.Code(err)),
		"reason":  sesame.Reason(err),
		"message": status.Convert(err).Message(),
	}
}

// codeName is gRPC's canonical UPPER_SNAKE name of code (Go names them in
// CamelCase: InvalidArgument).
func codeName(code codes.Code) string {
	var name strings.Builder
	previousLower := false
	for _, letter := range code.String() {
		if unicode.IsUpper(letter) && previousLower {
			name.WriteByte('_')
		}
		previousLower = unicode.IsLower(letter)
		name.WriteRune(unicode.ToUpper(letter))
	}
	return name.String()
}
