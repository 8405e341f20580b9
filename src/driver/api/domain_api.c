/* Helpers shared by the domain handlers; see domain_api.h. */
#include <string.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "domain/snapshot_store.h"
#include "error.h"

int api_check_flags(unsigned flags, unsigned allowed, const char *api)
{
	/* CLIENT: unknown bits are refused, never ignored. */
	if (flags & ~allowed) {
		drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_INVALID_ARG,
				      "unsupported flags (0x%x) in function %s", flags & ~allowed, api);
		return -1;
	}
	return 0;
}

int api_affect(struct domain_obj *obj, unsigned flags, bool *live, bool *config,
	       const char *transient_msg)
{
	*live = flags & VIR_DOMAIN_AFFECT_LIVE;
	*config = flags & VIR_DOMAIN_AFFECT_CONFIG;
	if (!*live && !*config)
		(obj->id >= 0 ? live : config)[0] = true;
	if (*live && obj->id < 0) {
		drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_OPERATION_INVALID, "%s",
				      "domain is not running");
		return -1;
	}
	if (*config && !obj->persistent) {
		drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_OPERATION_INVALID, "%s",
				      transient_msg ? transient_msg :
				      "cannot change persistent config of a transient domain");
		return -1;
	}
	return 0;
}

int api_disk_index(const struct domain_def *def, const char *name)
{
	for (size_t i = 0; i < def->ndisks; i++)
		if (!strcmp(def->disks[i].target, name) || !strcmp(def->disks[i].source, name))
			return (int)i;
	return -1;
}

/* Whether OBJ passes one filter group: no bit of the group given, or the
 * bit for OBJ's side of it. */
static bool group(unsigned flags, unsigned yes, unsigned no, bool is)
{
	if (!(flags & (yes | no)))
		return true;
	return (flags & (is ? yes : no)) != 0;
}

/* libvirt's semantics: bits inside a group are OR'ed, groups AND'ed. */
bool list_domain_matches(struct domain_obj *obj, unsigned f)
{
	bool active = obj->id >= 0;
	int st = obj->state;
	unsigned state_bits = VIR_CONNECT_LIST_DOMAINS_RUNNING | VIR_CONNECT_LIST_DOMAINS_PAUSED |
			      VIR_CONNECT_LIST_DOMAINS_SHUTOFF | VIR_CONNECT_LIST_DOMAINS_OTHER;

	if (!group(f, VIR_CONNECT_LIST_DOMAINS_ACTIVE, VIR_CONNECT_LIST_DOMAINS_INACTIVE, active))
		return false;
	if (!group(f, VIR_CONNECT_LIST_DOMAINS_PERSISTENT, VIR_CONNECT_LIST_DOMAINS_TRANSIENT,
		   obj->persistent))
		return false;
	if (f & state_bits) {
		unsigned bit = st == VIR_DOMAIN_RUNNING ? VIR_CONNECT_LIST_DOMAINS_RUNNING :
			       st == VIR_DOMAIN_PAUSED ? VIR_CONNECT_LIST_DOMAINS_PAUSED :
			       st == VIR_DOMAIN_SHUTOFF ? VIR_CONNECT_LIST_DOMAINS_SHUTOFF :
			       VIR_CONNECT_LIST_DOMAINS_OTHER;
		if (!(f & bit))
			return false;
	}
	/* No checkpoints exist yet.  A managed image and snapshots are
	 * looked for only when asked about. */
	if (((f & (VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE | VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE)) &&
	     !group(f, VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE, VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE,
		    managed_save_exists_locked(obj))) ||
	    !group(f, VIR_CONNECT_LIST_DOMAINS_AUTOSTART, VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART,
		   obj->autostart) ||
	    ((f & (VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT | VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT)) &&
	     !group(f, VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT, VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT,
		    snapshot_store_count(obj->def->name) > 0)) ||
	    !group(f, VIR_CONNECT_LIST_DOMAINS_HAS_CHECKPOINT, VIR_CONNECT_LIST_DOMAINS_NO_CHECKPOINT,
		   false))
		return false;
	return true;
}
