"""Run inside the test's network namespace (ip netns exec NS python3
netbench_probe.py ...), the host side of the test guest's throughput
modes (tests/guest/net_bench.c; payload: bytes 0-7 a big-endian sequence
number from 0, all ones for the end marker, byte i >= 8 = (i * 31 + 7) & 0xff).

    recv PORT TIMEOUT   print {"ready": true}, then receive until the end
                        marker, 2 s without a datagram after the first, or
                        TIMEOUT s; print what came, checked
    send IP PORT COUNT SIZE PPS
                        COUNT datagrams at about PPS, then the end marker
                        every 50 ms until a line arrives on stdin

Prints one JSON line per result."""
import json
import select
import socket
import sys
import time

END = (1 << 64) - 1


def payload(seq, size):
    return seq.to_bytes(8, "big") + bytes((i * 31 + 7) & 0xff for i in range(8, size))


def recv(port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Root: past rmem_max, so a guest sending flat out loses less here.
    s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
    s.bind(("0.0.0.0", port))
    print(json.dumps({"ready": True}), flush=True)
    out = {"pkts": 0, "bad": 0, "reordered": 0, "seq_max": -1, "ended": False,
           "sizes": [], "sources": []}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()) if out["pkts"] == 0 else 2)
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            break
        if f"{addr[0]}:{addr[1]}" not in out["sources"]:
            out["sources"].append(f"{addr[0]}:{addr[1]}")
        seq = int.from_bytes(data[:8], "big")
        if seq == END:
            out["ended"] = True
            break
        out["pkts"] += 1
        if len(data) not in out["sizes"]:
            out["sizes"].append(len(data))
        if data != payload(seq, len(data)):
            out["bad"] += 1
        if seq <= out["seq_max"]:
            out["reordered"] += 1
        out["seq_max"] = max(out["seq_max"], seq)
    print(json.dumps(out), flush=True)


def send(ip, port, count, size, pps):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, port))
    start = time.monotonic()
    for seq in range(count):
        due = start + seq / pps
        while time.monotonic() < due:
            time.sleep(0.0005)
        s.send(payload(seq, size))
    print(json.dumps({"pkts": count, "bytes": count * size}), flush=True)
    marker = payload(END, size)
    for _ in range(200):
        s.send(marker)
        if select.select([sys.stdin], [], [], 0.05)[0]:
            break


def main():
    if sys.argv[1] == "recv":
        recv(int(sys.argv[2]), float(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
             float(sys.argv[6]))


main()
