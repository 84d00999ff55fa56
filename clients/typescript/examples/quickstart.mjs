import { createSesameClient, EventType, UserType } from "@sesame/client";

// A backend submits with its submitter key; an administrator watches and approves.
const backend = createSesameClient({ baseUrl: process.env.SESAME_URL, apiKey: process.env.SESAME_SUBMITTER_KEY });
const admin = createSesameClient({ baseUrl: process.env.SESAME_URL, apiKey: process.env.SESAME_ADMIN_KEY });
const watch = admin.watch({ eventTypes: [EventType.REQUEST_SUBMITTED, EventType.REQUEST_APPROVED] });
await watch.ready(); // the stream is live: no event from now on can be missed
const { accessRequest } = await backend.accessRequests.submitAccessRequest({
  applicant: { email: "ada@example.com", fullName: "Ada Lovelace", organization: "Analytical Engines" },
  userType: UserType.PARTNER, resource: "vpn-paris", justification: "Maintenance of the difference engine",
  consent: { version: "2026-01", purposes: ["access_management"] },
});
await admin.accessRequests.approveAccessRequest({ name: accessRequest.name, note: "welcome" });
let seen = 0;
for await (const event of watch) {
  if (event.accessRequest !== accessRequest.name) continue;
  console.log(`#${event.sequence} ${EventType[event.type]} ${event.accessRequest} by ${event.actor}`);
  if (++seen === 2) break; // leaving the loop closes the stream
}
backend.close();
admin.close();
