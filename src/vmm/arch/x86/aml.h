/* Tiny AML byte-code emitter, just enough for kvmm's DSDT: names, scopes,
 * devices, packages, integers, strings, EISA IDs, raw buffers, and the few
 * statements the PCI and CPU hotplug methods need (Method, If, Else,
 * While, Break, Return, Store, And, LEqual, Notify, OperationRegion and
 * Field; a method is called by its name followed by its arguments).
 *
 * Nested objects (Scope, Device, Package) are opened with *_begin() and
 * closed with aml_end(); the PkgLength is only known at close time, so the
 * body is shifted to make room for the minimal encoding.  Errors are sticky:
 * after the first failure every call is a no-op and aml_finish() reports it,
 * so callers need not check each step. */
#ifndef KVMM_AML_H
#define KVMM_AML_H

#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 8

struct aml {
	uint8_t *buf;
	size_t cap;
	size_t len;
	int err;			/* first error, negative errno */
	int depth;
	size_t open[AML_MAX_DEPTH];	/* body start of each open object */
};

void aml_init(struct aml *a, void *buf, size_t cap);
/* Returns the number of bytes emitted, or the first error (-ENOSPC when
 * the buffer is too small, -EINVAL on a bad name or unbalanced nesting). */
int64_t aml_finish(struct aml *a);

void aml_bytes(struct aml *a, const void *p, size_t n);
/* "\_SB_.COM1", "_S5", "C00A": optional root prefix, dot-separated
 * segments of up to 4 characters (padded with '_'). */
void aml_namestring(struct aml *a, const char *path);
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* "PNP0501" -> the compressed 32-bit EISA ID integer. */
void aml_eisaid(struct aml *a, const char *id);
/* Buffer object with the given contents (e.g. a resource template). */
void aml_buffer(struct aml *a, const void *p, size_t n);

/* Name(path, <next emitted object>) */
void aml_name(struct aml *a, const char *path);
void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *path);
void aml_package_begin(struct aml *a, uint8_t nelems);
void aml_end(struct aml *a);

/* Method(path, nargs, NotSerialized) { ... aml_end() } */
void aml_method_begin(struct aml *a, const char *path, unsigned int nargs);
/* If (<next emitted term>) { ... aml_end() } */
void aml_if_begin(struct aml *a);
/* Else { ... aml_end() }, right after an If's aml_end() */
void aml_else_begin(struct aml *a);
/* While (<next emitted term>) { ... aml_end() } */
void aml_while_begin(struct aml *a);
void aml_break(struct aml *a);
/* Return (<next emitted term>) */
void aml_return(struct aml *a);
/* LEqual(<a>, <b>): the two terms emitted next. */
void aml_lequal(struct aml *a);
/* LocalN, 0..7. */
void aml_local(struct aml *a, unsigned int n);
/* Store(<src>, <dst>): the two terms emitted next. */
void aml_store(struct aml *a);
/* And(<a>, <b>, <target>): the three terms emitted next; as a value,
 * the target is aml_null_target(). */
void aml_and(struct aml *a);
void aml_null_target(struct aml *a);
/* Notify(<object>, <value>): the two terms emitted next. */
void aml_notify(struct aml *a);
/* ArgN, 0..6. */
void aml_arg(struct aml *a, unsigned int n);

#define AML_SPACE_SYSTEM_IO	1
/* OperationRegion(path, space, offset, len) */
void aml_operation_region(struct aml *a, const char *path, uint8_t space,
			  uint64_t offset, uint64_t len);
/* Field flags: access type in bits 3:0, lock rule in bit 4, update rule
 * in bits 6:5. */
#define AML_FIELD_BYTE_ACC	1
#define AML_FIELD_DWORD_ACC	3
#define AML_FIELD_WRITE_ZEROS	(2 << 5)
/* Field(region, flags) { names[i], bits[i] ... }: n named fields. */
void aml_field(struct aml *a, const char *region, uint8_t flags,
	       const char *const *names, const unsigned int *bits, unsigned int n);

#endif
