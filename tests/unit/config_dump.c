/* config_dump FILE: reads a VM configuration with kvmm's own parser,
 * config_from_json() -- what `kvmm --config FILE` runs -- and prints what
 * kvmm understood, every field with its default filled in, as JSON.  A
 * configuration kvmm refuses prints "error: MESSAGE" and exits 1.
 *
 * tests/driver/test_xml2config.py runs every configuration virtkvmmd makes
 * (the tests/xml2config goldens) through it: kvmm must accept each and read
 * the same values the daemon meant. */
#include <stdio.h>

#include <json-c/json.h>

#include "config.h"
#include "util.h"

static json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *chardev(const struct serial_config *sc)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "mode", json_object_new_string(serial_mode_name(sc->mode)));
	json_object_object_add(o, "path", str_or_null(sc->path));
	json_object_object_add(o, "log", str_or_null(sc->log));
	json_object_object_add(o, "log_append", json_object_new_boolean(sc->log_append));
	return o;
}

/* Only what was given: {group: {field: value}}, "oem_strings", and the
 * UUID as kvmm parsed it (hex, byte order as written). */
static json_object *smbios(const struct smbios_config *sm)
{
	json_object *o, *a;
	char hex[33];

	if (!sm->present)
		return NULL;
	o = json_object_new_object();
	for (int g = 0; g < SMBIOS_GROUPS; g++) {
		json_object *grp = json_object_new_object();

		for (int f = 0; f < SMBIOS_MAX_FIELDS; f++)
			if (sm->fields[g][f])
				json_object_object_add(grp, smbios_field_names[g][f],
						       json_object_new_string(sm->fields[g][f]));
		json_object_object_add(o, smbios_group_names[g], grp);
	}
	a = json_object_new_array();
	for (unsigned int i = 0; i < sm->noem_strings; i++)
		json_object_array_add(a, json_object_new_string(sm->oem_strings[i]));
	json_object_object_add(o, "oem_strings", a);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", sm->uuid[i]);
	json_object_object_add(o, "uuid_bytes", sm->has_uuid ? json_object_new_string(hex) : NULL);
	return o;
}

static json_object *dump(const struct vm_config *c)
{
	json_object *o = json_object_new_object(), *a;
	char mac[18];

	json_object_object_add(o, "name", json_object_new_string(c->name));
	json_object_object_add(o, "kernel", json_object_new_string(c->kernel));
	json_object_object_add(o, "initrd", str_or_null(c->initrd));
	json_object_object_add(o, "cmdline", json_object_new_string(c->cmdline));
	json_object_object_add(o, "memory", json_object_new_int64((int64_t)c->memory));
	json_object_object_add(o, "cpus", json_object_new_int((int)c->cpus));
	json_object_object_add(o, "max_cpus", json_object_new_int((int)c->max_cpus));
	json_object_object_add(o, "serial", chardev(&c->serial));
	json_object_object_add(o, "console", c->has_console ? chardev(&c->console) : NULL);
	json_object_object_add(o, "api_socket", str_or_null(c->api_socket));
	json_object_object_add(o, "no_reboot", json_object_new_boolean(c->no_reboot));
	json_object_object_add(o, "thp", json_object_new_boolean(c->thp));
	json_object_object_add(o, "ksm", json_object_new_boolean(c->ksm));
	json_object_object_add(o, "locked", json_object_new_boolean(c->locked));
	json_object_object_add(o, "hugepages", json_object_new_int64((int64_t)c->hugepages));
	json_object_object_add(o, "paused", json_object_new_boolean(c->paused));
	json_object_object_add(o, "rng", json_object_new_boolean(c->rng));
	a = json_object_new_array();
	for (unsigned int i = 0; i < c->ndisks; i++) {
		const struct disk_config *d = &c->disks[i];
		json_object *e = json_object_new_object();

		json_object_object_add(e, "path", json_object_new_string(d->path));
		json_object_object_add(e, "readonly", json_object_new_boolean(d->readonly));
		json_object_object_add(e, "cache", json_object_new_string(disk_cache_name(d->cache)));
		json_object_object_add(e, "error_policy",
				       json_object_new_string(disk_error_policy_name(d->werror)));
		json_object_object_add(e, "rerror_policy",
				       json_object_new_string(disk_error_policy_name(d->rerror)));
		json_object_object_add(e, "serial", str_or_null(d->serial));
		json_object_object_add(e, "blk_size", json_object_new_int((int)d->blk_size));
		json_object_object_add(e, "shareable", json_object_new_boolean(d->shareable));
		json_object_object_add(e, "format", json_object_new_string(disk_format_name(d->format)));
		{
			json_object *b = json_object_new_array(), *bf = json_object_new_array();

			/* Layers without a backing_format are raw (docs/kvmm.md). */
			for (unsigned int j = 0; j < d->nbacking; j++) {
				json_object_array_add(b, json_object_new_string(d->backing[j]));
				json_object_array_add(bf, json_object_new_string(disk_format_name(
					j < d->nbacking_format ? d->backing_format[j] : DISK_FORMAT_RAW)));
			}
			json_object_object_add(e, "backing", b);
			json_object_object_add(e, "backing_format", bf);
		}
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "disks", a);
	a = json_object_new_array();
	for (unsigned int i = 0; i < c->nnets; i++) {
		const struct net_config *n = &c->nets[i];
		json_object *e = json_object_new_object();

		json_object_object_add(e, "tap", str_or_null(n->tap));
		json_object_object_add(e, "fd", json_object_new_int(n->fd));
		if (n->has_mac) {
			snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0],
				 n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
			json_object_object_add(e, "mac", json_object_new_string(mac));
		} else {
			json_object_object_add(e, "mac", NULL);
		}
		json_object_object_add(e, "mtu", json_object_new_int((int)n->mtu));
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "nets", a);
	json_object_object_add(o, "smbios", smbios(&c->smbios));
	json_object_object_add(o, "vmcoreinfo", json_object_new_boolean(c->vmcoreinfo));
	if (c->balloon.present) {
		json_object *b = json_object_new_object();

		json_object_object_add(b, "deflate_on_oom", json_object_new_boolean(c->balloon.deflate_on_oom));
		json_object_object_add(b, "free_page_reporting",
				       json_object_new_boolean(c->balloon.free_page_reporting));
		json_object_object_add(b, "stats_period", json_object_new_int((int)c->balloon.stats_period));
		json_object_object_add(o, "balloon", b);
	} else {
		json_object_object_add(o, "balloon", NULL);
	}
	return o;
}

int main(int argc, char **argv)
{
	struct vm_config cfg;
	json_object *in, *out;
	char err[512];

	if (argc != 2) {
		fprintf(stderr, "usage: config_dump FILE\n");
		return 2;
	}
	in = json_object_from_file(argv[1]);
	if (!in) {
		printf("error: cannot read %s as JSON: %s\n", argv[1], json_util_get_last_err());
		return 1;
	}
	if (config_from_json(in, &cfg, err, sizeof(err))) {
		printf("error: %s\n", err);
		json_object_put(in);
		return 1;
	}
	out = dump(&cfg);
	puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
					    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(out);
	json_object_put(in);
	config_free(&cfg);
	return 0;
}
