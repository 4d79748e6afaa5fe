"""Reading `strace -f -e trace=connect,sendto,sendmsg,sendmmsg` output for attempts to reach a
network: what Python-level socket hooks cannot see, because native libraries call libc directly.

An attempt is any address outside loopback (IPv4 or IPv6), anything to port 53 (a DNS query, even
to a resolver on loopback), a host lookup handed to systemd-resolved over its Unix socket, and any
address family that is not loopback IP, a Unix socket or netlink (which stays in the kernel: glibc
uses it to list interfaces). glibc also asks the name-service cache daemon (nscd) first for user
names (torch looks up the user at import), so an nscd connect alone is no evidence; a host where
nscd runs would answer host lookups without a DNS query, which is why `nscd_running` exists.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

# onnxruntime keeps its telemetry off where it sees a CI system (names from libonnxruntime's
# strings, and the generic CI=true). A traced server runs without them, as on an ordinary host, so
# that only Earshot's own switches can keep it quiet.
CI_MARKERS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL")

TRACE_ARGS = ("-f", "-qq", "--seccomp-bpf", "-s", "64", "-e", "trace=connect,sendto,sendmsg,sendmmsg")

_CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(connect|sendto|sendmsg|sendmmsg)\((.*)$")
_FAMILY = re.compile(r"sa_family=(AF_\w+)")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_V4 = re.compile(r'inet_addr\("([^"]+)"\)')
_V6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_UNIX = re.compile(r'sun_path=(?:@)?"([^"]*)"')


def _verdict(args: str) -> str | None:
    """Why this call's destination is an attempt to reach a network, or None."""
    family = _FAMILY.search(args)
    if family is None:
        return None  # a connected socket's send: its connect() was judged already
    family = family.group(1)
    if family in ("AF_NETLINK", "AF_UNSPEC"):
        return None  # kernel queries; AF_UNSPEC disconnects a datagram socket
    if family == "AF_UNIX":
        path = _UNIX.search(args)
        return "host lookup via systemd-resolved" if path and "systemd/resolve" in path.group(1) else None
    if family in ("AF_INET", "AF_INET6"):
        address = (_V4 if family == "AF_INET" else _V6).search(args)
        port = _PORT.search(args)
        if port and port.group(1) == "53":
            return "DNS query"
        if address is None:
            return f"{family} address not shown"
        if not ipaddress.ip_address(address.group(1)).is_loopback:
            return "address outside loopback"
        return None
    return f"address family {family}"


def nscd_running() -> bool:
    return Path("/var/run/nscd/socket").exists() or Path("/run/nscd/socket").exists()


def outbound(trace: str) -> list[str]:
    """The trace's lines that tried to reach a network, each prefixed with why."""
    found = []
    for line in trace.splitlines():
        match = _CALL.match(line.strip())
        if match and (why := _verdict(match.group(3))):
            found.append(f"{why}: {line.strip()}")
    return found
