// Quickstart: submit a request, approve it, and print both events from a watch.
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
	client, err := sesame.New(os.Getenv("SESAME_URL"), os.Getenv("SESAME_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	watch, err := client.Watch(ctx, &sesamev1.WatchEventsRequest{EventTypes: []sesamev1.EventType{
		sesamev1.EventType_EVENT_TYPE_REQUEST_SUBMITTED, sesamev1.EventType_EVENT_TYPE_REQUEST_APPROVED,
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer watch.Close()

	request, err := client.Submit(ctx, &sesamev1.SubmitAccessRequestRequest{
		Applicant:     &sesamev1.Applicant{Email: "ada@example.com", FullName: "Ada Lovelace", Organization: "Analytical Engines"},
		UserType:      sesamev1.UserType_USER_TYPE_PARTNER,
		Resource:      "vpn-paris",
		Justification: "Maintenance of the difference engine",
		Consent:       &sesamev1.Consent{Version: "2026-01", Purposes: []string{"access_management"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.Approve(ctx, &sesamev1.ApproveAccessRequestRequest{Name: request.Name, Note: "welcome"}); err != nil {
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
