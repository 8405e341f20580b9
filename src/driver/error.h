/* libvirt-style errors on the daemon side.  An error is reported once,
 * where it happens, with libvirt's error code (virErrorNumber) and domain
 * (virErrorDomain) from <libvirt/virterror.h> and a message a person can
 * act on; the function then returns -1.  The RPC layer sends the calling
 * thread's last error to the client as a remote_error. */
#ifndef KVMM_DRV_ERROR_H
#define KVMM_DRV_ERROR_H

#include <libvirt/virterror.h>

struct drv_error {
	int code;		/* virErrorNumber, VIR_ERR_OK when none */
	int domain;		/* virErrorDomain */
	char message[1024];
};

/* Records the calling thread's error; later reports do not overwrite an
 * earlier one until drv_error_reset(), so the first cause wins. */
void drv_error_report_full(int domain, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Each file defines VIR_FROM_THIS (e.g. VIR_FROM_DOMAIN, VIR_FROM_RPC). */
#define drv_error_report(code, ...) \
	drv_error_report_full(VIR_FROM_THIS, (code), __VA_ARGS__)

const struct drv_error *drv_error_last(void);	/* NULL when none */
void drv_error_reset(void);

#endif
