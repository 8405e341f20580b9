/* Between domain objects and the remote_nonnull_domain a client sends and
 * receives; see domain_wire.h. */
#include <stdlib.h>
#include <string.h>

#include "domain_wire.h"

struct domain_obj *wire_domain_get(const remote_nonnull_domain *dom)
{
	/* CLIENT: the uuid is 16 opaque bytes (fixed by XDR), the name only
	 * a label for the message; the lookup uses the uuid alone. */
	return domain_get((const unsigned char *)dom->uuid, dom->name);
}

void wire_domain_make(struct domain_obj *obj, remote_nonnull_domain *out)
{
	g_mutex_lock(&obj->lock);
	out->name = strdup(obj->def->name);
	memcpy(out->uuid, obj->def->uuid, 16);
	out->id = obj->id;
	g_mutex_unlock(&obj->lock);
	if (!out->name)
		g_error("out of memory");
}
