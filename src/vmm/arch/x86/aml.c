/* Tiny AML emitter; see aml.h.  Encodings from the ACPI spec, chapter 20
 * ("ACPI Machine Language Specification"). */
#include <errno.h>
#include <string.h>

#include "aml.h"

#define AML_ZERO_OP	0x00
#define AML_ONE_OP	0x01
#define AML_NAME_OP	0x08
#define AML_BYTE_PREFIX	0x0A
#define AML_WORD_PREFIX	0x0B
#define AML_DWORD_PREFIX 0x0C
#define AML_STRING_PREFIX 0x0D
#define AML_QWORD_PREFIX 0x0E
#define AML_SCOPE_OP	0x10
#define AML_BUFFER_OP	0x11
#define AML_PACKAGE_OP	0x12
#define AML_METHOD_OP	0x14
#define AML_DUAL_NAME	0x2E
#define AML_MULTI_NAME	0x2F
#define AML_EXT_PREFIX	0x5B
#define AML_OPREGION_OP	0x80	/* after AML_EXT_PREFIX */
#define AML_FIELD_OP	0x81	/* after AML_EXT_PREFIX */
#define AML_DEVICE_OP	0x82	/* after AML_EXT_PREFIX */
#define AML_ARG0_OP	0x68
#define AML_STORE_OP	0x70
#define AML_AND_OP	0x7B
#define AML_NOTIFY_OP	0x86
#define AML_IF_OP	0xA0
#define AML_ELSE_OP	0xA1
#define AML_WHILE_OP	0xA2
#define AML_RETURN_OP	0xA4
#define AML_BREAK_OP	0xA5
#define AML_LEQUAL_OP	0x93
#define AML_LOCAL0_OP	0x60
#define AML_NULL_NAME	0x00
#define AML_ROOT_CHAR	'\\'

#define AML_MAX_SEGS	16

void aml_init(struct aml *a, void *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->buf = buf;
	a->cap = cap;
}

static void aml_fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

int64_t aml_finish(struct aml *a)
{
	if (!a->err && a->depth)
		aml_fail(a, -EINVAL);
	return a->err ? a->err : (int64_t)a->len;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		aml_fail(a, -ENOSPC);
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned int n)
{
	uint8_t b[8];
	unsigned int i;

	for (i = 0; i < n; i++)
		b[i] = v >> (8 * i);
	aml_bytes(a, b, n);
}

static int lead_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static int name_char_ok(char c)
{
	return lead_char_ok(c) || (c >= '0' && c <= '9');
}

/* Emits one NameSeg from s[0..n), padded to 4 with '_'. */
static void aml_nameseg(struct aml *a, const char *s, size_t n)
{
	char seg[4] = { '_', '_', '_', '_' };
	size_t i;

	if (n == 0 || n > 4 || !lead_char_ok(s[0])) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (i = 0; i < n; i++) {
		if (!name_char_ok(s[i])) {
			aml_fail(a, -EINVAL);
			return;
		}
		seg[i] = s[i];
	}
	aml_bytes(a, seg, 4);
}

void aml_namestring(struct aml *a, const char *path)
{
	const char *seg[AML_MAX_SEGS];
	size_t seglen[AML_MAX_SEGS];
	unsigned int nseg = 0, i;
	const char *p;

	if (*path == AML_ROOT_CHAR)
		aml_byte(a, *path++);
	for (p = path; ; p++) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		if (nseg == AML_MAX_SEGS) {
			aml_fail(a, -EINVAL);
			return;
		}
		seg[nseg] = p;
		seglen[nseg++] = n;
		if (!dot)
			break;
		p = dot;
	}
	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, nseg);
	}
	for (i = 0; i < nseg; i++)
		aml_nameseg(a, seg[i], seglen[i]);
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xFF) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= 0xFFFF) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= 0xFFFFFFFF) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	const char *p;

	/* AML strings are ASCII 0x01..0x7F, NUL-terminated. */
	for (p = s; *p; p++) {
		if ((unsigned char)*p > 0x7F) {
			aml_fail(a, -EINVAL);
			return;
		}
	}
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Three letters packed 5 bits each, then the 16-bit product number, all
 * big-endian in memory; emitted as a DWord so it reads like a ROM ID. */
void aml_eisaid(struct aml *a, const char *id)
{
	uint8_t b[4];
	uint16_t vendor = 0;
	int i, h[4];

	if (strlen(id) != 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			aml_fail(a, -EINVAL);
			return;
		}
		vendor = (vendor << 5) | (id[i] - 'A' + 1);
	}
	for (i = 0; i < 4; i++) {
		h[i] = hexval(id[3 + i]);
		if (h[i] < 0) {
			aml_fail(a, -EINVAL);
			return;
		}
	}
	b[0] = vendor >> 8;
	b[1] = vendor;
	b[2] = h[0] << 4 | h[1];
	b[3] = h[2] << 4 | h[3];
	aml_integer(a, b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24);
}

static void aml_open(struct aml *a)
{
	if (a->err)
		return;
	if (a->depth == AML_MAX_DEPTH) {
		aml_fail(a, -EINVAL);
		return;
	}
	a->open[a->depth++] = a->len;
}

/* PkgLength counts itself, so its size depends on the value it encodes. */
static unsigned int pkglen_size(size_t body)
{
	if (body + 1 < (1u << 6))
		return 1;
	if (body + 2 < (1u << 12))
		return 2;
	if (body + 3 < (1u << 20))
		return 3;
	if (body + 4 < (1u << 28))
		return 4;
	return 0;
}

void aml_end(struct aml *a)
{
	size_t start, body, total;
	unsigned int k, i;

	if (a->err)
		return;
	if (!a->depth) {
		aml_fail(a, -EINVAL);
		return;
	}
	start = a->open[--a->depth];
	body = a->len - start;
	k = pkglen_size(body);
	if (!k || k > a->cap - a->len) {
		aml_fail(a, -ENOSPC);
		return;
	}
	memmove(a->buf + start + k, a->buf + start, body);
	a->len += k;
	total = body + k;
	if (k == 1) {
		a->buf[start] = total;
		return;
	}
	/* Lead byte: count of extra bytes in bits 7:6, low nibble in 3:0. */
	a->buf[start] = (k - 1) << 6 | (total & 0xF);
	for (i = 1; i < k; i++)
		a->buf[start + i] = total >> (4 + 8 * (i - 1));
}

void aml_buffer(struct aml *a, const void *p, size_t n)
{
	aml_byte(a, AML_BUFFER_OP);
	aml_open(a);
	aml_integer(a, n);
	aml_bytes(a, p, n);
	aml_end(a);
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

void aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE_OP);
	aml_open(a);
	aml_namestring(a, path);
}

void aml_device_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	aml_open(a);
	aml_namestring(a, path);
}

void aml_package_begin(struct aml *a, uint8_t nelems)
{
	aml_byte(a, AML_PACKAGE_OP);
	aml_open(a);
	aml_byte(a, nelems);
}

void aml_method_begin(struct aml *a, const char *path, unsigned int nargs)
{
	if (nargs > 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_byte(a, AML_METHOD_OP);
	aml_open(a);
	aml_namestring(a, path);
	aml_byte(a, nargs);	/* NotSerialized, SyncLevel 0 */
}

void aml_if_begin(struct aml *a)
{
	aml_byte(a, AML_IF_OP);
	aml_open(a);
}

void aml_else_begin(struct aml *a)
{
	aml_byte(a, AML_ELSE_OP);
	aml_open(a);
}

void aml_while_begin(struct aml *a)
{
	aml_byte(a, AML_WHILE_OP);
	aml_open(a);
}

void aml_break(struct aml *a)
{
	aml_byte(a, AML_BREAK_OP);
}

void aml_return(struct aml *a)
{
	aml_byte(a, AML_RETURN_OP);
}

void aml_lequal(struct aml *a)
{
	aml_byte(a, AML_LEQUAL_OP);
}

void aml_local(struct aml *a, unsigned int n)
{
	if (n > 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_byte(a, AML_LOCAL0_OP + n);
}

void aml_store(struct aml *a)
{
	aml_byte(a, AML_STORE_OP);
}

void aml_and(struct aml *a)
{
	aml_byte(a, AML_AND_OP);
}

void aml_notify(struct aml *a)
{
	aml_byte(a, AML_NOTIFY_OP);
}

void aml_arg(struct aml *a, unsigned int n)
{
	if (n > 6) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_byte(a, AML_ARG0_OP + n);
}

void aml_null_target(struct aml *a)
{
	aml_byte(a, AML_NULL_NAME);
}

void aml_operation_region(struct aml *a, const char *path, uint8_t space,
			  uint64_t offset, uint64_t len)
{
	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_OPREGION_OP);
	aml_namestring(a, path);
	aml_byte(a, space);
	aml_integer(a, offset);
	aml_integer(a, len);
}

void aml_field(struct aml *a, const char *region, uint8_t flags,
	       const char *const *names, const unsigned int *bits, unsigned int n)
{
	unsigned int i;

	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_FIELD_OP);
	aml_open(a);
	aml_namestring(a, region);
	aml_byte(a, flags);
	for (i = 0; i < n; i++) {
		/* NamedField: a NameSeg, then the width as a PkgLength
		 * that does not count itself (widths here fit in one byte:
		 * below 64 bits). */
		if (bits[i] == 0 || bits[i] >= 64 || strchr(names[i], '.')) {
			aml_fail(a, -EINVAL);
			return;
		}
		aml_nameseg(a, names[i], strlen(names[i]));
		aml_byte(a, bits[i]);
	}
	aml_end(a);
}
