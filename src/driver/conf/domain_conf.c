/* Domain definition lifetime, and the identifiers the parser generates
 * (UUIDs, MAC addresses). */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <glib.h>

#include "domain_conf.h"

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
		for (size_t j = 0; j < def->disks[i].nbacking; j++)
			g_free(def->disks[i].backing[j].path);
		g_free(def->disks[i].backing);
	}
	g_free(def->disks);
	g_free(def->controllers);
	for (size_t i = 0; i < def->nnets; i++) {
		g_free(def->nets[i].source);
		g_free(def->nets[i].ifname);
	}
	g_free(def->nets);
	for (size_t i = 0; i < def->nserials; i++)
		chr_clear(&def->serials[i]);
	g_free(def->serials);
	for (size_t i = 0; i < def->nconsoles; i++)
		chr_clear(&def->consoles[i]);
	g_free(def->consoles);
	g_free(def->rngs);
	g_free(def);
}
