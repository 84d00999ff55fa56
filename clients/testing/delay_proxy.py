#!/usr/bin/env python3
"""A TCP proxy that holds a server's answers back for a while, for the client
test suites: it makes a call's attempt time out at the client while the server
has already done (and committed) the work, the way a slow or stopped database
does.

Usage:

    python3 delay_proxy.py PORT_FILE TARGET_HOST:TARGET_PORT HOLD_MS [WINDOWS]

It listens on 127.0.0.1 on a free port, writes that port (decimal, then a
newline) to PORT_FILE once it accepts connections (the file appears whole:
written aside, then renamed) and prints it on stdout too. Every accepted
connection is relayed to TARGET. It runs until killed (SIGTERM or SIGINT).

The delay plan, deterministic and independent of timing elsewhere:

- client -> server bytes are always forwarded at once, so the server receives
  (and acts on) every request as soon as the client sends it;
- on each of the first WINDOWS connections (default 1), a hold window opens
  when the client sends its first HTTP/2 DATA frame on a stream (the first
  gRPC request message: the connection preface, SETTINGS, PING and
  WINDOW_UPDATE frames do not open it) and lasts HOLD_MS milliseconds; every
  server -> client byte arriving within the window is buffered and released,
  in order, when the window closes. After it, bytes flow at once. Later
  connections are never held.

gRPC over HTTP/2 multiplexes the calls of a client on one connection, so the
window holds the answers of every call made within it, not just the first:
with an attempt timeout A shorter than HOLD_MS, the first attempt of a call
times out at A while the server has committed it; a retry sent within the
window waits for the window to close, and one sent after it is answered at
once. Choose HOLD_MS of about twice A so the first attempt surely times out
and a later one surely succeeds.

The connection is plaintext HTTP/2 (h2c): the frames are read to find the
first DATA frame, never changed. Python 3 standard library only.
"""

from __future__ import annotations

import asyncio
import os
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
DATA = 0


class Connection:
    """One relayed connection and its hold window."""

    def __init__(self, hold: float, held: bool) -> None:
        self.hold = hold
        self.held = held  # whether this connection gets a window at all
        self.window_end: float | None = None  # loop time the window closes
        self.parse_buffer = b""
        self.preface_seen = False

    def saw_client_bytes(self, data: bytes) -> None:
        """Read the client's frames until the first DATA frame on a stream."""
        if not self.held or self.window_end is not None:
            return
        self.parse_buffer += data
        if not self.preface_seen:
            if len(self.parse_buffer) < len(PREFACE):
                return
            self.parse_buffer = self.parse_buffer[len(PREFACE) :]
            self.preface_seen = True
        while len(self.parse_buffer) >= FRAME_HEADER:
            length = int.from_bytes(self.parse_buffer[0:3], "big")
            frame_type = self.parse_buffer[3]
            stream_id = int.from_bytes(self.parse_buffer[5:9], "big") & 0x7FFFFFFF
            if frame_type == DATA and stream_id != 0:
                self.window_end = asyncio.get_running_loop().time() + self.hold
                self.parse_buffer = b""
                return
            if len(self.parse_buffer) < FRAME_HEADER + length:
                return
            self.parse_buffer = self.parse_buffer[FRAME_HEADER + length :]


async def client_to_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: Connection
) -> None:
    while data := await reader.read(65536):
        # Seen before it is sent: the window opens no later than the server
        # gets the request, so none of its answer slips through.
        connection.saw_client_bytes(data)
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def server_to_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: Connection
) -> None:
    loop = asyncio.get_running_loop()
    while data := await reader.read(65536):
        end = connection.window_end
        if end is not None and loop.time() < end:
            await asyncio.sleep(end - loop.time())
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def main(port_file: str, target: str, hold_ms: int, windows: int) -> None:
    host, _, port = target.rpartition(":")
    accepted = 0

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        connection = Connection(hold_ms / 1000, held=accepted <= windows)
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                client_to_server(client_reader, server_writer, connection),
                server_to_client(server_reader, client_writer, connection),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            client_writer.close()
            server_writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    listen_port = server.sockets[0].getsockname()[1]
    aside = f"{port_file}.tmp"
    with open(aside, "w", encoding="ascii") as out:
        out.write(f"{listen_port}\n")
    os.replace(aside, port_file)
    print(listen_port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    try:
        asyncio.run(
            main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) == 5 else 1)
        )
    except KeyboardInterrupt:
        pass
