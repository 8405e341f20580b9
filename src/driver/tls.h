/* TLS in virtkvmmd: the only file that speaks gnutls.  Two uses:
 *
 * The RPC server's TCP listener (kvmm+tls://HOST/system): x509
 * credentials as libvirt's daemons load them, a non-blocking handshake
 * stepped from the main loop, the client certificate checked against the
 * CA (and CRL) and its Distinguished Name against tls_allowed_dn_list,
 * then records in both directions.  Errors are logged here; callers only
 * see -1.
 *
 * The migration stream (migrate_tls.h): peer sessions on a blocking
 * socket, client or server, whose handshake checks the peer's
 * certificate (a client always, with the server's host name; a server if
 * asked to), bounded in time.  Errors come back as strings for the
 * caller's libvirt-style report. */
#ifndef KVMM_DRV_TLS_H
#define KVMM_DRV_TLS_H

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
 * ready). */
ssize_t tls_session_recv(struct tls_session *s, void *buf, size_t len);
ssize_t tls_session_send(struct tls_session *s, const void *buf, size_t len);

/* Decrypted bytes wait in the session: the socket will not signal them. */
bool tls_session_pending(struct tls_session *s);

/* Peer sessions (the migration stream).  x509 credentials from CA, CRL
 * (NULL: none), CERT and KEY, wording failures as libvirt does; ROLE
 * ("server" or "client") names the pair in them.  SERVER: the sessions
 * are servers, which require and check the client's certificate if
 * VERIFY_PEER.  NULL with *err (a new string) if they do not load. */
struct tls_context *tls_context_new_peer(const char *ca, const char *crl, const char *cert,
					 const char *key, bool server, bool verify_peer,
					 char **err);

/* A blocking session on the blocking socket FD (not owned); a client
 * session checks the server's certificate for HOST.  NULL with *err. */
struct tls_session *tls_session_new_peer(struct tls_context *ctx, int fd, const char *host,
					 char **err);

/* The whole handshake, given up after TIMEOUT_MS: 0, or -1 (see
 * tls_session_error(s, TLS_OP_HANDSHAKE, ...)). */
int tls_session_handshake_wait(struct tls_session *s, int timeout_ms);

/* Later recv/send give up (errno ETIMEDOUT) after MS without progress;
 * 0: never. */
void tls_session_set_timeout(struct tls_session *s, int ms);

/* close_notify: the peer reads the end of our direction. */
void tls_session_bye(struct tls_session *s);

/* "TLS1.3" and the like. */
const char *tls_session_protocol(struct tls_session *s);

enum tls_op { TLS_OP_HANDSHAKE, TLS_OP_RECV, TLS_OP_SEND };
enum tls_failure {
	TLS_FAIL_OTHER,
	TLS_FAIL_UNVERIFIED,	/* the peer's certificate is not valid */
	TLS_FAIL_REFUSED,	/* the peer sent a fatal alert */
	TLS_FAIL_TIMEOUT,
	TLS_FAIL_CUT,		/* the connection ended without close_notify */
};

/* Why the last OP on S failed: its kind and words (a new string: the
 * certificate's faults, the alert's name, else gnutls's message).  Each
 * OP's failure is kept apart, so one thread may recv while another
 * sends. */
char *tls_session_error(struct tls_session *s, enum tls_op op, enum tls_failure *kind);

#endif
