// Quickstart: a backend submits a request with its submitter key, an
// administrator approves it with the admin key, and both events are printed
// from the administrator's watch.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	sesame "sesame.dev/client/go"
	sesamev1 "sesame.dev/client/go/gen/sesame/v1"
)

func main() {
	ctx := context.Background()
	backend, err := sesame.New(os.Getenv("SESAME_URL"), os.Getenv("SESAME_SUBMITTER_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	admin, err := sesame.New(os.Getenv("SESAME_URL"), os.Getenv("SESAME_ADMIN_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	defer admin.Close()

	watch, err := admin.Watch(ctx, &sesamev1.WatchEventsRequest{EventTypes: []sesamev1.EventType{
		sesamev1.EventType_EVENT_TYPE_REQUEST_SUBMITTED, sesamev1.EventType_EVENT_TYPE_REQUEST_APPROVED,
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer watch.Close()

	request, err := backend.Submit(ctx, &sesamev1.SubmitAccessRequestRequest{
		Applicant:     &sesamev1.Applicant{Email: "ada@example.com", FullName: "Ada Lovelace", Organization: "Analytical Engines"},
		UserType:      sesamev1.UserType_USER_TYPE_PARTNER,
		Resource:      "vpn-paris",
		Justification: "Maintenance of the difference engine",
		Consent:       &sesamev1.Consent{Version: "2026-01", Purposes: []string{"access_management"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := admin.Approve(ctx, &sesamev1.ApproveAccessRequestRequest{Name: request.Name, Note: "welcome"}); err != nil {
		log.Fatal(err)
	}
	for range 2 {
		event, err := watch.Next()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(event.Type, event.AccessRequest)
	}
}
