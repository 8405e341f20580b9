/* TLS in virtkvmmd; see tls.h. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "tls.h"

struct tls_context {
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
	bool no_verify;
	char **allowed_dn;		/* owned copy; NULL: any */
	/* Peer contexts (the migration stream): */
	bool peer;
	bool server;
	bool verify_peer;
};

struct tls_session {
	struct tls_context *ctx;
	gnutls_session_t s;
	int rc[3];			/* the last failure of each tls_op */
};

static int file_readable(const char *what, const char *path)
{
	if (access(path, R_OK) < 0) {
		pr_err("cannot read %s '%s': %s", what, path, g_strerror(errno));
		return -1;
	}
	return 0;
}

struct tls_context *tls_context_new(const struct tls_config *cfg)
{
	struct tls_context *ctx = g_new0(struct tls_context, 1);
	const char *prio = cfg->priority && *cfg->priority ? cfg->priority : "NORMAL";
	const char *err_pos = NULL;
	int rc;

	if (file_readable("CA certificate", cfg->ca_file) < 0 ||
	    file_readable("server certificate", cfg->cert_file) < 0 ||
	    file_readable("server key", cfg->key_file) < 0 ||
	    (cfg->crl_file && *cfg->crl_file &&
	     file_readable("certificate revocation list", cfg->crl_file) < 0))
		goto fail;
	rc = gnutls_certificate_allocate_credentials(&ctx->cred);
	if (rc < 0) {
		pr_err("cannot allocate TLS credentials: %s", gnutls_strerror(rc));
		goto fail;
	}
	rc = gnutls_certificate_set_x509_trust_file(ctx->cred, cfg->ca_file, GNUTLS_X509_FMT_PEM);
	if (rc <= 0) {
		pr_err("cannot load CA certificate '%s': %s", cfg->ca_file,
		       rc < 0 ? gnutls_strerror(rc) : "no certificate in it");
		goto fail;
	}
	if (cfg->crl_file && *cfg->crl_file) {
		rc = gnutls_certificate_set_x509_crl_file(ctx->cred, cfg->crl_file,
							  GNUTLS_X509_FMT_PEM);
		if (rc < 0) {
			pr_err("cannot load certificate revocation list '%s': %s", cfg->crl_file,
			       gnutls_strerror(rc));
			goto fail;
		}
	}
	rc = gnutls_certificate_set_x509_key_file(ctx->cred, cfg->cert_file, cfg->key_file,
						  GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		pr_err("cannot load server certificate '%s' with key '%s': %s", cfg->cert_file,
		       cfg->key_file, gnutls_strerror(rc));
		goto fail;
	}
	/* For DHE suites a client may pick. */
	gnutls_certificate_set_known_dh_params(ctx->cred, GNUTLS_SEC_PARAM_MEDIUM);
	rc = gnutls_priority_init(&ctx->prio, prio, &err_pos);
	if (rc < 0) {
		pr_err("tls_priority \"%s\": %s (at '%s')", prio, gnutls_strerror(rc),
		       err_pos ? err_pos : "");
		ctx->prio = NULL;
		goto fail;
	}
	ctx->no_verify = cfg->no_verify;
	ctx->allowed_dn = cfg->allowed_dn ? g_strdupv(cfg->allowed_dn) : NULL;
	return ctx;

fail:
	tls_context_free(ctx);
	return NULL;
}

void tls_context_free(struct tls_context *ctx)
{
	if (!ctx)
		return;
	if (ctx->prio)
		gnutls_priority_deinit(ctx->prio);
	if (ctx->cred)
		gnutls_certificate_free_credentials(ctx->cred);
	g_strfreev(ctx->allowed_dn);
	g_free(ctx);
}

struct tls_session *tls_session_new(struct tls_context *ctx, int fd)
{
	struct tls_session *s = g_new0(struct tls_session, 1);
	int rc;

	s->ctx = ctx;
	rc = gnutls_init(&s->s, GNUTLS_SERVER | GNUTLS_NONBLOCK);
	if (rc < 0) {
		pr_err("cannot start a TLS session: %s", gnutls_strerror(rc));
		g_free(s);
		return NULL;
	}
	if ((rc = gnutls_priority_set(s->s, ctx->prio)) < 0 ||
	    (rc = gnutls_credentials_set(s->s, GNUTLS_CRD_CERTIFICATE, ctx->cred)) < 0) {
		pr_err("cannot set up a TLS session: %s", gnutls_strerror(rc));
		tls_session_free(s);
		return NULL;
	}
	/* Asked for, not required by gnutls: the check after the handshake
	 * decides (and tls_no_verify_certificate may let anyone in), as
	 * libvirt's daemons do. */
	gnutls_certificate_server_set_request(s->s, GNUTLS_CERT_REQUEST);
	gnutls_transport_set_int(s->s, fd);
	return s;
}

void tls_session_free(struct tls_session *s)
{
	if (!s)
		return;
	gnutls_deinit(s->s);
	g_free(s);
}

int tls_session_handshake(struct tls_session *s, bool *want_write, const char *who)
{
	for (;;) {
		int rc = gnutls_handshake(s->s);

		if (rc == 0)
			return 1;
		if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
			*want_write = gnutls_record_get_direction(s->s) == 1;
			return 0;
		}
		/* A peer that just connects and goes (a port probe) is
		 * no failure worth a warning. */
		if (rc == GNUTLS_E_PREMATURE_TERMINATION) {
			pr_info("%s: closed the connection during the TLS handshake", who);
			return -1;
		}
		if (gnutls_error_is_fatal(rc)) {
			pr_warn("%s: TLS handshake failed: %s", who, gnutls_strerror(rc));
			return -1;
		}
		/* A warning alert: the handshake goes on. */
	}
}

/* CLIENT: the DN of the client's certificate; NULL if it has none we
 * can read. */
static char *peer_dn(struct tls_session *s)
{
	const gnutls_datum_t *certs;
	unsigned int n = 0;
	gnutls_x509_crt_t crt;
	size_t size = 0;
	char *dn = NULL;

	if (gnutls_certificate_type_get(s->s) != GNUTLS_CRT_X509)
		return NULL;
	certs = gnutls_certificate_get_peers(s->s, &n);
	if (!certs || n == 0 || gnutls_x509_crt_init(&crt) < 0)
		return NULL;
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
	    gnutls_x509_crt_get_dn(crt, NULL, &size) == GNUTLS_E_SHORT_MEMORY_BUFFER &&
	    size < 65536) {
		dn = g_malloc0(size + 1);
		if (gnutls_x509_crt_get_dn(crt, dn, &size) < 0) {
			g_free(dn);
			dn = NULL;
		}
	}
	gnutls_x509_crt_deinit(crt);
	return dn;
}

int tls_session_check_client(struct tls_session *s, const char *who)
{
	struct tls_context *ctx = s->ctx;
	unsigned int status = 0;
	g_autofree char *dn = NULL;
	gnutls_datum_t text = { 0 };
	int rc;

	/* CLIENT: the certificate chain: signed by our CA, in its validity
	 * period, not revoked. */
	rc = gnutls_certificate_verify_peers2(s->s, &status);
	if (rc < 0 || status) {
		if (rc < 0)
			text.data = (unsigned char *)gnutls_strerror(rc);
		else
			gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
		if (ctx->no_verify) {
			pr_info("%s: client certificate not valid (%s); allowed: tls_no_verify_certificate is set",
				who, text.data ? (char *)text.data : "?");
			if (rc >= 0)
				gnutls_free(text.data);
			return 0;
		}
		pr_warn("%s: refused: the client's certificate is not valid: %s", who,
			text.data ? (char *)text.data : "?");
		if (rc >= 0)
			gnutls_free(text.data);
		return -1;
	}
	if (ctx->no_verify)
		return 0;
	dn = peer_dn(s);
	if (!dn) {
		pr_warn("%s: refused: no x509 certificate with a readable Distinguished Name", who);
		return -1;
	}
	if (ctx->allowed_dn) {
		for (char **p = ctx->allowed_dn; *p; p++)
			if (g_pattern_match_simple(*p, dn)) {
				pr_info("%s: x509 Distinguished Name '%s' allowed", who, dn);
				return 0;
			}
		pr_warn("%s: refused: Client's x509 Distinguished Name is not on the list of allowed clients (tls_allowed_dn_list): '%s'",
			who, dn);
		return -1;
	}
	pr_info("%s: x509 Distinguished Name '%s' (tls_allowed_dn_list not set: any)", who, dn);
	return 0;
}

static ssize_t tls_result(struct tls_session *s, ssize_t rc)
{
	if (rc >= 0)
		return rc;
	if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
		errno = EAGAIN;
		return -1;
	}
	pr_debug("TLS: %s", gnutls_strerror((int)rc));
	/* A peer that closed without close_notify has simply gone. */
	errno = rc == GNUTLS_E_PREMATURE_TERMINATION ? ECONNRESET :
		rc == GNUTLS_E_TIMEDOUT ? ETIMEDOUT : EIO;
	(void)s;
	return -1;
}

ssize_t tls_session_recv(struct tls_session *s, void *buf, size_t len)
{
	ssize_t rc;

	do
		rc = gnutls_record_recv(s->s, buf, len);
	while (rc == GNUTLS_E_REHANDSHAKE || rc == GNUTLS_E_WARNING_ALERT_RECEIVED);
	if (rc < 0)
		s->rc[TLS_OP_RECV] = (int)rc;
	return tls_result(s, rc);
}

ssize_t tls_session_send(struct tls_session *s, const void *buf, size_t len)
{
	ssize_t rc = gnutls_record_send(s->s, buf, len);

	if (rc < 0)
		s->rc[TLS_OP_SEND] = (int)rc;
	return tls_result(s, rc);
}

bool tls_session_pending(struct tls_session *s)
{
	return gnutls_record_check_pending(s->s) > 0;
}

struct tls_context *tls_context_new_peer(const char *ca, const char *crl, const char *cert,
					 const char *key, bool server, bool verify_peer,
					 char **err)
{
	struct tls_context *ctx = g_new0(struct tls_context, 1);
	const char *role = server ? "server" : "client";
	int rc;

	ctx->peer = true;
	ctx->server = server;
	ctx->verify_peer = verify_peer;
	rc = gnutls_certificate_allocate_credentials(&ctx->cred);
	if (rc < 0) {
		ctx->cred = NULL;
		*err = g_strdup_printf("cannot allocate TLS credentials: %s", gnutls_strerror(rc));
		goto fail;
	}
	rc = gnutls_certificate_set_x509_trust_file(ctx->cred, ca, GNUTLS_X509_FMT_PEM);
	if (rc <= 0) {
		*err = g_strdup_printf("Unable to set x509 CA certificate: %s: %s", ca,
				       rc < 0 ? gnutls_strerror(rc) : "no certificate in it");
		goto fail;
	}
	if (crl && (rc = gnutls_certificate_set_x509_crl_file(ctx->cred, crl,
							       GNUTLS_X509_FMT_PEM)) < 0) {
		*err = g_strdup_printf("Unable to set x509 certificate revocation list: %s: %s", crl,
				       gnutls_strerror(rc));
		goto fail;
	}
	rc = gnutls_certificate_set_x509_key_file(ctx->cred, cert, key, GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		*err = g_strdup_printf("Unable to set x509 %s certificate %s with key %s: %s", role,
				       cert, key, gnutls_strerror(rc));
		goto fail;
	}
	return ctx;
fail:
	tls_context_free(ctx);
	return NULL;
}

struct tls_session *tls_session_new_peer(struct tls_context *ctx, int fd, const char *host,
					 char **err)
{
	struct tls_session *s = g_new0(struct tls_session, 1);
	int rc;

	s->ctx = ctx;
	rc = gnutls_init(&s->s, ctx->server ? GNUTLS_SERVER : GNUTLS_CLIENT);
	if (rc < 0) {
		*err = g_strdup_printf("cannot start a TLS session: %s", gnutls_strerror(rc));
		g_free(s);
		return NULL;
	}
	if ((rc = gnutls_set_default_priority(s->s)) < 0 ||
	    (rc = gnutls_credentials_set(s->s, GNUTLS_CRD_CERTIFICATE, ctx->cred)) < 0) {
		*err = g_strdup_printf("cannot set up a TLS session: %s", gnutls_strerror(rc));
		tls_session_free(s);
		return NULL;
	}
	if (!ctx->server) {
		/* The server always proves who it is: signed by the CA,
		 * for the host the client asked for. */
		gnutls_session_set_verify_cert(s->s, host, 0);
	} else if (ctx->verify_peer) {
		gnutls_certificate_server_set_request(s->s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(s->s, NULL, 0);
	}
	gnutls_transport_set_int(s->s, fd);
	return s;
}

int tls_session_handshake_wait(struct tls_session *s, int timeout_ms)
{
	int rc;

	gnutls_handshake_set_timeout(s->s, timeout_ms);
	/* Warning alerts and interruptions: it goes on. */
	do
		rc = gnutls_handshake(s->s);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0) {
		s->rc[TLS_OP_HANDSHAKE] = rc;
		return -1;
	}
	return 0;
}

void tls_session_set_timeout(struct tls_session *s, int ms)
{
	gnutls_record_set_timeout(s->s, ms);
}

void tls_session_bye(struct tls_session *s)
{
	gnutls_bye(s->s, GNUTLS_SHUT_WR);
}

const char *tls_session_protocol(struct tls_session *s)
{
	return gnutls_protocol_get_name(gnutls_protocol_get_version(s->s));
}

char *tls_session_error(struct tls_session *s, enum tls_op op, enum tls_failure *kind)
{
	int rc = s->rc[op];

	if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		unsigned status = gnutls_session_get_verify_cert_status(s->s);
		gnutls_datum_t text = { 0 };
		char *why;

		gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
		why = g_strdup(text.data ? (char *)text.data : "certificate not valid");
		gnutls_free(text.data);
		*kind = TLS_FAIL_UNVERIFIED;
		return why;
	}
	if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		*kind = TLS_FAIL_REFUSED;
		return g_strdup(gnutls_alert_get_name(gnutls_alert_get(s->s)));
	}
	*kind = rc == GNUTLS_E_TIMEDOUT ? TLS_FAIL_TIMEOUT :
		rc == GNUTLS_E_PREMATURE_TERMINATION ? TLS_FAIL_CUT : TLS_FAIL_OTHER;
	return g_strdup(gnutls_strerror(rc));
}
