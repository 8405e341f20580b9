/* Unit tests of the SMBIOS tables (arch/x86/smbios.c) against DMTF
 * DSP0134 3.x: entry points (anchors, lengths, checksums, what they point
 * at), every structure's type, length, handle and strings, the UUID's byte
 * order, the bounds.  tests/vmm/test_smbios.py has dmidecode read them. */
#include <errno.h>
#include <stdint.h>

#include <json-c/json.h>

#include "unit.h"
#include "arch/x86/layout.h"
#include "arch/x86/smbios.h"

#define BASE X86_SMBIOS_ADDR
#define SIZE X86_SMBIOS_SIZE
#define GUARD 256

static uint8_t mem[SIZE + GUARD];

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

static uint8_t sum8(const uint8_t *p, uint64_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* A configuration the way kvmm reads it. */
static struct vm_config cfg_of(const char *json)
{
	struct vm_config c;
	char err[256] = "";
	char doc[8192];
	json_object *o;

	snprintf(doc, sizeof(doc), "{\"kernel\": \"/k\", \"smbios\": %s}", json);
	o = json_tokener_parse(doc);
	CHECK(o != NULL);
	CHECK_EQ_U64(config_from_json(o, &c, err, sizeof(err)), 0);
	if (*err)
		printf("  config: %s\n", err);
	json_object_put(o);
	return c;
}

#define NOVA "{\"system\": {\"manufacturer\": \"OpenStack Foundation\", " \
	"\"product\": \"OpenStack Nova\", \"version\": \"26.2.1\", " \
	"\"serial\": \"3f0e7c52-8a4d-4b6e-9f21-5d7c0a9e1b34\", \"family\": \"Virtual Machine\", " \
	"\"uuid\": \"3f0e7c52-8a4d-4b6e-9f21-5d7c0a9e1b34\"}}"

#define ALL "{\"bios\": {\"vendor\": \"V\", \"version\": \"1.0\", \"date\": \"03/05/2024\", \"release\": \"1.2\"}, " \
	"\"system\": {\"manufacturer\": \"M\", \"product\": \"P\", \"sku\": \"S\"}, " \
	"\"baseboard\": {\"manufacturer\": \"BM\", \"product\": \"BP\", \"version\": \"BV\", " \
	"\"serial\": \"BS\", \"asset\": \"BA\", \"location\": \"BL\"}, " \
	"\"chassis\": {\"manufacturer\": \"CM\", \"version\": \"CV\", \"serial\": \"CS\", " \
	"\"asset\": \"CA\", \"sku\": \"CK\"}, \"oem_strings\": [\"one\", \"two\", \"three\"]}"

struct found {
	const uint8_t *s[128];	/* the first structure of each type */
	const char *strings[128][40];
	unsigned int nstrings[128];
	unsigned int count;
	uint64_t largest;
};

/* Walks the table the 3.0 entry point names, checking the framing of
 * each structure (6.1.2, 6.1.3). */
static struct found walk(int64_t used)
{
	struct found f;
	const uint8_t *ep = mem + SMBIOS3_EP_OFF;
	uint64_t addr = le(ep + 0x10, 8), len = le(ep + 0x0C, 4), off;

	memset(&f, 0, sizeof(f));
	CHECK_EQ_U64(addr, BASE + SMBIOS_TABLE_OFF);
	CHECK_EQ_U64(len, (uint64_t)used - SMBIOS_TABLE_OFF);
	off = addr - BASE;
	while (off < (uint64_t)used) {
		const uint8_t *s = mem + off;
		uint8_t type = s[0];
		uint64_t p = off + s[1];
		unsigned int n = 0;

		CHECK(s[1] >= 4);
		CHECK_EQ_U64(le(s + 2, 2), (uint64_t)type << 8);	/* handles unique by type */
		CHECK(f.s[type] == NULL);
		f.s[type] = s;
		if (!mem[p]) {
			CHECK_EQ_U64(mem[p + 1], 0);		/* no strings: two NULs */
			p += 2;
		} else {
			while (mem[p]) {
				if (n < 40)
					f.strings[type][n] = (const char *)mem + p;
				n++;
				p += strlen((const char *)mem + p) + 1;
			}
			p++;
		}
		f.nstrings[type] = n;
		f.count++;
		if (p - off > f.largest)
			f.largest = p - off;
		off = p;
		if (type == 127)
			break;
	}
	CHECK_EQ_U64(off, (uint64_t)used);	/* type 127 is last */
	return f;
}

/* String number FIELD of structure TYPE, or NULL for none (0). */
static const char *str(const struct found *f, int type, unsigned int field)
{
	unsigned int i = f->s[type][field];

	if (!i)
		return NULL;
	CHECK(i <= f->nstrings[type]);
	return i <= f->nstrings[type] ? f->strings[type][i - 1] : "(bad index)";
}

static int64_t build(const struct vm_config *c)
{
	memset(mem, 0xA5, sizeof(mem));
	return smbios_build(&c->smbios, mem, BASE, SIZE);
}

UNIT_TEST(entry_points_follow_the_spec)
{
	struct vm_config c = cfg_of(NOVA);
	int64_t used = build(&c);
	const uint8_t *e3 = mem + SMBIOS3_EP_OFF, *e2 = mem + SMBIOS2_EP_OFF;
	struct found f;

	CHECK(used > SMBIOS_TABLE_OFF && used < (int64_t)SIZE);
	f = walk(used);
	/* 5.2.2: the 64-bit entry point */
	CHECK(!memcmp(e3, "_SM3_", 5));
	CHECK_EQ_U64(e3[0x06], 0x18);
	CHECK_EQ_U64(sum8(e3, 0x18), 0);
	CHECK_EQ_U64(e3[0x07], 3);
	CHECK_EQ_U64(e3[0x0A], 1);
	/* 5.2.1: the 32-bit one, and its intermediate anchor */
	CHECK(!memcmp(e2, "_SM_", 4));
	CHECK_EQ_U64(e2[0x05], 0x1F);
	CHECK_EQ_U64(sum8(e2, 0x1F), 0);
	CHECK(!memcmp(e2 + 0x10, "_DMI_", 5));
	CHECK_EQ_U64(sum8(e2 + 0x10, 0x0F), 0);
	CHECK_EQ_U64((uint64_t)e2[0x06] << 8 | e2[0x07], 0x0208);
	CHECK_EQ_U64(e2[0x1E], 0x28);
	CHECK_EQ_U64(le(e2 + 0x16, 2), (uint64_t)used - SMBIOS_TABLE_OFF);
	CHECK_EQ_U64(le(e2 + 0x18, 4), BASE + SMBIOS_TABLE_OFF);
	CHECK_EQ_U64(le(e2 + 0x1C, 2), f.count);
	CHECK_EQ_U64(le(e2 + 0x08, 2), f.largest);
	/* Linux's dmi_scan looks on 16-byte boundaries of 0xF0000-0xFFFFF. */
	CHECK(BASE >= 0xF0000 && BASE + SMBIOS2_EP_OFF + 0x1F <= 0x100000);
	CHECK_EQ_U64((BASE + SMBIOS3_EP_OFF) % 16, 0);
	CHECK_EQ_U64((BASE + SMBIOS2_EP_OFF) % 16, 0);
	for (uint64_t i = used; i < SIZE + GUARD; i++)
		if (mem[i] != 0xA5) {
			CHECK(!"wrote past the tables");
			break;
		}
	config_free(&c);
}

UNIT_TEST(nova_system_information)
{
	struct vm_config c = cfg_of(NOVA);
	struct found f = walk(build(&c));
	static const uint8_t uuid_le[16] = {
		0x52, 0x7c, 0x0e, 0x3f, 0x4d, 0x8a, 0x6e, 0x4b,
		0x9f, 0x21, 0x5d, 0x7c, 0x0a, 0x9e, 0x1b, 0x34 };
	const uint8_t *t1 = f.s[1];

	CHECK(t1 != NULL);
	if (!t1)
		return;
	CHECK_EQ_U64(t1[1], 0x1B);
	CHECK_STR(str(&f, 1, 0x04), "OpenStack Foundation");
	CHECK_STR(str(&f, 1, 0x05), "OpenStack Nova");
	CHECK_STR(str(&f, 1, 0x06), "26.2.1");
	CHECK_STR(str(&f, 1, 0x07), "3f0e7c52-8a4d-4b6e-9f21-5d7c0a9e1b34");
	CHECK(!memcmp(t1 + 0x08, uuid_le, 16));	/* 7.2.1: first three fields little-endian */
	CHECK_EQ_U64(t1[0x18], 0x06);
	CHECK(str(&f, 1, 0x19) == NULL);
	CHECK_STR(str(&f, 1, 0x1A), "Virtual Machine");
	/* the defaults around it: BIOS, chassis, boot, end; no baseboard or OEM strings */
	CHECK_STR(str(&f, 0, 0x04), SMBIOS_DEFAULT_VENDOR);
	CHECK_STR(str(&f, 0, 0x05), PACKAGE_VERSION);
	CHECK_EQ_U64(f.s[0][0x14], 0xFF);
	CHECK(f.s[3] && f.s[32] && f.s[127]);
	CHECK(!f.s[2] && !f.s[11]);
	CHECK_EQ_U64(f.count, 5);
	config_free(&c);
}

UNIT_TEST(every_group_and_oem_strings)
{
	struct vm_config c = cfg_of(ALL);
	struct found f = walk(build(&c));

	CHECK(f.s[0] && f.s[1] && f.s[2] && f.s[3] && f.s[11] && f.s[32] && f.s[127]);
	if (!(f.s[0] && f.s[1] && f.s[2] && f.s[3] && f.s[11]))
		return;
	/* 7.1 */
	CHECK_EQ_U64(f.s[0][1], 0x18);
	CHECK_STR(str(&f, 0, 0x04), "V");
	CHECK_STR(str(&f, 0, 0x05), "1.0");
	CHECK_STR(str(&f, 0, 0x08), "03/05/2024");
	CHECK_EQ_U64(f.s[0][0x14], 1);
	CHECK_EQ_U64(f.s[0][0x15], 2);
	CHECK_EQ_U64(f.s[0][0x13] & 0x10, 0x10);	/* a virtual machine */
	/* 7.2, without a UUID: all zero */
	for (int i = 0; i < 16; i++)
		CHECK_EQ_U64(f.s[1][0x08 + i], 0);
	CHECK_STR(str(&f, 1, 0x19), "S");
	CHECK(str(&f, 1, 0x06) == NULL);
	/* 7.3 */
	CHECK_EQ_U64(f.s[2][1], 0x0F);
	CHECK_STR(str(&f, 2, 0x04), "BM");
	CHECK_STR(str(&f, 2, 0x05), "BP");
	CHECK_STR(str(&f, 2, 0x06), "BV");
	CHECK_STR(str(&f, 2, 0x07), "BS");
	CHECK_STR(str(&f, 2, 0x08), "BA");
	CHECK_STR(str(&f, 2, 0x0A), "BL");
	CHECK_EQ_U64(le(f.s[2] + 0x0B, 2), 0x0300);	/* the chassis' handle */
	CHECK_EQ_U64(f.s[2][0x0D], 0x0A);
	/* 7.4 */
	CHECK_EQ_U64(f.s[3][1], 0x16);
	CHECK_STR(str(&f, 3, 0x04), "CM");
	CHECK_STR(str(&f, 3, 0x06), "CV");
	CHECK_STR(str(&f, 3, 0x07), "CS");
	CHECK_STR(str(&f, 3, 0x08), "CA");
	CHECK_STR(str(&f, 3, 0x15), "CK");
	/* 7.12 */
	CHECK_EQ_U64(f.s[11][1], 5);
	CHECK_EQ_U64(f.s[11][4], 3);
	CHECK_EQ_U64(f.nstrings[11], 3);
	CHECK_STR(f.strings[11][0], "one");
	CHECK_STR(f.strings[11][2], "three");
	/* 7.33 and 7.46: no strings, two NULs (walk checked) */
	CHECK_EQ_U64(f.s[32][1], 0x0B);
	CHECK_EQ_U64(f.s[127][1], 4);
	config_free(&c);
}

/* The largest configuration kvmm accepts fits the window. */
UNIT_TEST(largest_configuration_fits)
{
	char *doc = malloc(200000), *p = doc;
	char s[SMBIOS_STRING_MAX + 1];
	struct vm_config c;
	json_object *o;
	char err[256] = "";
	int64_t used;

	memset(s, 'x', SMBIOS_STRING_MAX);
	s[SMBIOS_STRING_MAX] = 0;
	p += sprintf(p, "{\"kernel\": \"/k\", \"smbios\": {");
	for (int g = 0; g < SMBIOS_GROUPS; g++) {
		p += sprintf(p, "%s\"%s\": {", g ? ", " : "", smbios_group_names[g]);
		for (int i = 0; smbios_field_names[g][i]; i++) {
			const char *v = s;
			if (!strcmp(smbios_field_names[g][i], "uuid"))
				v = "00000000-0000-0000-0000-000000000001";
			else if (!strcmp(smbios_field_names[g][i], "release"))
				v = "255.255";
			p += sprintf(p, "%s\"%s\": \"%s\"", i ? ", " : "", smbios_field_names[g][i], v);
		}
		p += sprintf(p, "}");
	}
	p += sprintf(p, ", \"oem_strings\": [");
	for (int i = 0; i < SMBIOS_MAX_OEM_STRINGS; i++)
		p += sprintf(p, "%s\"%s\"", i ? ", " : "", s);
	sprintf(p, "]}}");
	o = json_tokener_parse(doc);
	CHECK(o != NULL);
	CHECK_EQ_U64(config_from_json(o, &c, err, sizeof(err)), 0);
	used = build(&c);
	CHECK(used > 0 && used <= (int64_t)SIZE);
	walk(used);
	config_free(&c);
	json_object_put(o);
	free(doc);
}

/* Too small a window: -ENOSPC at every size below the need, and nothing
 * written past the size given. */
UNIT_TEST(enospc_writes_nothing_past_the_window)
{
	struct vm_config c = cfg_of(ALL);
	int64_t need = build(&c);

	CHECK(need > 0);
	for (int64_t size = 0; size < need; size++) {
		memset(mem, 0xA5, sizeof(mem));
		CHECK_EQ_U64(smbios_build(&c.smbios, mem, BASE, size), (uint64_t)-ENOSPC);
		for (int64_t i = size; i < size + GUARD; i++)
			if (mem[i] != 0xA5) {
				CHECK(!"wrote past size");
				size = need;
				break;
			}
	}
	config_free(&c);
}

UNIT_TEST(base_must_be_aligned_and_32_bit)
{
	struct vm_config c = cfg_of(NOVA);

	CHECK_EQ_U64(smbios_build(&c.smbios, mem, BASE + 8, SIZE), (uint64_t)-EINVAL);
	CHECK_EQ_U64(smbios_build(&c.smbios, mem, 0xFFFF0000ULL + 0x10, SIZE), (uint64_t)-EINVAL);
	config_free(&c);
}

/* What kvmm's parser refuses in "smbios", with the fix. */
static void refused(const char *json, const char *want)
{
	char doc[4096], err[256] = "";
	struct vm_config c;
	json_object *o;

	snprintf(doc, sizeof(doc), "{\"kernel\": \"/k\", \"smbios\": %s}", json);
	o = json_tokener_parse(doc);
	CHECK(o != NULL);
	CHECK_EQ_U64(config_from_json(o, &c, err, sizeof(err)), (uint64_t)-EINVAL);
	CHECK_STR(err, want);
	config_free(&c);
	json_object_put(o);
}

UNIT_TEST(bad_smbios_is_refused_with_a_fix)
{
	refused("[]", "smbios must be an object: {\"system\": {\"product\": ...}, ...}");
	refused("{\"memory\": {}}", "smbios: unknown key 'memory': use bios, system, baseboard, chassis or oem_strings");
	refused("{\"system\": {\"asset\": \"x\"}}", "smbios.system: unknown field 'asset': see schemas/vm-config.schema.json");
	refused("{\"system\": []}", "smbios.system must be an object of strings");
	refused("{\"bios\": {\"vendor\": 1}}", "smbios bios.vendor must be a string");
	refused("{\"bios\": {\"vendor\": \"\"}}", "smbios bios.vendor must be 1 to 1024 bytes without NUL");
	refused("{\"bios\": {\"release\": \"1.256\"}}", "smbios bios.release '1.256' is not valid: use MAJOR.MINOR, each 0 to 255");
	refused("{\"bios\": {\"release\": \"1\"}}", "smbios bios.release '1' is not valid: use MAJOR.MINOR, each 0 to 255");
	refused("{\"system\": {\"uuid\": \"3f0e7c52-8a4d-4b6e-9f21-5d7c0a9e1b3\"}}",
		"smbios system.uuid '3f0e7c52-8a4d-4b6e-9f21-5d7c0a9e1b3' is not a UUID: use 8-4-4-4-12 hex digits");
	refused("{\"system\": {\"uuid\": \"3f0e7c528a4d4b6e9f215d7c0a9e1b34\"}}",
		"smbios system.uuid '3f0e7c528a4d4b6e9f215d7c0a9e1b34' is not a UUID: use 8-4-4-4-12 hex digits");
	refused("{\"oem_strings\": \"x\"}", "smbios.oem_strings must be an array of strings");
	refused("{\"oem_strings\": [\"a\", 2]}", "smbios oem string must be a string");
}
