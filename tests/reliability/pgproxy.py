"""A loopback TCP proxy in front of a real PostgreSQL server that can cut a connection
exactly around a COMMIT — the ambiguous case of "the database goes away".

Stopping or killing the server cannot aim at the instant between "the COMMIT is
durable" and "the client has read the answer". This proxy can, deterministically:

``arm("commit-lost")``
    the next client->server chunk that carries a ``COMMIT`` statement is NOT forwarded
    and the connection is cut: the server never sees the COMMIT and rolls back.
``arm("answer-lost")``
    the ``COMMIT`` reaches the server; the server's ``CommandComplete`` answer for it
    (``C``, length 11, ``COMMIT\\0``: the commit is durable when it is sent) is NOT
    forwarded and the connection is cut: committed, but the client cannot know.

Each arm cuts one connection, once. Everything else is forwarded byte for byte.
"""

from __future__ import annotations

import contextlib
import socket
import threading

#: PostgreSQL's CommandComplete message for a COMMIT: 'C', int32 length 11, "COMMIT\0".
COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"
#: The statement text as it travels in a Query or Parse message.
COMMIT_SENT = b"COMMIT\x00"


class PgProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._mode: str | None = None
        self.cuts: list[str] = []
        self._conns: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="pgproxy-accept").start()

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.upstream[0]}:{self.port}/{database}"

    def arm(self, mode: str) -> None:
        if mode not in ("commit-lost", "answer-lost"):
            raise ValueError(mode)
        with self._lock:
            self._mode = mode

    def armed(self) -> str | None:
        with self._lock:
            return self._mode

    def _take(self, mode: str) -> bool:
        with self._lock:
            if self._mode != mode:
                return False
            self._mode = None
            self.cuts.append(mode)
            return True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns.update((client, server))
            for src, dst, direction in ((client, server, "up"), (server, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, direction, client, server),
                                 daemon=True, name=f"pgproxy-{direction}").start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str,
              client: socket.socket, server: socket.socket) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                seen = tail + data
                tail = seen[-16:]
                if direction == "up" and COMMIT_SENT in seen and self._take("commit-lost"):
                    break  # never forwarded: the server rolls back
                if direction == "down" and COMMIT_DONE in seen and self._take("answer-lost"):
                    break  # committed, but the answer is lost
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._conns.discard(client)
                self._conns.discard(server)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> PgProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
