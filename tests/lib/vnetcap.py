"""Run inside the test's network namespace (ip netns exec NS python3
vnetcap.py TAP SPORT COUNT SECONDS): captures the UDP datagrams a guest
sends from port SPORT into TAP, with the virtio-net header the kernel
keeps for each (a packet socket's PACKET_VNET_HDR): a checksum left to
the device shows as NEEDS_CSUM with csum_start and csum_offset.  It is
completed here as a NIC would (the host's own stack trusts such a
checksum and never computes it), then the UDP checksum is verified.
Prints {"ready": true}, then after COUNT datagrams or SECONDS one JSON
line: per datagram flags, csum_start, csum_offset and ok."""
import json
import socket
import struct
import sys
import time

from netprobe import checksum     # same directory: sys.path[0]

SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
ETH_P_ALL = 3
VNET_HDR_LEN = 10       # struct virtio_net_hdr, without num_buffers
NEEDS_CSUM = 1


def udp_ok(ip, udp):
    if udp[6:8] == b"\0\0":
        return None     # no checksum sent
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    return checksum(pseudo + udp) == 0


def main():
    tap, sport, count, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((tap, 0))
    print(json.dumps({"ready": True}), flush=True)
    out, deadline = [], time.monotonic() + secs
    while len(out) < count and time.monotonic() < deadline:
        s.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            break
        flags, _, _, _, start, off = struct.unpack("<BBHHHH", data[:VNET_HDR_LEN])
        f = bytearray(data[VNET_HDR_LEN:])
        if addr[2] == PACKET_OUTGOING or len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        ihl = (f[14] & 0xf) * 4
        ip, udp_at = f[14:14 + ihl], 14 + ihl
        if struct.unpack("!H", f[udp_at:udp_at + 2])[0] != sport:
            continue
        if flags & NEEDS_CSUM:
            # 0 is sent as 0xffff (RFC 768: 0 would mean none)
            struct.pack_into("!H", f, start + off, checksum(bytes(f[start:])) or 0xffff)
        ulen = struct.unpack("!H", f[udp_at + 4:udp_at + 6])[0]
        out.append({"flags": flags, "csum_start": start, "csum_offset": off,
                    "ok": udp_ok(ip, bytes(f[udp_at:udp_at + ulen]))})
    print(json.dumps(out), flush=True)


main()
