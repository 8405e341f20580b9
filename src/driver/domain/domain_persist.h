/* Domain definitions on disk, libvirt's layout: DIR/NAME.xml per domain,
 * DIR/autostart/NAME.xml a symlink to it when the domain autostarts.
 * Files are replaced atomically (temp file in DIR, fsync, rename, fsync
 * DIR), so a crash leaves either the old or the new definition, never half
 * of one.  Temp files are hidden (".NAME.xml.new-XXXXXX") and never end in
 * ".xml", so they are never mistaken for definitions; stale ones from a
 * crash are removed at load. */
#ifndef KVMM_DRV_DOMAIN_PERSIST_H
#define KVMM_DRV_DOMAIN_PERSIST_H

#include <stdbool.h>

/* Creates DIR and DIR/autostart as needed.  -1 after reporting. */
int persist_init(const char *dir);

/* DIR/NAME.xml, g_malloc'ed. */
char *persist_path(const char *name);
bool persist_exists(const char *name);

/* Atomically replaces NAME's definition with XML.  -1 after reporting. */
int persist_write(const char *name, const char *xml);

/* Removes NAME's definition; absent is fine.  -1 after reporting. */
int persist_remove(const char *name);

bool persist_autostart_get(const char *name);
int persist_autostart_set(const char *name, bool on);

/* Calls FN for each DIR/NAME.xml with its contents (or NULL and the reason
 * when it cannot be read). */
typedef void (*persist_load_fn)(const char *name, const char *path, const char *xml,
				const char *read_error, void *opaque);
void persist_load_all(persist_load_fn fn, void *opaque);

#endif
