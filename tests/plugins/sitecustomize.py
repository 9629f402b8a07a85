"""Test-only network guard for audit subprocesses: with ``$SRF_SOCKET_LOG`` set, every
attempt to open an internet connection (AF_INET/AF_INET6; local AF_UNIX sockets, which
multiprocessing uses, are allowed) is written to that file and refused."""

import os

if os.environ.get("SRF_SOCKET_LOG"):
    import socket

    _LOG = os.environ["SRF_SOCKET_LOG"]
    _CONNECT, _CONNECT_EX = socket.socket.connect, socket.socket.connect_ex

    def _blocked(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"pid {os.getpid()}: {address!r}\n")
        return True

    def _connect(self, address, *args, **kwargs):
        if _blocked(self, address):
            raise OSError(f"network blocked by the srforensics test suite: {address!r}")
        return _CONNECT(self, address, *args, **kwargs)

    def _connect_ex(self, address, *args, **kwargs):
        if _blocked(self, address):
            return 111  # ECONNREFUSED
        return _CONNECT_EX(self, address, *args, **kwargs)

    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
