/* kvmm: command line -> VM configuration -> run.  The flags are turned
 * into the same JSON document a --config file holds, and both go through
 * config_from_json(), so there is exactly one parser. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api.h"
#include "block/block.h"
#include "chardev.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "sandbox.h"
#include "migration/migration.h"
#include "migration/postcopy.h"
#include "util.h"
#include "vm.h"

static const char usage[] =
	"Usage: kvmm --kernel PATH [options]\n"
	"Run one virtual machine on KVM.\n"
	"\n"
	"  --kernel PATH        bzImage (Linux boot protocol) or ELF vmlinux with a PVH note\n"
	"  --initrd PATH        initial ramdisk\n"
	"  --cmdline STRING     kernel command line\n"
	"  --memory SIZE        guest RAM, e.g. 512M, 4G (default 512M)\n"
	"  --cpus N             vCPUs (default 1)\n"
	"  --max-cpus M         vCPUs with hot-added ones, from N up (default N; docs/hotplug.md)\n"
	"  --serial BACKEND     COM1 backend: stdio, pty, file:PATH, unix:PATH, none (default stdio)\n"
	"  --console BACKEND    a virtio console (PCI) on BACKEND: stdio, pty, file:PATH, unix:PATH, none\n"
	"  --api-socket PATH    control socket (JSON, see docs/api.md)\n"
	"  --name NAME          VM name, shown in status and logs\n"
	"  --no-reboot          exit (status 2) when the guest resets instead of rebooting\n"
	"  --no-thp             guest RAM on small pages only: a smaller footprint, slower big I/O\n"
	"  --hugepages SIZE     guest RAM from the host's reserved huge pages of SIZE (2M or 1G),\n"
	"                       all of it taken at start; not with --balloon\n"
	"  --paused             start with the vCPUs stopped; the control socket's resume runs them\n"
	"  --rng                a virtio-rng device (PCI) fed by the host's getrandom()\n"
	"  --balloon[=OPTS]     a virtio-balloon device (PCI); OPTS: deflate_on_oom=on,\n"
	"                       free_page_reporting=on,stats_period=SECONDS\n"
	"  --pvm-compat         KVM-PVM test hosts only: run a stock kernel (docs/pvm-compat.md)\n"
	"  --disk path=IMG[,readonly=on][,cache=MODE][,serial=ID][,blk_size=N]\n"
	"         [,shareable=on]  a virtio-blk disk on a raw image (repeatable); shareable: others may\n"
	"                       use the image at once (a shared lock); also error_policy=,\n"
	"                       rerror_policy=stop|report|ignore|enospace: on host I/O errors;\n"
	"                       MODE: writeback, none, writethrough, directsync or unsafe\n"
	"  --net tap=NAME[,mac=MAC][,mtu=N] | fd=N[,mac=MAC][,mtu=N]\n"
	"                       a virtio-net NIC on a tap device (repeatable, at most 8)\n"
	"  --sandbox            once everything is open, run confined: empty private root,\n"
	"                       unprivileged, no capabilities, seccomp (docs/kvmm.md)\n"
	"  --uid USER, --gid GROUP  who the sandbox runs as (default nobody/nogroup;\n"
	"                       either implies --sandbox)\n"
	"  --sandbox-log        debugging: a forbidden system call fails with EPERM and is\n"
	"                       logged instead of killing kvmm (implies --sandbox)\n"
	"  --config FILE        VM configuration as JSON (flags given too override it)\n"
	"  --restore FILE       continue the VM a \"save\" wrote to FILE (docs/state-stream.md);\n"
	"                       options given too may change host-side paths only; with --paused\n"
	"                       it waits for resume\n"
	"  --incoming URI       live migration's destination: wait on URI (tcp:HOST:PORT,\n"
	"                       unix:PATH, fd:N: an inherited connected socket or pipe) for\n"
	"                       one connection, read the VM from it (a migration's or a\n"
	"                       save's stream) and run it as --restore does\n"
	"  -v, --verbose        more messages (repeat for debug)\n"
	"  -h, --help           this text\n"
	"  --version            print the version\n"
	"\n"
	"Exit status: 0 guest powered off or quit, 1 error, 2 guest reset with --no-reboot,\n"
	"3 guest crashed, 4 stopped by a signal.  On an interactive stdio console, Ctrl-]\n"
	"quits.\n";

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEMORY, OPT_CPUS, OPT_SERIAL,
       OPT_API, OPT_NAME, OPT_NOREBOOT, OPT_RNG, OPT_DISK, OPT_CONFIG, OPT_VERSION,
       OPT_CONSOLE, OPT_PAUSED, OPT_NET, OPT_NOTHP, OPT_BALLOON,
       OPT_PVM_COMPAT, OPT_SANDBOX, OPT_UID, OPT_GID, OPT_SANDBOX_LOG, OPT_HUGEPAGES,
       OPT_RESTORE, OPT_INCOMING, OPT_MAX_CPUS };

static const struct option long_opts[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "max-cpus", required_argument, NULL, OPT_MAX_CPUS },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "api-socket", required_argument, NULL, OPT_API },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "no-reboot", no_argument, NULL, OPT_NOREBOOT },
	{ "paused", no_argument, NULL, OPT_PAUSED },
	{ "no-thp", no_argument, NULL, OPT_NOTHP },
	{ "hugepages", required_argument, NULL, OPT_HUGEPAGES },
	{ "rng", no_argument, NULL, OPT_RNG },
	{ "balloon", optional_argument, NULL, OPT_BALLOON },
	{ "pvm-compat", no_argument, NULL, OPT_PVM_COMPAT },
	{ "sandbox", no_argument, NULL, OPT_SANDBOX },
	{ "uid", required_argument, NULL, OPT_UID },
	{ "gid", required_argument, NULL, OPT_GID },
	{ "sandbox-log", no_argument, NULL, OPT_SANDBOX_LOG },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "net", required_argument, NULL, OPT_NET },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* The JSON key each flag sets. */
static const char *opt_key(int opt)
{
	switch (opt) {
	case OPT_KERNEL: return "kernel";
	case OPT_INITRD: return "initrd";
	case OPT_CMDLINE: return "cmdline";
	case OPT_MEMORY: return "memory";
	case OPT_CPUS: return "cpus";
	case OPT_MAX_CPUS: return "max_cpus";
	case OPT_SERIAL: return "serial";
	case OPT_CONSOLE: return "console";
	case OPT_API: return "api_socket";
	case OPT_NAME: return "name";
	case OPT_HUGEPAGES: return "hugepages";
	}
	return NULL;
}

static struct json_object *load_config_file(const char *path)
{
	struct json_object *o = json_object_from_file(path);
	char why[256];

	if (!o) {
		/* json-c's message ends in a newline; keep ours one line. */
		snprintf(why, sizeof(why), "%s",
			 json_util_get_last_err() ? json_util_get_last_err() : "invalid JSON");
		why[strcspn(why, "\n")] = '\0';
		pr_err("cannot read configuration %s: %s; give --config a JSON file (schemas/vm-config.schema.json)",
		       path, why);
	}
	return o;
}

/* The "sandbox" object the sandbox flags fill (a config file's true
 * becomes {}). */
static struct json_object *sandbox_obj(struct json_object *obj)
{
	struct json_object *sb;

	if (json_object_object_get_ex(obj, "sandbox", &sb) &&
	    json_object_is_type(sb, json_type_object))
		return sb;
	sb = json_object_new_object();
	json_object_object_add(obj, "sandbox", sb);
	return sb;
}

static const char *restore_path;	/* --restore */
static const char *incoming_uri;	/* --incoming */

/* Returns the config object, or NULL after printing why (exit 1), or
 * sets *done for --help / --version. */
static struct json_object *parse_args(int argc, char **argv, int *verbosity, bool *done)
{
	struct json_object *obj = NULL, *disks = NULL, *nets = NULL;
	int opt, i;

	/* --config first, so the flags given with it override its values
	 * whatever their order. */
	for (i = 1; i < argc - 1; i++) {
		if (!strcmp(argv[i], "--config")) {
			obj = load_config_file(argv[i + 1]);
			if (!obj)
				return NULL;
		}
	}
	if (!obj)
		obj = json_object_new_object();
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":vh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'v':
			(*verbosity)++;
			break;
		case 'h':
			fputs(usage, stdout);
			*done = true;
			goto out_done;
		case OPT_VERSION:
			printf("kvmm %s\n", PACKAGE_VERSION);
			*done = true;
			goto out_done;
		case OPT_CONFIG:
			break;
		case OPT_RESTORE:
			restore_path = optarg;
			break;
		case OPT_INCOMING:
			incoming_uri = optarg;
			break;
		case OPT_NOREBOOT:
			json_object_object_add(obj, "no_reboot", json_object_new_boolean(1));
			break;
		case OPT_RNG:
			json_object_object_add(obj, "rng", json_object_new_boolean(1));
			break;
		case OPT_BALLOON:
			json_object_object_add(obj, "balloon", json_object_new_string(optarg ? optarg : ""));
			break;
		case OPT_PAUSED:
			json_object_object_add(obj, "paused", json_object_new_boolean(1));
			break;
		case OPT_PVM_COMPAT:
			json_object_object_add(obj, "pvm_compat", json_object_new_boolean(1));
			break;
		case OPT_SANDBOX:
			sandbox_obj(obj);
			break;
		case OPT_UID:
		case OPT_GID:
			json_object_object_add(sandbox_obj(obj), opt == OPT_UID ? "uid" : "gid",
					       json_object_new_string(optarg));
			break;
		case OPT_SANDBOX_LOG:
			json_object_object_add(sandbox_obj(obj), "log", json_object_new_boolean(1));
			break;
		case OPT_NOTHP:
			json_object_object_add(obj, "thp", json_object_new_boolean(0));
			break;
		case OPT_DISK:
			/* The first --disk replaces a config file's disks, the
			 * others add to it; config.c parses each string. */
			if (!disks) {
				disks = json_object_new_array();
				json_object_object_add(obj, "disks", disks);
			}
			json_object_array_add(disks, json_object_new_string(optarg));
			break;
		case OPT_NET:
			/* Like --disk: the first replaces a config file's NICs. */
			if (!nets) {
				nets = json_object_new_array();
				json_object_object_add(obj, "nets", nets);
			}
			json_object_array_add(nets, json_object_new_string(optarg));
			break;
		case ':':
			pr_err("option '%s' needs a value; see kvmm --help", argv[optind - 1]);
			goto fail;
		case '?':
			pr_err("unknown option '%s'; see kvmm --help", argv[optind - 1]);
			goto fail;
		default:
			json_object_object_add(obj, opt_key(opt), json_object_new_string(optarg));
			break;
		}
	}
	if (optind < argc) {
		pr_err("unexpected argument '%s'; see kvmm --help", argv[optind]);
		goto fail;
	}
	if (incoming_uri && restore_path) {
		pr_err("--incoming and --restore both name where the VM comes from: give one");
		goto fail;
	}
	return obj;
out_done:
fail:
	json_object_put(obj);
	return NULL;
}

static void on_request(void *opaque, uint32_t events)
{
	vm_handle_request(opaque);
}

struct sig_watch {
	struct vm *vm;
	int fd;
};

static void on_signal(void *opaque, uint32_t events)
{
	struct sig_watch *w = opaque;
	struct signalfd_siginfo si;

	if (read(w->fd, &si, sizeof(si)) != sizeof(si))
		return;
	pr_info("stopping on signal %u", si.ssi_signo);
	vm_stop(w->vm, REASON_SIGNAL, KVMM_EXIT_SIGNAL);
}

static void on_escape(void *opaque)
{
	vm_request(opaque, REASON_QUIT, NULL);
}

int main(int argc, char **argv)
{
	static struct vm vm;
	struct vm_config cfg;
	struct json_object *obj;
	struct sig_watch sw = { &vm, -1 };
	struct restore rs = { .fd = -1 };
	char *config_json = NULL;
	struct loop *loop = NULL;
	sigset_t stop_sigs;
	int verbosity = 0, status = KVMM_EXIT_ERROR;
	bool done = false;
	char err[512];

	log_init("kvmm", LOG_WARN);
	obj = parse_args(argc, argv, &verbosity, &done);
	if (!obj)
		return done ? 0 : KVMM_EXIT_ERROR;
	log_set_level(verbosity >= 2 ? LOG_DEBUG : verbosity ? LOG_INFO : LOG_WARN);
	memset(&cfg, 0, sizeof(cfg));
	/* --incoming: the stream of a live migration, read as a restore's. */
	if (incoming_uri) {
		int fd = migration_listen(incoming_uri, err, sizeof(err));

		if (fd < 0 || migration_restore_open_fd(&rs, fd, incoming_uri, err, sizeof(err))) {
			pr_err("%s", err);
			json_object_put(obj);
			migration_restore_close(&rs);
			return KVMM_EXIT_ERROR;
		}
		restore_path = incoming_uri;
	}
	if (restore_path ?
	    (!incoming_uri && migration_restore_open(&rs, restore_path, err, sizeof(err))) ||
	    migration_restore_config(&rs, obj, &cfg, &config_json, err, sizeof(err)) :
	    config_from_json(obj, &cfg, err, sizeof(err))) {
		pr_err("%s", err);
		json_object_put(obj);
		config_free(&cfg);
		migration_restore_close(&rs);
		return KVMM_EXIT_ERROR;
	}
	if (!config_json)
		config_json = strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
	json_object_put(obj);

	/* Termination signals are read from a signalfd by the main loop;
	 * blocked here so every thread created later inherits the mask. */
	sigemptyset(&stop_sigs);
	sigaddset(&stop_sigs, SIGTERM);
	sigaddset(&stop_sigs, SIGINT);
	sigaddset(&stop_sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	loop = loop_new();
	sw.fd = signalfd(-1, &stop_sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (!loop || sw.fd < 0) {
		pr_err("cannot set up the event loop: %s", strerror(errno));
		goto out;
	}
	/* A stream from a connection is a migration's: its source holds the
	 * disks' locks until it has sent everything; they are taken when
	 * the VM first runs. */
	block_defer_locks(incoming_uri != NULL);
	if (restore_path ? vm_create_for_restore(&vm, &cfg, loop) : vm_create(&vm, &cfg, loop))
		goto out;
	block_defer_locks(false);
	vm.config_json = config_json;
	vm.serial_backend->escape = on_escape;
	vm.serial_backend->opaque_escape = &vm;
	if (vm.console_backend) {
		vm.console_backend->escape = on_escape;
		vm.console_backend->opaque_escape = &vm;
	}
	if (loop_add(loop, sw.fd, EPOLLIN, on_signal, &sw) ||
	    loop_add(loop, vm.request_fd, EPOLLIN, on_request, &vm))
		goto out;
	if (cfg.api_socket && api_open(&vm, cfg.api_socket, &vm.api))
		goto out;
	if (restore_path) {
		/* Everything is checked before the guest runs an instruction. */
		if (migration_restore_load(&rs, &vm, err, sizeof(err))) {
			pr_err("cannot restore %s: %s", restore_path, err);
			goto out;
		}
		migration_restore_close(&rs);
		if (!cfg.paused && kvm_clock_restore(&vm))
			pr_debug("KVM_SET_CLOCK failed");
		if (!cfg.paused && block_lock_all(true))
			goto out;
	}
	/* Everything opened by path is open; no thread runs yet, so each
	 * vCPU thread starts with what this one dropped. */
	if (cfg.sandbox.enabled && sandbox_enter(&cfg.sandbox))
		goto out;
	/* Post-copy: the pages the guest lacks are served from its first
	 * instruction on. */
	if (postcopy_incoming_pending() && postcopy_incoming_start(&vm))
		goto out;
	if (vm_start(&vm))
		goto out;
	if (incoming_uri && rs.state_ns)
		pr_debug("incoming: the vCPUs started %llu us after the state began to arrive",
			 (unsigned long long)(now_ns() - rs.state_ns) / 1000);
	loop_run(loop);
	status = vm.exit_status;
out:
	api_close(vm.api);
	vm.api = NULL;
	vm_destroy(&vm);
	if (sw.fd >= 0)
		close(sw.fd);
	loop_free(loop);
	config_free(&cfg);
	migration_restore_close(&rs);
	free(config_json);
	return status;
}
