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

int migration_restore_config(struct restore *rs, struct json_object *overrides,
			     struct vm_config *cfg, char **json_out,
			     char *err, size_t errlen)
{
	struct json_object *base, *alone;
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
