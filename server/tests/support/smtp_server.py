"""A real SMTP server for Sesame's mail tests, built on aiosmtpd.

Usage: smtp_server.py PORT_FILE MAIL_DIR PLAN_FILE

Listens on 127.0.0.1 on a free port and writes the port to PORT_FILE once
ready. Each accepted message is written to MAIL_DIR as N.eml. Before every
DATA reply the server reads PLAN_FILE (comma-separated replies, consumed one
per message): "250" accepts, "451"/"421"/"550"/... answers that code, and
"drop" closes the connection without a reply, and "sleep:S" waits S seconds
(a slow server; other conversations go on meanwhile) and then accepts. An
empty plan accepts.
"""

import asyncio
import os
import socket
import sys

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, mail_dir, plan_file):
        self.mail_dir = mail_dir
        self.plan_file = plan_file
        self.count = 0

    def next_reply(self):
        try:
            with open(self.plan_file) as plan:
                steps = [step.strip() for step in plan.read().split(",") if step.strip()]
        except FileNotFoundError:
            steps = []
        if not steps:
            return "250"
        with open(self.plan_file, "w") as plan:
            plan.write(",".join(steps[1:]))
        return steps[0]

    async def handle_DATA(self, server, session, envelope):
        reply = self.next_reply()
        if reply.startswith("sleep:"):
            await asyncio.sleep(float(reply.removeprefix("sleep:")))
            reply = "250"
        if reply == "drop":
            server.transport.close()
            return "421 closing"
        if reply != "250":
            # Like real servers, repeat the recipient: it must not leak into
            # Sesame's events.
            return f"{reply} planned failure for <{envelope.rcpt_tos[0]}>"
        self.count += 1
        path = os.path.join(self.mail_dir, f"{self.count}.eml")
        with open(path + ".tmp", "wb") as out:
            out.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 OK"


def main():
    port_file, mail_dir, plan_file = sys.argv[1:4]
    os.makedirs(mail_dir, exist_ok=True)
    # aiosmtpd cannot listen on port 0 itself: find a free port first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(mail_dir, plan_file), hostname="127.0.0.1", port=port)
    controller.start()
    with open(port_file + ".tmp", "w") as out:
        out.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    try:
        # Exit with the parent: stdin closes when the test process ends.
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
