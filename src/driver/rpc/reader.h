/* Framing of libvirt RPC packets read off a byte stream: the length word,
 * its check, and a buffer that grows only as the bytes of a packet arrive.
 * The transport (a socket, a TLS session) and what becomes of a packet
 * are the caller's: server.c reads clients with it, forward.c libvirt's
 * own daemons. */
#ifndef KVMM_RPC_READER_H
#define KVMM_RPC_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rpc_reader {
	uint8_t *buf;
	size_t cap;
	size_t have;		/* bytes of the current packet read so far */
	size_t len;		/* from its length word; 0 until read */
};

/* Reads into buf at most len bytes: the count, 0 at end of stream, or -1
 * with errno set (EAGAIN when nothing is there yet). */
typedef ssize_t (*rpc_reader_recv_fn)(void *opaque, void *buf, size_t len);

enum rpc_read {
	RPC_READ_MORE,		/* part of a packet arrived: call again */
	RPC_READ_PACKET,	/* buf[0..len) is a whole packet, until rpc_reader_next */
	RPC_READ_AGAIN,		/* nothing to read now */
	RPC_READ_EOF,		/* the peer closed (have says if mid-packet) */
	RPC_READ_ERROR,		/* the transport failed; errno says why */
	RPC_READ_BAD_LENGTH,	/* an illegal length word, reported (drv_error) */
	RPC_READ_TOO_BIG,	/* a legal length word above the caller's max; len has it */
};

void rpc_reader_init(struct rpc_reader *r);
void rpc_reader_clear(struct rpc_reader *r);

/* One read through recv_fn, never past the end of the current packet, so
 * the next packet stays in the transport for the next call.  A packet
 * longer than max (at most RPC_PACKET_MAX) is refused as soon as its
 * length word is in.  After BAD_LENGTH or TOO_BIG nothing more can be
 * framed: the caller drops the peer. */
enum rpc_read rpc_reader_recv(struct rpc_reader *r, size_t max, rpc_reader_recv_fn recv_fn,
			      void *opaque);

/* Done with the packet that RPC_READ_PACKET returned: start on the next
 * one, and let a buffer that grew for a large packet go. */
void rpc_reader_next(struct rpc_reader *r);

#endif
