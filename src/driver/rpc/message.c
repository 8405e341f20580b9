/* libvirt RPC framing; see message.h. */
#include <string.h>

#include "error.h"
#include "message.h"

#define VIR_FROM_THIS VIR_FROM_RPC

uint32_t rpc_msg_length(const uint8_t word[RPC_LEN_SIZE])
{
	return (uint32_t)word[0] << 24 | (uint32_t)word[1] << 16 |
	       (uint32_t)word[2] << 8 | word[3];
}

int rpc_msg_check_length(uint32_t len)
{
	/* CLIENT: the length word decides how much we read and buffer; it
	 * must leave room for a whole header and stay within libvirt's
	 * message limit, or the stream cannot be trusted any further. */
	if (len < RPC_PACKET_MIN) {
		drv_error_report(VIR_ERR_RPC, "packet of %u bytes is too small for an RPC header (%u)",
				 len, RPC_PACKET_MIN);
		return -1;
	}
	if (len > RPC_PACKET_MAX) {
		drv_error_report(VIR_ERR_RPC, "packet of %u bytes exceeds the RPC limit of %u",
				 len, RPC_PACKET_MAX);
		return -1;
	}
	return 0;
}

int rpc_msg_decode_header(const uint8_t *pkt, size_t len, struct rpc_header *hdr)
{
	XDR xdr;
	int ok;

	/* CLIENT: callers may pass any bytes (the fuzz harness does); the
	 * length word must agree with what we were given. */
	if (len < RPC_PACKET_MIN || len > RPC_PACKET_MAX || rpc_msg_length(pkt) != len) {
		drv_error_report(VIR_ERR_RPC, "malformed packet: length word does not match its %zu bytes", len);
		return -1;
	}
	xdrmem_create(&xdr, (char *)pkt + RPC_LEN_SIZE, RPC_HEADER_SIZE, XDR_DECODE);
	ok = xdr_rpc_header(&xdr, hdr);
	xdr_destroy(&xdr);
	if (!ok) {
		drv_error_report(VIR_ERR_RPC, "Unable to decode message header");
		return -1;
	}
	return 0;
}

int rpc_msg_decode_body(const uint8_t *pkt, size_t len, xdrproc_t filter, void *obj)
{
	size_t off = RPC_LEN_SIZE + RPC_HEADER_SIZE;
	XDR xdr;
	int ok;

	/* CLIENT: xdrmem never reads past len - off; every string and array
	 * filter checks its count against the maximum in the .x file before
	 * allocating, and the packet itself is at most RPC_PACKET_MAX. */
	xdrmem_create(&xdr, (char *)pkt + off, len - off, XDR_DECODE);
	ok = filter(&xdr, obj);
	xdr_destroy(&xdr);
	if (!ok) {
		/* The filter may have allocated part of obj. */
		xdr_free(filter, obj);
		drv_error_report(VIR_ERR_RPC, "Unable to decode message payload");
		return -1;
	}
	return 0;
}

GBytes *rpc_msg_encode(const struct rpc_header *hdr, xdrproc_t filter, const void *body)
{
	size_t cap = RPC_INITIAL_BUFFER;
	struct rpc_header h = *hdr;

	/* Most replies fit the first buffer; grow as libvirt does (x4) up
	 * to the limit rather than sizing everything for the worst case. */
	for (;;) {
		uint8_t *buf = g_malloc(cap);
		XDR xdr;
		int ok;

		xdrmem_create(&xdr, (char *)buf + RPC_LEN_SIZE, cap - RPC_LEN_SIZE, XDR_ENCODE);
		ok = xdr_rpc_header(&xdr, &h) && filter(&xdr, (void *)body);
		if (ok) {
			uint32_t len = RPC_LEN_SIZE + xdr_getpos(&xdr);

			xdr_destroy(&xdr);
			buf[0] = len >> 24;
			buf[1] = len >> 16;
			buf[2] = len >> 8;
			buf[3] = len;
			return g_bytes_new_take(g_realloc(buf, len), len);
		}
		xdr_destroy(&xdr);
		g_free(buf);
		if (cap >= RPC_PACKET_MAX) {
			drv_error_report(VIR_ERR_RPC, "reply to procedure %d does not fit in an RPC message (%u bytes)",
					 hdr->proc, RPC_MESSAGE_MAX);
			return NULL;
		}
		cap = MIN((size_t)RPC_PACKET_MAX, cap * 4);
	}
}

GBytes *rpc_msg_encode_raw(const struct rpc_header *hdr, const void *data, size_t len)
{
	GBytes *head = rpc_msg_encode(hdr, (xdrproc_t)rpc_xdr_void, NULL);
	size_t hlen, total;
	const uint8_t *h;
	uint8_t *buf;

	if (!head)
		return NULL;
	h = g_bytes_get_data(head, &hlen);
	total = hlen + len;
	if (total > RPC_PACKET_MAX) {
		g_bytes_unref(head);
		drv_error_report(VIR_ERR_RPC, "stream data of %zu bytes does not fit in an RPC message", len);
		return NULL;
	}
	buf = g_malloc(total);
	memcpy(buf, h, hlen);
	if (len)
		memcpy(buf + hlen, data, len);
	buf[0] = total >> 24;
	buf[1] = total >> 16;
	buf[2] = total >> 8;
	buf[3] = total;
	g_bytes_unref(head);
	return g_bytes_new_take(buf, total);
}

bool_t rpc_xdr_void(XDR *xdr, void *obj)
{
	return TRUE;
}

const char *rpc_msg_type_name(int type)
{
	static const char *const names[] = {
		[RPC_CALL] = "call", [RPC_REPLY] = "reply", [RPC_MESSAGE] = "message",
		[RPC_STREAM] = "stream", [RPC_CALL_WITH_FDS] = "call-with-fds",
		[RPC_REPLY_WITH_FDS] = "reply-with-fds", [RPC_STREAM_HOLE] = "stream-hole",
	};

	if (type < 0 || (size_t)type >= G_N_ELEMENTS(names))
		return "unknown";
	return names[type];
}
