/* Error replies; see reply_error.h. */
#include <string.h>

#include "message.h"
#include "reply_error.h"

#define VIR_FROM_THIS VIR_FROM_RPC

/* libvirt's wording around the detail, per code (virErrorMsg in libvirt's
 * util/virerror.c).  Codes not listed pass the detail through. */
static const struct {
	int code;
	const char *before, *after;
} error_words[] = {
	{ VIR_ERR_INTERNAL_ERROR, "internal error: ", "" },
	{ VIR_ERR_NO_SUPPORT, "this function is not supported by the connection driver: ", "" },
	{ VIR_ERR_NO_CONNECT, "no connection driver available for ", "" },
	{ VIR_ERR_INVALID_ARG, "invalid argument: ", "" },
	{ VIR_ERR_OPERATION_FAILED, "operation failed: ", "" },
	{ VIR_ERR_XML_ERROR, "XML error: ", "" },
	{ VIR_ERR_DOM_EXIST, "domain ", " exists already" },
	{ VIR_ERR_OPERATION_DENIED, "operation forbidden: ", "" },
	{ VIR_ERR_NO_DOMAIN, "Domain not found: ", "" },
	{ VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: ", "" },
	{ VIR_ERR_CONFIG_UNSUPPORTED, "unsupported configuration: ", "" },
	{ VIR_ERR_OPERATION_TIMEOUT, "Timed out during operation: ", "" },
	{ VIR_ERR_ARGUMENT_UNSUPPORTED, "argument unsupported: ", "" },
	{ VIR_ERR_OPERATION_ABORTED, "operation aborted: ", "" },
	{ VIR_ERR_NO_DOMAIN_SNAPSHOT, "Domain snapshot not found: ", "" },
	{ VIR_ERR_SNAPSHOT_REVERT_RISKY, "revert requires force: ", "" },
	{ VIR_ERR_NO_DOMAIN_METADATA, "metadata not found: ", "" },
	{ VIR_ERR_OPERATION_UNSUPPORTED, "Operation not supported: ", "" },
	{ VIR_ERR_ACCESS_DENIED, "access denied: ", "" },
	{ VIR_ERR_XML_INVALID_SCHEMA, "XML document failed to validate against schema: ", "" },
	{ VIR_ERR_NO_HOSTNAME, "no hostname found: ", "" },
};

char *rpc_error_text(int code, const char *detail)
{
	for (size_t i = 0; i < G_N_ELEMENTS(error_words); i++)
		if (error_words[i].code == code)
			return g_strconcat(error_words[i].before, detail, error_words[i].after, NULL);
	return g_strdup(detail);
}

GBytes *rpc_reply_error(const struct rpc_header *call, const struct drv_error *err)
{
	struct rpc_header hdr = *call;
	struct rpc_error body;
	g_autofree char *text = NULL;
	GBytes *pkt;

	memset(&body, 0, sizeof(body));
	if (err) {
		body.code = err->code;
		body.domain = err->domain;
		text = rpc_error_text(err->code, err->message);
	} else {
		/* A handler failed without saying why: a bug, but the client
		 * must still get an answer. */
		body.code = VIR_ERR_INTERNAL_ERROR;
		body.domain = VIR_FROM_NONE;
		text = g_strdup("An error occurred, but the cause is unknown");
	}
	body.message = &text;
	body.level = VIR_ERR_ERROR;
	hdr.type = RPC_REPLY;
	hdr.status = RPC_ERROR;
	pkt = rpc_msg_encode(&hdr, (xdrproc_t)xdr_rpc_error, &body);
	if (!pkt) {
		/* Only an absurdly long message could get here; an error
		 * reply must never be lost, so send it without text. */
		body.message = NULL;
		pkt = rpc_msg_encode(&hdr, (xdrproc_t)xdr_rpc_error, &body);
	}
	return pkt;
}
