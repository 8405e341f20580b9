/* The configuration of a restored VM: the stream's, with the host-side
 * settings given on the command line laid over it, checked to show the
 * guest what it was saved with. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "migration.h"

/* Whether the overrides gave KEY. */
static bool given(struct json_object *overrides, const char *key)
{
	return json_object_object_get_ex(overrides, key, NULL);
}

/* Disks (or NICs) given past the stream's own are its hot-added ones of
 * that type, in the order they were plugged (as a libvirt definition
 * lists them): each becomes the host side of the stream's "hotplug"
 * entry, its "id" (optional: the owner's new name for it) too.  "id" is
 * dropped from the others, where it only names the device. */
static int fold_hot(struct json_object *base, struct json_object *stream,
		    struct json_object *overrides, const char *key, const char *type,
		    struct json_object *hot, char *err, size_t errlen)
{
	struct json_object *list, *cold, *sv, *kept;
	size_t ncold = 0, nhot = 0, n, i, k;

	if (!json_object_object_get_ex(base, key, &list) || !json_object_is_type(list, json_type_array))
		return 0;
	if (json_object_object_get_ex(stream, key, &cold) && json_object_is_type(cold, json_type_array))
		ncold = json_object_array_length(cold);
	for (i = 0; hot && i < json_object_array_length(hot); i++) {
		struct json_object *tv, *e = json_object_array_get_idx(hot, i);

		if (json_object_object_get_ex(e, "type", &tv) && !strcmp(json_object_get_string(tv), type))
			nhot++;
	}
	n = json_object_array_length(list);
	if (given(overrides, key) && !given(overrides, "hotplug") && nhot && n != ncold &&
	    n != ncold + nhot) {
		snprintf(err, errlen, "the stream's VM has %zu %s and %zu hot-added ones: give %zu, or %zu with the hot-added ones last",
			 ncold, key, nhot, ncold, ncold + nhot);
		return -EINVAL;
	}
	kept = json_object_new_array();
	for (i = 0, k = 0; i < n; i++) {
		struct json_object *item = json_object_array_get_idx(list, i), *e = NULL;
		struct json_object *newid = NULL;

		if (json_object_is_type(item, json_type_object) &&
		    json_object_object_get_ex(item, "id", &newid)) {
			json_object_get(newid);
			json_object_object_del(item, "id");
		}
		/* Not a hot-added device's: kept where it is (a count that
		 * fits nothing is the configuration check's to refuse). */
		if (i < ncold || !given(overrides, key) || given(overrides, "hotplug") || !nhot ||
		    n != ncold + nhot) {
			json_object_put(newid);
			json_object_array_add(kept, json_object_get(item));
			continue;
		}
		/* The k-th hot-added device of this type. */
		for (size_t h = 0, seen = 0; h < json_object_array_length(hot); h++) {
			struct json_object *tv, *c = json_object_array_get_idx(hot, h);

			if (json_object_object_get_ex(c, "type", &tv) &&
			    !strcmp(json_object_get_string(tv), type) && seen++ == k) {
				e = c;
				break;
			}
		}
		k++;
		if (!json_object_is_type(item, json_type_object)) {
			json_object_put(newid);
			json_object_put(kept);
			snprintf(err, errlen, "%s %zu stands for a hot-added device: give it as an object", key, i);
			return -EINVAL;
		}
		/* CLIENT: the stream's type and slot stay; the device's keys
		 * are the ones given (checked against the stream's below). */
		json_object_object_get_ex(e, "slot", &sv);
		{
			struct json_object *id = NULL, *ne = json_object_new_object();

			json_object_object_add(ne, "type", json_object_new_string(type));
			json_object_object_get_ex(e, "id", &id);
			json_object_object_add(ne, "id", newid ? newid : json_object_get(id));
			json_object_object_add(ne, "slot", json_object_get(sv));
			json_object_object_foreach(item, ik, iv) {
				json_object_object_add(ne, ik, json_object_get(iv));
			}
			/* Replaced in place: the stream's order is the plug order. */
			for (size_t h = 0; h < json_object_array_length(hot); h++)
				if (json_object_array_get_idx(hot, h) == e) {
					json_object_array_put_idx(hot, h, ne);
					break;
				}
		}
	}
	json_object_object_add(base, key, kept);
	return 0;
}

int migration_restore_config(struct restore *rs, struct json_object *overrides,
			     struct vm_config *cfg, char **json_out,
			     char *err, size_t errlen)
{
	struct json_object *base, *alone, *hot, *present, *cpus;
	struct vm_config scfg;
	bool paused = false;
	char why[512];
	int r;

	memset(&scfg, 0, sizeof(scfg));
	base = json_tokener_parse(rs->config_json);
	alone = json_tokener_parse(rs->config_json);
	if (!base || !json_object_is_type(base, json_type_object) || !alone) {
		snprintf(err, errlen, "the stream's configuration is not a JSON object");
		r = -EINVAL;
		goto out;
	}
	/* Whether it starts paused is this run's choice (--paused), not the
	 * saved one's. */
	json_object_object_del(base, "paused");
	json_object_object_foreach(overrides, key, val) {
		if (!strcmp(key, "paused"))
			paused = json_object_get_boolean(val);
		else
			json_object_object_add(base, key, json_object_get(val));
	}
	/* The hot-added devices' host side given with the others.  GUEST:
	 * the stream's entries are only matched up here; the parse below
	 * checks them. */
	if (!json_object_object_get_ex(base, "hotplug", &hot) ||
	    !json_object_is_type(hot, json_type_array))
		hot = NULL;
	if (fold_hot(base, alone, overrides, "disks", "blk", hot, err, errlen) ||
	    fold_hot(base, alone, overrides, "nets", "net", hot, err, errlen)) {
		r = -EINVAL;
		goto out;
	}
	/* "cpus" of a VM with hotplugged vCPUs: the count it has now (as
	 * libvirt's current vCPUs) stands for the stream's own. */
	if (json_object_object_get_ex(alone, "vcpus_present", &present) &&
	    json_object_is_type(present, json_type_array) &&
	    json_object_object_get_ex(overrides, "cpus", &cpus) &&
	    json_object_get_int64(cpus) == (int64_t)json_object_array_length(present)) {
		if (json_object_object_get_ex(alone, "cpus", &cpus))
			json_object_object_add(base, "cpus", json_object_get(cpus));
		else
			json_object_object_del(base, "cpus");
	}
	if (config_from_json(alone, &scfg, why, sizeof(why))) {
		snprintf(err, errlen, "the stream's configuration: %s", why);
		r = -EINVAL;
		goto out;
	}
	if (config_from_json(base, cfg, why, sizeof(why))) {
		snprintf(err, errlen, "%s", why);
		r = -EINVAL;
		goto out;
	}
	r = migration_check_config(&scfg, cfg, err, errlen);
	if (r)
		goto out;
	cfg->paused = paused;
	*json_out = strdup(json_object_to_json_string_ext(base, JSON_C_TO_STRING_PLAIN));
	if (!*json_out)
		r = -ENOMEM;
out:
	config_free(&scfg);
	json_object_put(base);
	json_object_put(alone);
	return r;
}
