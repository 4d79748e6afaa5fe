"""A network guard for processes the offline tests watch; Python loads it at start-up.

Put this folder on PYTHONPATH and name a log file in EARSHOT_NET_GUARD_LOG. From the first line of
the program to its exit, every socket connect/send to an address (loopback included: a local
proxy would carry traffic out) and every lookup of a host name that is not local is appended to
the log, one JSON object per line, with the Python stack that made it. Attempts to reach anything
other than loopback are also refused with PermissionError. Unix sockets are not network.
"""

from __future__ import annotations

import os
import sys

_LOG = os.environ.get("EARSHOT_NET_GUARD_LOG")

if _LOG:
    import ipaddress
    import json
    import socket
    import traceback

    _SENDS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
    _LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"})

    def _is_local(host) -> bool:
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        host = str(host).split("%", 1)[0]
        if host in ("", "localhost") or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def _record(event: str, target, refused: bool) -> None:
        entry = {
            "event": event,
            "target": repr(target),
            "refused": refused,
            "pid": os.getpid(),
            "stack": "".join(traceback.format_stack(limit=15)[:-2]),
        }
        with open(_LOG, "a") as log:
            log.write(json.dumps(entry) + "\n")

    def _guard(event: str, args: tuple) -> None:
        # Called for every audit event in the process: leave everything that is not a socket at once.
        if not event.startswith("socket."):
            return
        if event in _SENDS:
            sock, address = args[0], args[1]
            if address is None or sock.family == socket.AF_UNIX:
                return
            host = address[0]
            local = _is_local(host)
            _record(event, address, refused=not local)
        elif event in _LOOKUPS:
            host = args[0][0] if event == "socket.getnameinfo" else args[0]
            local = _is_local(host)
            if local:
                return
            _record(event, host, refused=True)
        else:
            return
        if not local:
            raise PermissionError(f"network access refused by the earshot test guard: {event} {host!r}")

    sys.addaudithook(_guard)
