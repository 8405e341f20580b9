#include <stdarg.h>
#include <stdio.h>

#include "error.h"

static __thread struct drv_error last_error;

void drv_error_report_full(int domain, int code, const char *fmt, ...)
{
	va_list ap;

	if (last_error.code != VIR_ERR_OK)
		return;
	last_error.code = code;
	last_error.domain = domain;
	va_start(ap, fmt);
	vsnprintf(last_error.message, sizeof(last_error.message), fmt, ap);
	va_end(ap);
}

const struct drv_error *drv_error_last(void)
{
	return last_error.code == VIR_ERR_OK ? NULL : &last_error;
}

void drv_error_reset(void)
{
	last_error.code = VIR_ERR_OK;
	last_error.message[0] = '\0';
}
