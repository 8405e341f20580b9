/* Domain definition lifetime, and the identifiers the parser generates
 * (UUIDs, MAC addresses). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <glib.h>
#include <libvirt/virterror.h>

#include "domain_conf.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

static void random_getrandom(unsigned char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = getrandom(buf + done, len - done, 0);
		if (n > 0)
			done += n;
		/* EINTR: retry.  getrandom cannot otherwise fail for these sizes. */
	}
}

static domain_random_fn random_fn = random_getrandom;

void domain_conf_set_random(domain_random_fn fn)
{
	random_fn = fn ? fn : random_getrandom;
}

void domain_random_bytes(unsigned char *buf, size_t len)
{
	random_fn(buf, len);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Like libvirt: surrounding blanks are allowed, a dash may separate any two
 * bytes, and exactly 32 hex digits must remain. */
int domain_uuid_parse(const char *s, unsigned char uuid[16])
{
	int n = 0;

	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	while (n < 16) {
		if (*s == '-') {
			s++;
			continue;
		}
		int hi = hexval(s[0]);
		int lo = hi < 0 ? -1 : hexval(s[1]);
		if (hi < 0 || lo < 0)
			return -1;
		uuid[n++] = hi << 4 | lo;
		s += 2;
	}
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	return *s ? -1 : 0;
}

void domain_uuid_format(const unsigned char u[16], char out[37])
{
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
		 u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

void domain_uuid_generate(unsigned char uuid[16])
{
	domain_random_bytes(uuid, 16);
	uuid[6] = (uuid[6] & 0x0f) | 0x40;	/* version 4: random */
	uuid[8] = (uuid[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

/* Six hex pairs separated by ':' (libvirt also takes one-digit groups). */
int domain_mac_parse(const char *s, unsigned char mac[6])
{
	for (int i = 0; i < 6; i++) {
		int hi = hexval(*s);
		if (hi < 0)
			return -1;
		s++;
		int lo = hexval(*s);
		if (lo >= 0) {
			mac[i] = hi << 4 | lo;
			s++;
		} else {
			mac[i] = hi;
		}
		if (i < 5 && *s++ != ':')
			return -1;
	}
	return *s ? -1 : 0;
}

/* 52:54:00 is the prefix libvirt and QEMU use for generated addresses. */
void domain_mac_generate(unsigned char mac[6])
{
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	domain_random_bytes(mac + 3, 3);
}

static void chr_clear(struct domain_chr *c)
{
	g_free(c->path);
	g_free(c->log_file);
	g_free(c->alias);
}

#define USER_ALIAS_PREFIX "ua-"
#define ALIAS_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"

bool domain_alias_is_user(const char *alias)
{
	return alias && g_str_has_prefix(alias, USER_ALIAS_PREFIX);
}

bool domain_alias_valid(const char *alias, bool status)
{
	const char *rest = alias + strlen(USER_ALIAS_PREFIX);

	if (domain_alias_is_user(alias))
		return *rest && strspn(rest, ALIAS_CHARS) == strlen(rest);
	/* libvirt's schema: [a-zA-Z0-9_\-.]+ */
	return status && *alias && strspn(alias, ALIAS_CHARS ".") == strlen(alias);
}

/* The device alias slots of DEF, in libvirt's order of assignment. */
#define FOR_EACH_ALIAS(def, slot, body) do { \
	for (size_t i_ = 0; i_ < (def)->ndisks; i_++) { char **slot = &(def)->disks[i_].alias; body; } \
	for (size_t i_ = 0; i_ < (def)->nnets; i_++) { char **slot = &(def)->nets[i_].alias; body; } \
	for (size_t i_ = 0; i_ < (def)->ncontrollers; i_++) { char **slot = &(def)->controllers[i_].alias; body; } \
	for (size_t i_ = 0; i_ < (def)->nserials; i_++) { char **slot = &(def)->serials[i_].alias; body; } \
	for (size_t i_ = 0; i_ < (def)->nconsoles; i_++) { char **slot = &(def)->consoles[i_].alias; body; } \
	{ char **slot = &(def)->balloon_alias; body; } \
	for (size_t i_ = 0; i_ < (def)->nrngs; i_++) { char **slot = &(def)->rngs[i_].alias; body; } \
} while (0)

void domain_def_forget_aliases(struct domain_def *def)
{
	FOR_EACH_ALIAS(def, a, if (*a && !domain_alias_is_user(*a)) g_clear_pointer(a, g_free));
}

bool domain_def_has_alias(const struct domain_def *cdef, const char *alias)
{
	/* The walk only reads. */
	struct domain_def *def = (struct domain_def *)cdef;
	bool found = false;

	FOR_EACH_ALIAS(def, a, found |= *a && !strcmp(*a, alias));
	return found;
}

/* The next free PREFIX<n> among the aliases of N items STRIDE bytes apart
 * from FIRST (each a char *): libvirt numbers nets and rngs past the
 * highest already taken. */
static unsigned next_index(const char *prefix, char *const *first, size_t n, size_t stride)
{
	unsigned next = 0;

	for (size_t i = 0; i < n; i++) {
		const char *a = *(char *const *)((const char *)first + i * stride);
		char *end;
		unsigned long v;

		if (!a || !g_str_has_prefix(a, prefix) || !a[strlen(prefix)])
			continue;
		v = strtoul(a + strlen(prefix), &end, 10);
		if (!*end && v >= next)
			next = v + 1;
	}
	return next;
}

/* vda -> 0, vdz -> 25, vdaa -> 26: libvirt's disk name index. */
static int disk_name_index(const char *target)
{
	const char *p = target + (g_str_has_prefix(target, "vd") ? 2 : 0);
	int idx = -1;

	for (; g_ascii_islower(*p); p++)
		idx = (idx + 1) * 26 + (*p - 'a');
	return idx;
}

void domain_def_assign_aliases(struct domain_def *def)
{
	for (size_t i = 0; i < def->ndisks; i++) {
		struct domain_disk *d = &def->disks[i];

		if (!d->alias)
			d->alias = g_strdup_printf("virtio-disk%d", disk_name_index(d->target));
	}
	for (size_t i = 0; i < def->nnets; i++) {
		if (!def->nets[i].alias)
			def->nets[i].alias = g_strdup_printf("net%u",
				next_index("net", &def->nets[0].alias, def->nnets, sizeof(def->nets[0])));
	}
	for (size_t i = 0; i < def->ncontrollers; i++) {
		struct domain_controller *c = &def->controllers[i];

		if (c->alias)
			continue;
		if (c->type == CTRL_USB)
			c->alias = g_strdup("usb");
		else	/* pcie-root is QEMU's "pcie.0", pci-root "pci.0" */
			c->alias = g_strdup(!strcmp(conf_enum_name(&conf_pci_model, c->model), "pcie-root")
					    ? "pcie.0" : "pci.0");
	}
	for (size_t i = 0; i < def->nserials; i++)
		if (!def->serials[i].alias)
			def->serials[i].alias = g_strdup_printf("serial%zu", i);
	for (size_t i = 0; i < def->nconsoles; i++) {
		struct domain_chr *c = &def->consoles[i];

		if (c->alias)
			continue;
		/* The first console, when it is the serial port, is named as it. */
		if (i == 0 && c->target == CONSOLE_SERIAL && def->nserials)
			c->alias = g_strdup(def->serials[0].alias);
		else
			c->alias = g_strdup_printf("console%zu", i);
	}
	if (def->balloon_model == BALLOON_VIRTIO && !def->balloon_alias)
		def->balloon_alias = g_strdup("balloon0");
	for (size_t i = 0; i < def->nrngs; i++) {
		if (!def->rngs[i].alias)
			def->rngs[i].alias = g_strdup_printf("rng%u",
				next_index("rng", &def->rngs[0].alias, def->nrngs, sizeof(def->rngs[0])));
	}
}

int domain_def_check_aliases(const struct domain_def *def)
{
	g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
	/* The first console that is the serial port is that device: its
	 * alias is the serial's, not a second one. */
	const char *skip = def->nconsoles && def->consoles[0].target == CONSOLE_SERIAL && def->nserials
			   ? def->consoles[0].alias : NULL;
	int rc = 0;

	FOR_EACH_ALIAS((struct domain_def *)def, a, {
		if (!rc && domain_alias_is_user(*a) && *a != skip && !g_hash_table_add(seen, *a)) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "non unique alias detected: %s", *a);
			rc = -1;
		}
	});
	return rc;
}

void domain_def_free(struct domain_def *def)
{
	if (!def)
		return;
	g_free(def->name);
	g_free(def->title);
	g_free(def->description);
	if (def->metadata)
		xmlFreeDoc(def->metadata);
	for (int g = 0; g < SYSINFO_GROUPS; g++)
		for (int i = 0; i < SYSINFO_MAX_ENTRIES; i++)
			g_free(def->sysinfo[g][i]);
	for (size_t i = 0; i < def->noem_strings; i++)
		g_free(def->oem_strings[i]);
	g_free(def->oem_strings);
	g_free(def->machine);
	g_free(def->kernel);
	g_free(def->initrd);
	g_free(def->cmdline);
	g_free(def->emulator);
	for (size_t i = 0; i < def->ndisks; i++) {
		g_free(def->disks[i].source);
		g_free(def->disks[i].target);
		g_free(def->disks[i].serial);
		g_free(def->disks[i].alias);
		for (size_t j = 0; j < def->disks[i].nbacking; j++)
			g_free(def->disks[i].backing[j].path);
		g_free(def->disks[i].backing);
	}
	g_free(def->disks);
	for (size_t i = 0; i < def->ncontrollers; i++)
		g_free(def->controllers[i].alias);
	g_free(def->controllers);
	for (size_t i = 0; i < def->nnets; i++) {
		g_free(def->nets[i].source);
		g_free(def->nets[i].ifname);
		g_free(def->nets[i].alias);
	}
	g_free(def->nets);
	for (size_t i = 0; i < def->nserials; i++)
		chr_clear(&def->serials[i]);
	g_free(def->serials);
	for (size_t i = 0; i < def->nconsoles; i++)
		chr_clear(&def->consoles[i]);
	g_free(def->consoles);
	for (size_t i = 0; i < def->nrngs; i++)
		g_free(def->rngs[i].alias);
	g_free(def->rngs);
	g_free(def->balloon_alias);
	g_free(def);
}
