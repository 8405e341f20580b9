"""Run inside the test's network namespace (ip netns exec NS python3
netprobe.py IP PORT [--big] [--timeout S]): ICMP echo to the guest through
a raw socket (the kernel resolves the guest's MAC with ARP first), then
UDP datagrams to its echo port, then the KVMMTEST-QUIT datagram.  --big:
pings and one datagram fill 1514-byte frames.  Prints one JSON line."""
import argparse
import json
import os
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ping(ip, count, timeout, big):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    ident, ok = os.getpid() & 0xffff, 0
    for seq in range(1, count + 1):
        payload = b"kvmmtest-ping-%d" % seq + bytes(range(32))
        if big:     # 20 + 8 + 1472: a 1500-byte IP packet
            payload += bytes(i * 7 & 0xff for i in range(1472 - len(payload)))
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload
        s.sendto(pkt, (ip, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                break
            icmp = data[(data[0] & 0xf) * 4:]
            typ, _, csum, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if addr[0] == ip and typ == 0 and rid == ident and rseq == seq:
                assert checksum(icmp) == 0, "bad ICMP checksum"
                assert icmp[8:] == payload, "payload changed"
                ok += 1
                break
    return ok


def udp(ip, port, messages, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    echoed = 0
    for m in messages:
        s.sendto(m, (ip, port))
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        if data == m and addr == (ip, port):
            echoed += 1
    return echoed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--timeout", type=float, default=2)
    a = ap.parse_args()
    result = {"ping": ping(a.ip, 3, a.timeout, a.big)}
    msgs = [b"hello %d " % i * (i + 1) for i in range(5)] + [os.urandom(1400)]
    if a.big:
        msgs.append(os.urandom(1472))   # 20 + 8 + 1472: a 1514-byte frame
    result["udp"] = udp(a.ip, a.port, msgs, a.timeout)
    result["udp_sent"] = len(msgs)
    result["quit"] = udp(a.ip, a.port, [b"KVMMTEST-QUIT"], a.timeout)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
