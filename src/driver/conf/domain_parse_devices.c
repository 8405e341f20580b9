/* <devices>: one parser per device kind kvmm supports.  Kinds not handled
 * here stay unconsumed and are refused by name ("device 'sound' is not
 * supported by kvmm") by xml_refuse_unconsumed(). */
#include <string.h>

#include <glib.h>

#include "domain_conf.h"
#include "domain_parse.h"
#include "domain_xml.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

#define APPEND(arr, n) (arr = g_renew(typeof(*arr), arr, n + 1), \
			memset(&arr[n], 0, sizeof(*arr)), &arr[n++])

/* libvirt guesses the bus from the target name when bus= is absent; we do
 * the same so that bus-less 'hda' is refused as the IDE disk it means. */
static const char *bus_from_target(const char *dev)
{
	if (g_str_has_prefix(dev, "vd"))
		return "virtio";
	if (g_str_has_prefix(dev, "hd"))
		return "ide";
	if (g_str_has_prefix(dev, "sd"))
		return "scsi";
	if (g_str_has_prefix(dev, "xvd"))
		return "xen";
	if (g_str_has_prefix(dev, "fd"))
		return "fdc";
	return dev;
}

/* The <backingStore> chain under NODE (a <disk> or a <backingStore>):
 * each layer a file with its format; an empty <backingStore/> ends the
 * chain.  index= is the running domain's (status XML). */
static int parse_backing_chain(xmlNodePtr node, struct domain_disk *d)
{
	xmlNodePtr bs, n;
	int v;

	while ((bs = xml_child(node, "backingStore"))) {
		struct domain_backing *b;
		bool empty = !xmlHasProp(bs, BAD_CAST "type");

		for (xmlNodePtr c = bs->children; c && empty; c = c->next)
			empty = c->type != XML_ELEMENT_NODE;
		if (empty) {
			d->backing_end = true;
			return 0;
		}
		if (d->nbacking == DOMAIN_MAX_BACKING) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "disk %s: a backing chain longer than %d layers is not supported by kvmm",
					 d->source ? d->source : "", DOMAIN_MAX_BACKING);
			return -1;
		}
		b = APPEND(d->backing, d->nbacking);
		if (xml_attr_enum(bs, "type", &conf_backing_type, XML_REQUIRED, &v) < 0 ||
		    xml_attr_uint(bs, "index", &b->index) < 0)
			return -1;
		if (!(n = xml_child(bs, "format"))) {
			drv_error_report(VIR_ERR_XML_ERROR, "missing disk backing store format");
			return -1;
		}
		if (xml_attr_enum(n, "type", &conf_disk_format, XML_REQUIRED, &b->format) < 0)
			return -1;
		if (!(n = xml_child(bs, "source")) || !(b->path = xml_attr(n, "file")) || !*b->path) {
			drv_error_report(VIR_ERR_NO_SOURCE, "missing source information for the backing store of %s",
					 d->source ? d->source : "");
			return -1;
		}
		node = bs;
	}
	return 0;
}

/* <alias name=>.  Every one is read here; the postparse keeps a run's
 * only from a status file.  CLIENT: a user alias is checked as it is kept
 * (and named by the guest's hot-unplug later), any other against libvirt's
 * schema. */
static int parse_alias(xmlNodePtr node, char **alias)
{
	xmlNodePtr n = xml_child(node, "alias");
	g_autofree char *name = NULL;

	if (!n)
		return 0;
	if (!(name = xml_attr_required(n, "name")))
		return -1;
	if (domain_alias_is_user(name) && !domain_alias_valid(name, false)) {
		drv_error_report(VIR_ERR_XML_ERROR,
				 "alias '%s' is not a valid user alias: after 'ua-' it takes letters, digits, '_' and '-' only",
				 name);
		return -1;
	}
	if (!domain_alias_valid(name, true)) {
		drv_error_report(VIR_ERR_XML_ERROR, "alias '%s' has characters a device alias cannot have", name);
		return -1;
	}
	*alias = g_steal_pointer(&name);
	return 0;
}

static int parse_disk(xmlNodePtr node, struct domain_def *def)
{
	struct domain_disk *d = APPEND(def->disks, def->ndisks);
	xmlNodePtr n;
	int v;

	if (xml_attr_enum(node, "type", &conf_disk_type, DISK_FILE, &d->type) < 0 ||
	    xml_attr_enum(node, "device", &conf_disk_device, 0, &v) < 0)
		return -1;
	if ((n = xml_child(node, "driver"))) {
		if (xml_attr_enum(n, "name", &conf_disk_driver, 0, &v) < 0 ||
		    xml_attr_enum(n, "type", &conf_disk_format, FORMAT_RAW, &d->format) < 0 ||
		    xml_attr_enum(n, "cache", &conf_disk_cache, CACHE_DEFAULT, &d->cache) < 0 ||
		    xml_attr_enum(n, "error_policy", &conf_disk_error_policy, ERRPOL_DEFAULT,
				  &d->error_policy) < 0 ||
		    xml_attr_enum(n, "rerror_policy", &conf_disk_rerror_policy, ERRPOL_DEFAULT,
				  &d->rerror_policy) < 0 ||
		    xml_attr_enum(n, "io", &conf_disk_io, IO_DEFAULT, &d->io) < 0 ||
		    xml_attr_enum(n, "discard", &conf_disk_discard, DISCARD_DEFAULT, &d->discard) < 0)
			return -1;
	}
	if ((n = xml_child(node, "source"))) {
		d->source = xml_attr(n, d->type == DISK_FILE ? "file" : "dev");
		if (xml_attr_uint(n, "index", &d->index) < 0)
			return -1;
	}
	if (!(n = xml_child(node, "target")) || !(d->target = xml_attr(n, "dev"))) {
		drv_error_report(VIR_ERR_NO_TARGET, "missing target information for device %s",
				 d->source ? d->source : "disk");
		return -1;
	}
	g_autofree char *bus = xml_attr(n, "bus");
	if (!bus)
		bus = g_strdup(bus_from_target(d->target));
	if (conf_enum_lookup(&conf_disk_bus, bus) < 0) {
		conf_enum_refuse(&conf_disk_bus, bus);
		return -1;
	}
	if (!d->source || !*d->source) {
		drv_error_report(VIR_ERR_NO_SOURCE, "missing source information for %s", d->target);
		return -1;
	}
	if (parse_backing_chain(node, d) < 0)
		return -1;
	d->nbacking_given = d->nbacking;
	d->readonly = xml_child(node, "readonly") != NULL;
	d->shareable = xml_child(node, "shareable") != NULL;
	if ((n = xml_child(node, "serial")))
		d->serial = xml_text(n);
	return parse_alias(node, &d->alias);
}

static int parse_interface(xmlNodePtr node, struct domain_def *def)
{
	struct domain_net *net = APPEND(def->nets, def->nnets);
	static const char *const source_attr[] = { NULL, "bridge", "network" };
	xmlNodePtr n;
	int v;

	if (xml_attr_enum(node, "type", &conf_net_type, XML_REQUIRED, &net->type) < 0)
		return -1;
	if ((n = xml_child(node, "mac"))) {
		g_autofree char *mac = xml_attr_required(n, "address");
		if (!mac)
			return -1;
		if (domain_mac_parse(mac, net->mac) < 0) {
			drv_error_report(VIR_ERR_INTERNAL_ERROR, "unable to parse mac address '%s'", mac);
			return -1;
		}
		if (net->mac[0] & 1) {
			drv_error_report(VIR_ERR_XML_ERROR, "expected unicast mac address, found multicast '%s'", mac);
			return -1;
		}
	} else {
		domain_mac_generate(net->mac);
	}
	if (source_attr[net->type]) {
		if (!(n = xml_child(node, "source")) ||
		    !(net->source = xml_attr(n, source_attr[net->type]))) {
			drv_error_report(VIR_ERR_XML_ERROR, "No <source> '%s' attribute specified with <interface type='%s'/>",
					 source_attr[net->type], conf_enum_name(&conf_net_type, net->type));
			return -1;
		}
	}
	if ((n = xml_child(node, "target"))) {
		net->ifname = xml_attr(n, "dev");
		/* 'vnet' names are the ones libvirt generates for a running guest;
		 * they belong to that run, not to the definition. */
		net->ifname_generated = net->ifname && g_str_has_prefix(net->ifname, "vnet");
		if (xml_attr_enum(n, "managed", &conf_yes_no, XML_OPTIONAL, &v) < 0)
			return -1;
		net->managed = v == 0 ? TRI_ON : v == 1 ? TRI_OFF : TRI_ABSENT;
	}
	/* kvmm has one NIC model; without <model> libvirt would pick its
	 * default, here that can only be virtio, made explicit. */
	if ((n = xml_child(node, "model")) &&
	    xml_attr_enum(n, "type", &conf_net_model, XML_REQUIRED, &v) < 0)
		return -1;
	if ((n = xml_child(node, "mtu"))) {
		if (xml_attr_uint(n, "size", &net->mtu) < 0)
			return -1;
		if (!net->mtu) {
			drv_error_report(VIR_ERR_XML_ERROR, "Invalid value for attribute 'size' in element 'mtu': '0'");
			return -1;
		}
	}
	return parse_alias(node, &net->alias);
}

/* The parts of <serial> and <console> they share: type, source, log. */
static int parse_chr_source(xmlNodePtr node, struct domain_chr *c)
{
	xmlNodePtr n;
	int v;

	if (xml_attr_enum(node, "type", &conf_chr_type, CHR_PTY, &c->type) < 0)
		return -1;
	n = xml_child(node, "source");
	switch (c->type) {
	case CHR_PTY:
		/* Only a running guest's status XML has it: the allocated pty. */
		if (n)
			c->path = xml_attr(n, "path");
		break;
	case CHR_FILE:
		if (!n || !(c->path = xml_attr(n, "path"))) {
			drv_error_report(VIR_ERR_XML_ERROR, "Missing source path attribute for char device");
			return -1;
		}
		break;
	case CHR_UNIX:
		if (!n || !(c->path = xml_attr(n, "path"))) {
			drv_error_report(VIR_ERR_XML_ERROR, "Missing source path attribute for char device");
			return -1;
		}
		/* libvirt's default for a unix source is to connect; kvmm only
		 * listens, so an absent mode is refused like mode='connect'. */
		g_autofree char *mode = xml_attr(n, "mode");
		if ((c->unix_mode = conf_enum_lookup(&conf_unix_mode, mode ? mode : "connect")) != 0) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "unix socket mode '%s' is not supported by kvmm (it listens); use mode='bind'",
					 mode ? mode : "connect");
			return -1;
		}
		break;
	}
	if ((n = xml_child(node, "log"))) {
		if (!(c->log_file = xml_attr_required(n, "file")) ||
		    xml_attr_enum(n, "append", &conf_on_off, XML_OPTIONAL, &v) < 0)
			return -1;
		c->log_append = v == 0 ? TRI_ON : v == 1 ? TRI_OFF : TRI_ABSENT;
	}
	return parse_alias(node, &c->alias);
}

static int parse_serial(xmlNodePtr node, struct domain_def *def)
{
	struct domain_chr *c = APPEND(def->serials, def->nserials);
	xmlNodePtr t, m;
	int v;

	c->port = def->nserials - 1;
	if (parse_chr_source(node, c) < 0)
		return -1;
	if ((t = xml_child(node, "target"))) {
		unsigned port = c->port;
		if (xml_attr_enum(t, "type", &conf_serial_target, 0, &v) < 0 ||
		    xml_attr_uint(t, "port", &port) < 0)
			return -1;
		c->port = port;
		if ((m = xml_child(t, "model")) &&
		    xml_attr_enum(m, "name", &conf_serial_model, XML_REQUIRED, &v) < 0)
			return -1;
	}
	return 0;
}

static int parse_console(xmlNodePtr node, struct domain_def *def)
{
	struct domain_chr *c = APPEND(def->consoles, def->nconsoles);
	xmlNodePtr t;

	c->port = -1;
	c->target = CONSOLE_SERIAL;
	if (parse_chr_source(node, c) < 0)
		return -1;
	/* Live XML repeats a pty's path as tty= (libvirt's legacy form);
	 * <source path> says the same, so it is read and not kept. */
	g_free(xml_attr(node, "tty"));
	if ((t = xml_child(node, "target"))) {
		unsigned port = ~0u;
		if (xml_attr_enum(t, "type", &conf_console_target, CONSOLE_SERIAL, &c->target) < 0 ||
		    xml_attr_uint(t, "port", &port) < 0)
			return -1;
		if (port != ~0u)
			c->port = port;
	}
	return 0;
}

static int parse_rng(xmlNodePtr node, struct domain_def *def)
{
	struct domain_rng *r = APPEND(def->rngs, def->nrngs);
	xmlNodePtr b;
	int v;

	if (xml_attr_enum(node, "model", &conf_rng_model, XML_REQUIRED, &v) < 0)
		return -1;
	if (!(b = xml_child(node, "backend"))) {
		drv_error_report(VIR_ERR_XML_ERROR, "missing RNG device backend");
		return -1;
	}
	if (xml_attr_enum(b, "model", &conf_rng_backend, XML_REQUIRED, &v) < 0)
		return -1;
	g_autofree char *path = xml_text(b);
	g_strstrip(path);
	/* libvirt's default source for model='random'. */
	r->source = conf_enum_lookup(&conf_rng_source, *path ? path : "/dev/urandom");
	if (r->source < 0) {
		conf_enum_refuse(&conf_rng_source, path);
		return -1;
	}
	return parse_alias(node, &r->alias);
}

static int parse_memballoon(xmlNodePtr node, struct domain_def *def)
{
	xmlNodePtr n;
	int deflate, reporting;

	if (xml_attr_enum(node, "model", &conf_balloon_model, XML_REQUIRED, &def->balloon_model) < 0 ||
	    xml_attr_enum(node, "autodeflate", &conf_on_off, XML_OPTIONAL, &deflate) < 0 ||
	    xml_attr_enum(node, "freePageReporting", &conf_on_off, XML_OPTIONAL, &reporting) < 0)
		return -1;
	def->balloon_autodeflate = deflate == 0 ? TRI_ON : deflate == 1 ? TRI_OFF : TRI_ABSENT;
	def->balloon_free_page_reporting = reporting == 0 ? TRI_ON : reporting == 1 ? TRI_OFF : TRI_ABSENT;
	if ((n = xml_child(node, "stats")) && def->balloon_model == BALLOON_VIRTIO) {
		if (xml_attr_uint(n, "period", &def->balloon_period) < 0)
			return -1;
	}
	return parse_alias(node, &def->balloon_alias);
}

static int parse_controller(xmlNodePtr node, struct domain_def *def)
{
	struct domain_controller *c;
	unsigned index = 0;
	int type, pci_model = 0;

	if (xml_attr_enum(node, "type", &conf_controller_type, XML_REQUIRED, &type) < 0 ||
	    xml_attr_uint(node, "index", &index) < 0)
		return -1;
	/* The model first: a q35 definition's pcie-root-port (with no
	 * index) is told what to do rather than that index 0 is taken. */
	if (type == CTRL_PCI) {
		g_autofree char *model = xml_attr(node, "model");

		/* Only the root has an alternative; ports and bridges go. */
		if (model && strcmp(model, "pci-root") && strcmp(model, "pcie-root")) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "pci controller model '%s' is not supported by kvmm (it has one PCI bus, the root); remove it",
					 model);
			return -1;
		}
		if (xml_attr_enum(node, "model", &conf_pci_model, 0, &pci_model) < 0)
			return -1;
	}
	if (index != 0) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "%s controller index %u is not supported by kvmm; it has only index 0",
				 conf_enum_name(&conf_controller_type, type), index);
		return -1;
	}
	for (size_t i = 0; i < def->ncontrollers; i++) {
		if (def->controllers[i].type == type) {
			drv_error_report(VIR_ERR_XML_ERROR, "Multiple '%s' controllers with index '0'",
					 conf_enum_name(&conf_controller_type, type));
			return -1;
		}
	}
	c = APPEND(def->controllers, def->ncontrollers);
	c->type = type;
	if (parse_alias(node, &c->alias) < 0)
		return -1;
	/* pci index 0 is the root bus and defaults to it, as in libvirt.  A usb
	 * controller without a model would be libvirt's default USB controller,
	 * which kvmm does not have. */
	if (type == CTRL_PCI) {
		c->model = pci_model;
		return 0;
	}
	g_autofree char *model = xml_attr(node, "model");
	if ((c->model = conf_enum_lookup(&conf_usb_model, model ? model : "default")) < 0) {
		conf_enum_refuse(&conf_usb_model, model ? model : "default");
		return -1;
	}
	return 0;
}

int parse_devices(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr devs = xml_child(root, "devices");
	bool balloon = false;

	def->balloon_model = -1;
	if (!devs)
		return 0;
	for (xmlNodePtr n = devs->children; n; n = n->next) {
		int rc = 0;

		if (n->type != XML_ELEMENT_NODE || n->ns)
			continue;
		if (xml_is_element(n, "emulator") && !def->emulator)
			def->emulator = g_strstrip(xml_text(n));
		else if (xml_is_element(n, "disk"))
			rc = parse_disk(n, def);
		else if (xml_is_element(n, "controller"))
			rc = parse_controller(n, def);
		else if (xml_is_element(n, "interface"))
			rc = parse_interface(n, def);
		else if (xml_is_element(n, "serial"))
			rc = parse_serial(n, def);
		else if (xml_is_element(n, "console"))
			rc = parse_console(n, def);
		else if (xml_is_element(n, "rng"))
			rc = parse_rng(n, def);
		else if (xml_is_element(n, "memballoon") && !balloon)
			rc = parse_memballoon(n, def), balloon = true;
		else if (xml_is_element(n, "channel")) {
			/* virt-install's default for QEMU: the guest agent's */
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "device 'channel' (virtio-serial, such as the QEMU guest agent's) is not supported by kvmm; remove it (virt-install: --channel none)");
			return -1;
		}
		else
			continue;	/* refused after the parse, by name */
		if (!xml_is_element(n, "emulator") && rc < 0)
			return -1;
		xml_take(n);
	}
	return 0;
}
