"""Holds connections to a TCP service, as a workload exhausting it would;
run in a lab workload.

  hold.py HOST PORT COUNT SECONDS MODE [SOURCE...]

Opens COUNT connections (from each SOURCE address in turn, if given) and
keeps them for SECONDS: `silent` sends nothing, `slow` sends a request
head one byte a second and never finishes it. Prints, as JSON, how many
opened, how many the service closed within a second ("refused"), and for
the rest how many seconds after opening each was closed (null: still open
at the end).
"""
import json
import select
import socket
import sys
import time

host, port, count, seconds, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
sources = sys.argv[6:] or [None]
head = b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\n"

opened = []
for i in range(count):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    source = sources[i % len(sources)]
    if source:
        sock.bind((source, 0))
    sock.settimeout(3)
    sock.connect((host, port))
    sock.setblocking(False)
    opened.append(sock)
start = time.monotonic()
closed = {}
sent = 0
while time.monotonic() - start < seconds:
    live = [s for s in opened if s not in closed]
    if not live:
        break
    readable, _, _ = select.select(live, [], [], 0.1)
    for sock in readable:
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            closed[sock] = time.monotonic() - start
    elapsed = time.monotonic() - start
    if mode == "slow" and sent < len(head) and elapsed >= sent:
        for sock in live:
            if sock not in closed:
                try:
                    sock.send(head[sent:sent + 1])
                except OSError:
                    closed[sock] = elapsed
        sent += 1
refused = sum(1 for t in closed.values() if t < 1)
later = [round(closed[s], 1) if s in closed else None for s in opened if closed.get(s, 99) >= 1]
print(json.dumps({"opened": len(opened), "refused": refused, "held": later}))
