/* TLS for the RPC server's TCP listener (kvmm+tls://HOST/system): the
 * only file that speaks gnutls.  x509 credentials as libvirt's daemons
 * load them, a non-blocking handshake stepped from the main loop, the
 * client certificate checked against the CA (and CRL) and its
 * Distinguished Name against tls_allowed_dn_list, then records in both
 * directions.  Errors are logged here; callers only see -1. */
#ifndef KVMM_RPC_TLS_H
#define KVMM_RPC_TLS_H

#include <stdbool.h>
#include <sys/types.h>

struct tls_config {
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	const char *crl_file;		/* NULL or "": no revocation list */
	bool no_verify;			/* tls_no_verify_certificate: any client */
	char **allowed_dn;		/* glob patterns; NULL: any DN, empty: none */
	const char *priority;		/* gnutls priority string; NULL: "NORMAL" */
};

struct tls_context;
struct tls_session;

/* Loads the credentials; NULL after logging what is wrong (a missing
 * file, a key that is not the certificate's, a bad priority string). */
struct tls_context *tls_context_new(const struct tls_config *cfg);
void tls_context_free(struct tls_context *ctx);

/* A server session on the connected, non-blocking socket fd (not
 * owned).  NULL after logging. */
struct tls_session *tls_session_new(struct tls_context *ctx, int fd);
void tls_session_free(struct tls_session *s);

/* One step of the handshake: 1 done, 0 call again when the socket is
 * readable (or writable if *want_write), -1 failed (logged, naming
 * who). */
int tls_session_handshake(struct tls_session *s, bool *want_write, const char *who);

/* After the handshake: 0 if the client may use the daemon (a valid
 * certificate from the CA whose DN is allowed, or no_verify), -1 if
 * not (logged, with the DN). */
int tls_session_check_client(struct tls_session *s, const char *who);

/* As recv(2)/send(2) on a non-blocking socket: bytes moved, 0 at the
 * peer's end (recv), -1 with errno (EAGAIN: try again when the socket is
 * ready, as tls_session_wants_write says). */
ssize_t tls_session_recv(struct tls_session *s, void *buf, size_t len);
ssize_t tls_session_send(struct tls_session *s, const void *buf, size_t len);

/* Decrypted bytes wait in the session: the socket will not signal them. */
bool tls_session_pending(struct tls_session *s);

#endif
