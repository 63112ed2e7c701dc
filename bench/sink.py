#!/usr/bin/env python3
"""The machine's upload limits: an HTTP/1.1 server that takes request bodies and does nothing
with them but (optionally) hash them with SHA-256, and (in durable mode) write them to a file
and fsync it before answering, as a registry must before it acknowledges a blob.

Usage: sink.py PORT [sha256|none|durable DIR]

Python's hashlib is OpenSSL's SHA-256 (the fastest implementation on this machine; without
SHA-NI it uses OpenSSL's AVX2 assembly), and the loop below moves 1 MiB per call, so the
interpreter costs next to nothing: what is left is loopback TCP plus the hash. Bodies must
carry Content-Length (curl -T does). Every request gets `201` with the body's digest in
`Docker-Content-Digest`. Listens on 127.0.0.1 only; one connection at a time, keep-alive.
"""

import hashlib
import os
import socket
import sys

BUF = 1 << 20


def serve(conn, algorithm, directory):
    buf = bytearray(BUF)
    view = memoryview(buf)
    pending = b""
    while True:
        while b"\r\n\r\n" not in pending:
            data = conn.recv(65536)
            if not data:
                return
            pending += data
        head, _, pending = pending.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        h = hashlib.sha256() if algorithm in ("sha256", "durable") else None
        out = open(os.path.join(directory, "upload"), "wb", buffering=0) if directory else None
        first, pending = pending[:length], pending[length:]
        if h:
            h.update(first)
        if out:
            out.write(first)
        left = length - len(first)
        while left > 0:
            n = conn.recv_into(view, min(BUF, left))
            if n == 0:
                return
            if h:
                h.update(view[:n])
            if out:
                out.write(view[:n])
            left -= n
        if out:
            os.fsync(out.fileno())
            out.close()
            os.unlink(os.path.join(directory, "upload"))
        digest = "sha256:" + h.hexdigest() if h else "none"
        conn.sendall(
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nDocker-Content-Digest: "
            + digest.encode()
            + b"\r\n\r\n"
        )


def main():
    port = int(sys.argv[1])
    algorithm = sys.argv[2] if len(sys.argv) > 2 else "sha256"
    directory = sys.argv[3] if algorithm == "durable" else None
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            serve(conn, algorithm, directory)
        except (ConnectionError, ValueError):
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    main()
