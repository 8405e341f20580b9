// SPDX-License-Identifier: MIT
/* The KVMMTEST record lines the host-side tests parse. */
#include "guest.h"
#include "bootparam.h"

#define PREFIX "KVMMTEST "

int checks_passed, checks_failed;

/* Long enough for "info cmdline=" plus a full command line. */
static char line[CMDLINE_MAX + 512];

/*
 * "KVMMTEST [kind] [check] [formatted]\r\n", one write per record: CRLF,
 * as Linux's serial console ends lines, so a terminal shows each record
 * from column 0.
 */
static void emit(const char *kind, const char *check, const char *fmt,
		 va_list ap)
{
	size_t n = snprintf(line, sizeof(line), PREFIX);

	if (kind)
		n += snprintf(line + n, sizeof(line) - n, "%s ", kind);
	if (check)
		n += snprintf(line + n, sizeof(line) - n, "%s ", check);
	if (fmt && n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (n > sizeof(line) - 3)
		n = sizeof(line) - 3;
	/* Drop the separator left when there was nothing after it. */
	if (line[n - 1] == ' ')
		n--;
	line[n++] = '\r';
	line[n++] = '\n';
	serial_write(line, n);
}

void record(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(NULL, NULL, fmt, ap);
	va_end(ap);
}

void info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("info", NULL, fmt, ap);
	va_end(ap);
}

void pass(const char *check, const char *fmt, ...)
{
	va_list ap;

	checks_passed++;
	va_start(ap, fmt);
	emit("pass", check, fmt, ap);
	va_end(ap);
}

void fail(const char *check, const char *fmt, ...)
{
	va_list ap;

	checks_failed++;
	va_start(ap, fmt);
	emit("fail", check, fmt, ap);
	va_end(ap);
}

void report_done(void)
{
	record("done pass=%d fail=%d", checks_passed, checks_failed);
}

/* Free-form output (the shell); no prefix, no newline added. */
void kprintf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	serial_write(line, n);
}
