/* The live-migration stream over TLS (VIR_MIGRATE_TLS, virsh migrate
 * --tls), with qemu.conf's keys migrate_tls_x509_cert_dir,
 * migrate_tls_x509_verify and migrate_tls_force.
 *
 * kvmm knows nothing of it: the daemons terminate TLS.  On each side the
 * daemon does the handshake on the migration's TCP connection, checks
 * the peer's certificate, and relays the plaintext to and from kvmm over
 * a socketpair, whose other end kvmm takes exactly as it takes the TCP
 * socket without TLS.  Two threads per connection, one per direction.
 * The source is the TLS client (client-cert.pem, the destination's
 * certificate checked against the CA and the host name of the migration
 * URI), the destination the server (server-cert.pem; the source's
 * certificate required with migrate_tls_x509_verify = 1).  The end of the
 * stream travels as TLS close_notify, so a cut connection is never taken
 * for a complete one.  Errors are libvirt errors (error.h). */
#ifndef KVMM_DRV_MIGRATE_TLS_H
#define KVMM_DRV_MIGRATE_TLS_H

#include <stdbool.h>

/* From virtkvmmd.conf, once at start: the certificate directory (NULL:
 * libvirt's default, /etc/pki/libvirt-migrate if it exists, else
 * /etc/pki/qemu, under ROOT), whether the destination requires and
 * checks the source's certificate, whether a migration without TLS is
 * refused. */
void migtls_configure(const char *root, const char *cert_dir, bool verify, bool force);

/* -1 (reported) when migrate_tls_force refuses a migration without
 * VIR_MIGRATE_TLS. */
int migtls_check_forced(bool tls);

/* 0 if this host's credentials for its role (SERVER: the destination)
 * load, else -1 reported, naming the file. */
int migtls_check_credentials(bool server);

struct migtls;

/* TLS on the connected TCP socket FD (blocking; not taken: the caller
 * closes it after migtls_free): the handshake, bounded in time, the
 * peer's certificate checked, then the relay started.  *PLAIN is the
 * plaintext end for kvmm (the caller's to close).  NULL after reporting.
 * HOST: the name the destination's certificate must carry (client). */
struct migtls *migtls_client(int fd, const char *host, int *plain);
struct migtls *migtls_server(int fd, int *plain);

/* Waits for both directions to end: 0 when the stream ended as it
 * should (close_notify received; the destination: its kvmm read it
 * all), else -1 reported. */
int migtls_wait(struct migtls *t);

/* Why a direction failed (a new string), or NULL. */
char *migtls_failure(struct migtls *t);

/* Cuts the connection if it is still up, joins the threads, frees. */
void migtls_free(struct migtls *t);

/* Post-copy: kvmm runs the guest on the destination while pages still
 * flow both ways (the destination asks, the source sends) until kvmm's
 * post-copy ends and closes its end of the stream; the relay has to
 * outlive Perform and the destination's incoming thread.  A thread waits
 * for the stream's end, logs how it ended (NAME: the domain's), then
 * frees T and closes FD, the TCP connection. */
void migtls_release(struct migtls *t, int fd, const char *name);

#endif
