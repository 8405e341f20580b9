// SPDX-License-Identifier: MIT
/*
 * Host side of tools/bench/net, run inside the bench's network namespace:
 * a UDP receiver and a UDP sender fast enough not to be what is measured
 * (recvmmsg/sendmmsg, 64 datagrams per call).  Payloads follow the test
 * guest's throughput modes (tests/guest/net_bench.c): bytes 0-7 a
 * big-endian sequence number from 0, all ones for the end marker, byte
 * i >= 8 = (i * 31 + 7) & 0xff.  Built by the bench with cc; one JSON line
 * on stdout.
 *
 *   netpump recv PORT TIMEOUT_S
 *	count datagrams until the end marker, TIMEOUT_S without any, or
 *	TIMEOUT_S after the first one plus the idle second that follows.
 *   netpump send IP PORT SIZE SECONDS [PPS]
 *	send SIZE-byte datagrams for SECONDS, flat out or at PPS, then the
 *	end marker every 20 ms until a line arrives on stdin or 10 s pass.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH		64
#define MAX_DGRAM	65536
#define END_SEQ		UINT64_MAX

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint8_t pattern(size_t i)
{
	return (i * 31 + 7) & 0xff;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = v;
}

static int die(const char *what)
{
	fprintf(stderr, "netpump: %s: %s\n", what, strerror(errno));
	return 1;
}

static int do_recv(int port, double timeout)
{
	static uint8_t bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint64_t pkts = 0, bytes = 0, next = 0, reordered = 0, bad = 0;
	uint64_t first = 0, last = 0, start = now_ns(), lim = timeout * 1e9;
	int s = socket(AF_INET, SOCK_DGRAM, 0), size = 32 << 20, ended = 0;

	if (s < 0)
		return die("socket");
	/* Root in the bench: past rmem_max, so bursts are not dropped here. */
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return die("bind");
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
		msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1 };
	}
	printf("{\"ready\": true}\n");
	fflush(stdout);
	while (!ended) {
		struct pollfd p = { s, POLLIN, 0 };
		uint64_t t = now_ns();
		int n;

		if (!pkts ? t - start > lim : t - last > 1000000000ull || t - first > lim)
			break;
		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recvmmsg(s, msgs, BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return die("recvmmsg");
		}
		t = now_ns();
		for (int i = 0; i < n; i++) {
			const uint8_t *d = bufs[i];
			size_t len = msgs[i].msg_len, j;
			uint64_t seq;

			if (len < 8) {
				bad++;
				continue;
			}
			seq = get64(d);
			if (seq == END_SEQ) {
				ended = 1;
				continue;
			}
			if (!pkts)
				first = t;
			last = t;
			pkts++;
			bytes += len;
			if (seq < next)
				reordered++;
			else
				next = seq + 1;
			for (j = 8; j < len && d[j] == pattern(j); j++)
				;
			if (j < len)
				bad++;
		}
	}
	printf("{\"pkts\": %llu, \"bytes\": %llu, \"ns\": %llu, \"seq_end\": %llu, "
	       "\"reordered\": %llu, \"bad\": %llu, \"ended\": %s}\n",
	       (unsigned long long)pkts, (unsigned long long)bytes,
	       (unsigned long long)(last - first), (unsigned long long)next,
	       (unsigned long long)reordered, (unsigned long long)bad,
	       ended ? "true" : "false");
	return 0;
}

static int do_send(const char *ip, int port, size_t size, double secs, double pps)
{
	static uint8_t bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint64_t seq = 0, errors = 0, start, end, t;
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	if (s < 0)
		return die("socket");
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1 || size < 16 || size > 2048) {
		fprintf(stderr, "netpump: bad address %s or size %zu (16-2048)\n", ip, size);
		return 2;
	}
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return die("connect");
	for (int i = 0; i < BATCH; i++) {
		for (size_t j = 8; j < size; j++)
			bufs[i][j] = pattern(j);
		iov[i] = (struct iovec){ bufs[i], size };
		msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1 };
	}
	start = now_ns();
	end = start + secs * 1e9;
	while ((t = now_ns()) < end) {
		int n, batch = BATCH;

		if (pps > 0) {
			/* Paced: never ahead of start + seq / pps. */
			uint64_t due = start + seq * 1e9 / pps;

			if (due > t) {
				struct timespec ts = { 0, due - t < 1000000 ? due - t : 1000000 };

				nanosleep(&ts, NULL);
				continue;
			}
			batch = (t - due) * pps / 1e9 + 1;
			if (batch > BATCH)
				batch = BATCH;
		}
		for (int i = 0; i < batch; i++)
			put64(bufs[i], seq + i);
		n = sendmmsg(s, msgs, batch, 0);
		if (n < 0) {
			/* ECONNREFUSED from an ICMP error, ENOBUFS: count, go on. */
			errors++;
			continue;
		}
		seq += n;
	}
	t = now_ns();
	printf("{\"pkts\": %llu, \"bytes\": %llu, \"ns\": %llu, \"errors\": %llu}\n",
	       (unsigned long long)seq, (unsigned long long)(seq * size),
	       (unsigned long long)(t - start), (unsigned long long)errors);
	fflush(stdout);
	put64(bufs[0], END_SEQ);
	for (int i = 0; i < 500; i++) {
		struct pollfd p = { 0, POLLIN, 0 };

		send(s, bufs[0], size, 0);
		if (poll(&p, 1, 20) > 0)
			break;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "recv"))
		return do_recv(atoi(argv[2]), atof(argv[3]));
	if ((argc == 6 || argc == 7) && !strcmp(argv[1], "send"))
		return do_send(argv[2], atoi(argv[3]), strtoul(argv[4], NULL, 0),
			       atof(argv[5]), argc == 7 ? atof(argv[6]) : 0);
	fprintf(stderr, "usage: netpump recv PORT TIMEOUT_S\n"
			"       netpump send IP PORT SIZE SECONDS [PPS]\n");
	return 2;
}
