/* libvirt RPC framing: the length word, the header, and XDR bodies in and
 * out of one packet.  No I/O here: server.c reads whole packets and hands
 * them over; the fuzz harness feeds the same functions directly. */
#ifndef KVMM_RPC_MESSAGE_H
#define KVMM_RPC_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "protocol_xdr.h"

/* The shortest and longest legal value of a packet's length word (which
 * counts its own 4 bytes). */
#define RPC_PACKET_MIN (RPC_LEN_SIZE + RPC_HEADER_SIZE)
#define RPC_PACKET_MAX (RPC_LEN_SIZE + RPC_MESSAGE_MAX)

/* The big-endian length word at the start of a packet. */
uint32_t rpc_msg_length(const uint8_t word[RPC_LEN_SIZE]);

/* 0 if a packet of that length word may be read, else -1 with the
 * error reported (VIR_ERR_RPC). */
int rpc_msg_check_length(uint32_t len);

/* Decodes the header of the packet pkt[0..len) (length word included).
 * 0 or -1 with the error reported. */
int rpc_msg_decode_header(const uint8_t *pkt, size_t len, struct rpc_header *hdr);

/* Decodes the body (after the header) with filter into obj, which the
 * caller zeroed and later frees with xdr_free(filter, obj).  0 or -1
 * with the error reported. */
int rpc_msg_decode_body(const uint8_t *pkt, size_t len, xdrproc_t filter, void *obj);

/* One packet: length word, hdr, then body encoded by filter (xdr_void
 * for none).  NULL with the error reported when it would exceed
 * RPC_PACKET_MAX. */
GBytes *rpc_msg_encode(const struct rpc_header *hdr, xdrproc_t filter, const void *body);

/* One packet with a raw body (stream data): length word, hdr, then LEN
 * bytes of DATA.  NULL with the error reported if it would not fit. */
GBytes *rpc_msg_encode_raw(const struct rpc_header *hdr, const void *data, size_t len);

/* The XDR filter of an empty body (libtirpc's xdr_void has no
 * parameters, which the xdrproc_t cast would rightly warn about). */
bool_t rpc_xdr_void(XDR *xdr, void *obj);

/* The human name of a message type, for logs. */
const char *rpc_msg_type_name(int type);

#endif
