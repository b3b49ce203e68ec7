"""A watchdog for multi-process runs: a process that is lost ends its peers at once, with one line.

On JAX's distributed runtime a process that dies (killed, out of memory, a host gone) leaves its peers blocked
in a collective until the coordination service's heartbeat timeout (100 s by default) fires, and they then
end with the runtime's own multi-line fatal log. :func:`peer_watch` adds one TCP connection between process 0
and every other process for the duration of the training loop. The operating system closes a dead process's
sockets, so its peers see the end of the stream at once: each prints

    gm-jax: error: process 1 of the 2-process run ended without finishing (connection closed); ...

and exits with status 2 (nothing of the run is lost: the newest verified checkpoint resumes it). A process
that finishes says so (``bye``) before it closes. The watchdog never stops a run by itself failing: when
the connections cannot be made, one notice says so and training goes on under JAX's heartbeat alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

import jax
import numpy as np

BYE = b"bye\n"   # the process finished the block
ERR = b"err\n"   # the process leaves the block by an exception of its own (it reports it itself)
CONNECT_TIMEOUT = 20.0  # seconds process 0 waits for its peers' connections, and a peer for process 0
GRACE = 2.0  # seconds a failing process waits for its watchers: a collective fails when a peer dies, too


def _lost(process: int, count: int, why: str) -> None:
    """The one line, then exit 2 from whatever thread notices (the main thread may be blocked in XLA)."""
    sys.stderr.write(f"gm-jax: error: process {process} of the {count}-process run ended without finishing "
                     f"({why}); the newest verified checkpoint is kept: run the same command on every host "
                     "again to resume\n")
    sys.stderr.flush()
    os._exit(2)


def _watch(conn: socket.socket, process: int, count: int, stopping: threading.Event) -> None:
    """Block on ``conn`` until the peer says bye (quiet return), or err (lost unless this process leaves the
    block too within 2 GRACE), or the stream ends or fails (lost peer)."""
    data, why = b"", "connection closed"
    try:
        while len(data) < len(BYE):
            chunk = conn.recv(len(BYE) - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as e:
        why = e.strerror or type(e).__name__
    if data == ERR:  # it failed; this process's own collectives fail next, and may raise the same error
        why = "it stopped with an error: see that process's output"
        stopping.wait(2 * GRACE)
    if data != BYE and not stopping.is_set():
        _lost(process, count, why)


def _notice(text: str) -> None:
    print(f"gm-jax: note: {text}; a lost process ends its peers only after JAX's heartbeat timeout",
          file=sys.stderr, flush=True)


def _address_of_process_zero(server: socket.socket | None) -> tuple[str, int]:
    """Process 0's IPv4 address and listening port, broadcast to every process (a collective)."""
    from jax.experimental import multihost_utils

    mine = np.zeros(5, np.int32)
    if server is not None:
        host = os.environ.get("GM_JAX_WATCHDOG_HOST") or socket.gethostbyname(socket.gethostname())
        mine[:4] = np.frombuffer(socket.inet_aton(host), np.uint8)
        mine[4] = server.getsockname()[1]
    got = np.asarray(multihost_utils.broadcast_one_to_all(mine))
    return ".".join(str(int(b)) for b in got[:4]), int(got[4])


def _connect_peers(server: socket.socket, count: int) -> dict[int, socket.socket]:
    """Process 0 accepts one connection per peer (each sends its process index first)."""
    peers, deadline = {}, time.monotonic() + CONNECT_TIMEOUT
    while len(peers) < count - 1 and time.monotonic() < deadline:
        server.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            conn, _ = server.accept()
            conn.settimeout(CONNECT_TIMEOUT)
            index = int(conn.recv(8).decode().strip() or -1)
            conn.settimeout(None)
        except (OSError, ValueError):
            continue
        peers[index] = conn
    return peers


def _connect_to_zero(address: tuple[str, int], index: int) -> dict[int, socket.socket]:
    conn = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
    conn.sendall(f"{index:<7d}\n".encode())
    conn.settimeout(None)
    return {0: conn}


def _open(index: int, count: int) -> dict[int, socket.socket]:
    """The watchdog connections of this process: process 0 to every peer, a peer to process 0."""
    server = socket.create_server(("", 0)) if index == 0 else None
    try:
        address = _address_of_process_zero(server)
        if server is not None:
            server.listen(count)
            peers = _connect_peers(server, count)
            if len(peers) < count - 1:
                _notice(f"only {len(peers)} of {count - 1} processes reached the watchdog")
            return peers
        return _connect_to_zero(address, index)
    except OSError as e:
        _notice(f"the peer watchdog could not connect ({e.strerror or type(e).__name__})")
        return {}
    finally:
        if server is not None:
            server.close()


@contextlib.contextmanager
def peer_watch() -> Iterator[None]:
    """Watch the other processes of a multi-process run while the block runs (nothing for one process).

    A peer whose connection ends before it said bye (or err) ends this process with one line and exit 2.
    Leaving the block normally says bye. Leaving it by an exception says err, then waits up to GRACE seconds
    in which a watcher that sees a peer lost ends the process with the lost-peer line (a collective raises,
    too, when a peer dies — gloo: "connection closed by peer" — and then the lost peer is the cause to
    report); a peer told err ends with one line unless it raises an error of its own within 2 GRACE (the same
    NaN, say), which it then reports."""
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        yield
        return
    peers, stopping = _open(index, count), threading.Event()
    watchers = [threading.Thread(target=_watch, args=(conn, process, count, stopping), daemon=True,
                                 name=f"gm_jax-peer-{process}") for process, conn in peers.items()]
    for thread in watchers:
        thread.start()
    finished = False
    try:
        yield
        finished = True
    finally:
        _leave(peers, watchers, stopping, finished)


def _leave(peers: dict[int, socket.socket], watchers: list[threading.Thread], stopping: threading.Event,
           finished: bool) -> None:
    """Say bye (finished) or err, giving the watchers GRACE seconds to report a lost peer first when failing."""
    if not finished:
        for conn in peers.values():
            with contextlib.suppress(OSError):
                conn.sendall(ERR)
        deadline = time.monotonic() + GRACE
        for thread in watchers:  # a watcher ends when its peer's stream ends (lost: it exits the process)
            thread.join(max(deadline - time.monotonic(), 0.0))
    stopping.set()
    for conn in peers.values():
        with contextlib.suppress(OSError):
            if finished:
                conn.sendall(BYE)
            conn.close()
