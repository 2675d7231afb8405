"""Closing the listening sockets without resetting the connections waiting in their backlog."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("onnxserve")


def _take_backlog(listener: socket.socket) -> list[socket.socket]:
    """Accept every connection the kernel has queued on ``listener`` (none is waited for)."""
    taken: list[socket.socket] = []
    listener.setblocking(False)
    while True:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return taken
        except OSError as exc:  # out of descriptors: what is left is reset as before
            log.warning("could not accept the rest of the listen backlog: %s", exc)
            return taken
        conn.setblocking(False)
        taken.append(conn)


async def close_listeners(servers: Sequence[Any], protocol: Callable[[], asyncio.Protocol]) -> int:
    """Stop listening on ``servers`` (asyncio/uvloop servers); the connections already queued in
    their backlog are accepted first and served by ``protocol`` on this loop. Closing a listener
    resets every queued connection, and each of those clients may have sent its request already.
    Returns how many were taken from the backlog."""
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []
    for server in servers:
        # A duplicate keeps the socket listening (and queueing) after the loop lets go of it, so
        # the backlog is emptied with nothing accepted behind our back, then closed at once.
        for sock in server.sockets or ():
            try:
                held.append(socket.socket(fileno=os.dup(sock.fileno())))
            except OSError as exc:  # out of descriptors: its backlog is reset as before
                log.warning("could not keep the listener open to take its backlog: %s", exc)
        server.close()
    taken: list[socket.socket] = []
    for listener in held:
        with listener:
            taken += _take_backlog(listener)
    for conn in taken:
        try:
            await loop.connect_accepted_socket(protocol, conn)
        except OSError as exc:  # the client left meanwhile
            log.debug("a connection from the backlog closed before it was served: %s", exc)
            conn.close()
    return len(taken)
