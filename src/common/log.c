#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *log_prog = "kvmm";
static enum log_level log_level = LOG_WARN;

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_level = level;
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const tag[] = { "error: ", "warning: ", "", "debug: " };
	char buf[1024];
	va_list ap;
	int n;

	if (level > log_level)
		return;
	n = snprintf(buf, sizeof(buf), "%s: %s", log_prog, tag[level]);
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	n = strlen(buf);
	/* One write per line, so lines from vCPU threads do not interleave,
	 * and "\r\n" because stderr may share a terminal in raw mode. */
	buf[n++] = '\n';
	if (n > 1 && buf[n - 2] != '\r' && isatty(STDERR_FILENO)) {
		buf[n - 1] = '\r';
		buf[n++] = '\n';
	}
	if (write(STDERR_FILENO, buf, n) < 0)
		return;
}
