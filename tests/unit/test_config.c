/* config_from_json: the one parser behind flags and --config files. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "unit.h"
#include "util.h"

static char err[512];

static int parse(const char *json, struct vm_config *cfg)
{
	struct json_object *o = json_tokener_parse(json);
	int r;

	err[0] = '\0';
	r = config_from_json(o, cfg, err, sizeof(err));
	json_object_put(o);
	return r;
}

UNIT_TEST(defaults_apply_when_only_kernel_given)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\"}", &c) == 0);
	CHECK_STR(c.kernel, "/k");
	CHECK_EQ_U64(c.memory, 512 * MiB);
	CHECK_EQ_U64(c.cpus, 1);
	CHECK(c.serial.mode == SERIAL_STDIO);
	CHECK_STR(c.cmdline, "");
	CHECK_STR(c.name, "kvmm");
	CHECK(!c.no_reboot);
	CHECK(!c.rng);
	CHECK(c.thp);
	config_free(&c);
}

UNIT_TEST(all_keys_are_read)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"initrd\":\"/i\",\"cmdline\":\"a b\","
		    "\"memory\":\"4G\",\"cpus\":\"3\",\"serial\":\"file:/tmp/s\","
		    "\"api_socket\":\"/tmp/a\",\"name\":\"n\",\"no_reboot\":true,"
		    "\"rng\":true,\"thp\":false}", &c) == 0);
	CHECK_STR(c.initrd, "/i");
	CHECK_STR(c.cmdline, "a b");
	CHECK_EQ_U64(c.memory, 4 * GiB);
	CHECK_EQ_U64(c.cpus, 3);
	CHECK(c.serial.mode == SERIAL_FILE);
	CHECK_STR(c.serial.path, "/tmp/s");
	CHECK_STR(c.api_socket, "/tmp/a");
	CHECK_STR(c.name, "n");
	CHECK(c.no_reboot);
	CHECK(c.rng);
	CHECK(!c.thp);
	config_free(&c);
}

UNIT_TEST(rng_must_be_a_boolean)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"rng\":\"yes\"}", &c) == -EINVAL);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"rng\":1}", &c) == -EINVAL);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"rng\":false}", &c) == 0);
	CHECK(!c.rng);
	config_free(&c);
}

UNIT_TEST(memory_accepts_bytes_and_suffixes)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"memory\":33554432}", &c) == 0);
	CHECK_EQ_U64(c.memory, 32 * MiB);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"memory\":\"2GiB\"}", &c) == 0);
	CHECK_EQ_U64(c.memory, 2 * GiB);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"memory\":\"64m\"}", &c) == 0);
	CHECK_EQ_U64(c.memory, 64 * MiB);
	config_free(&c);
}

UNIT_TEST(invalid_memory_is_refused_with_a_fix)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"memory\":\"12Q\"}", &c) < 0);
	CHECK_STR(err, "memory size '12Q' is not valid: use a number with an optional K, M, G or T suffix, e.g. 512M");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"memory\":\"1M\"}", &c) < 0);
	CHECK(strstr(err, "too small") != NULL);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"memory\":\"2T\"}", &c) < 0);
	CHECK(strstr(err, "at most 1T") != NULL);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"memory\":\"99999999999999999999G\"}", &c) < 0);
	config_free(&c);
}

UNIT_TEST(cpu_count_must_be_in_range)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"cpus\":0}", &c) < 0);
	CHECK_STR(err, "cpus 0 is out of range: use a count from 1 to 254");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"cpus\":\"two\"}", &c) < 0);
	CHECK_STR(err, "cpus 'two' is not a number: use e.g. --cpus 2");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"cpus\":255}", &c) < 0);
	config_free(&c);
}

UNIT_TEST(serial_backends_parse)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"serial\":\"pty\"}", &c) == 0);
	CHECK(c.serial.mode == SERIAL_PTY);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"serial\":{\"mode\":\"unix\",\"path\":\"/s\"}}", &c) == 0);
	CHECK(c.serial.mode == SERIAL_UNIX);
	CHECK_STR(c.serial.path, "/s");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"serial\":\"none\"}", &c) == 0);
	CHECK(c.serial.mode == SERIAL_NONE);
	config_free(&c);
}

UNIT_TEST(bad_serial_backends_are_refused)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"serial\":\"tcp:1\"}", &c) < 0);
	CHECK_STR(err, "serial backend 'tcp' is unknown: use stdio, pty, file:PATH, unix:PATH or none");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"serial\":\"file\"}", &c) < 0);
	CHECK_STR(err, "serial backend 'file' needs a path: use file:PATH");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"serial\":\"pty:/x\"}", &c) < 0);
	config_free(&c);
}

UNIT_TEST(console_backends_parse)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\"}", &c) == 0);
	CHECK(!c.has_console);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"pty\"}", &c) == 0);
	CHECK(c.has_console && c.console.mode == SERIAL_PTY);
	CHECK(c.serial.mode == SERIAL_STDIO);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"unix:/c\",\"serial\":\"unix:/s\"}", &c) == 0);
	CHECK(c.console.mode == SERIAL_UNIX);
	CHECK_STR(c.console.path, "/c");
	CHECK_STR(c.serial.path, "/s");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":{\"mode\":\"file\",\"path\":\"/f\"}}", &c) == 0);
	CHECK(c.console.mode == SERIAL_FILE);
	CHECK_STR(c.console.path, "/f");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"stdio\",\"serial\":\"none\"}", &c) == 0);
	CHECK(c.has_console && c.console.mode == SERIAL_STDIO);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"none\"}", &c) == 0);
	CHECK(c.has_console && c.console.mode == SERIAL_NONE);
	config_free(&c);
}

UNIT_TEST(bad_console_backends_are_refused)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"tcp:1\"}", &c) < 0);
	CHECK_STR(err, "console backend 'tcp' is unknown: use stdio, pty, file:PATH, unix:PATH or none");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"unix\"}", &c) < 0);
	CHECK_STR(err, "console backend 'unix' needs a path: use unix:PATH");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"none:/x\"}", &c) < 0);
	CHECK_STR(err, "console backend 'none' takes no path");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":true}", &c) < 0);
	CHECK_STR(err, "console must be a string such as \"stdio\" or \"file:PATH\"");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":{\"path\":\"/x\"}}", &c) < 0);
	CHECK_STR(err, "console.mode must be one of stdio, pty, file, unix, none");
	config_free(&c);
	/* two host ends on one stdin, or one socket */
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"stdio\"}", &c) < 0);
	CHECK_STR(err, "serial and console cannot both use stdio: give the serial port another backend, e.g. --serial none");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"console\":\"unix:/s\",\"serial\":\"unix:/s\"}", &c) < 0);
	CHECK_STR(err, "serial and console cannot share the socket /s: give each its own path");
	config_free(&c);
}

UNIT_TEST(missing_kernel_and_unknown_keys_are_refused)
{
	struct vm_config c;

	CHECK(parse("{}", &c) < 0);
	CHECK_STR(err, "no kernel given: use --kernel PATH (a bzImage or an ELF vmlinux)");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disk\":1}", &c) < 0);
	CHECK_STR(err, "unknown configuration key 'disk': see schemas/vm-config.schema.json");
	config_free(&c);
	CHECK(parse("[1]", &c) < 0);
	config_free(&c);
	CHECK(parse("{\"kernel\":5}", &c) < 0);
	CHECK_STR(err, "'kernel' must be a string");
	config_free(&c);
}

UNIT_TEST(parse_size_handles_edges)
{
	uint64_t v;

	CHECK(parse_size("0", &v) == 0 && v == 0);
	CHECK(parse_size("1k", &v) == 0 && v == 1024);
	CHECK(parse_size("1T", &v) == 0 && v == 1ULL << 40);
	CHECK(parse_size("", &v) < 0);
	CHECK(parse_size("-1", &v) < 0);
	CHECK(parse_size("1MX", &v) < 0);
	CHECK(parse_size("17179869184G", &v) < 0);	/* 2^64: overflows */
}

UNIT_TEST(disks_parse_from_strings_and_objects)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"disks\":["
		    "\"path=/a.img,readonly=on,cache=none,serial=S1,blk_size=4096\","
		    "{\"path\":\"/b,c.img\",\"cache\":\"unsafe\"},"
		    "\"path=/d.img\"]}", &c) == 0);
	CHECK_EQ_U64(c.ndisks, 3);
	CHECK_STR(c.disks[0].path, "/a.img");
	CHECK(c.disks[0].readonly);
	CHECK(c.disks[0].cache == DISK_CACHE_NONE);
	CHECK_STR(c.disks[0].serial, "S1");
	CHECK_EQ_U64(c.disks[0].blk_size, 4096);
	CHECK_STR(c.disks[1].path, "/b,c.img");
	CHECK(!c.disks[1].readonly);
	CHECK(c.disks[1].cache == DISK_CACHE_UNSAFE);
	CHECK(!c.disks[1].serial);
	CHECK_EQ_U64(c.disks[1].blk_size, 512);
	CHECK(c.disks[2].cache == DISK_CACHE_WRITEBACK);
	CHECK_STR(disk_cache_name(c.disks[2].cache), "writeback");
	CHECK(c.disks[2].werror == DISK_ERROR_DEFAULT && c.disks[2].rerror == DISK_ERROR_DEFAULT);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[\"path=/a,cache=writethrough\","
		    "{\"path\":\"/b\",\"cache\":\"directsync\"}]}", &c) == 0);
	CHECK(c.disks[0].cache == DISK_CACHE_WRITETHROUGH);
	CHECK(c.disks[1].cache == DISK_CACHE_DIRECTSYNC);
	CHECK_STR(disk_cache_name(c.disks[1].cache), "directsync");
	config_free(&c);
}

UNIT_TEST(disk_error_policies)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"disks\":["
		    "\"path=/a.img,error_policy=stop,rerror_policy=ignore\","
		    "{\"path\":\"/b.img\",\"error_policy\":\"enospace\",\"rerror_policy\":\"report\"}]}",
		    &c) == 0);
	CHECK(c.disks[0].werror == DISK_ERROR_STOP && c.disks[0].rerror == DISK_ERROR_IGNORE);
	CHECK(c.disks[1].werror == DISK_ERROR_ENOSPACE && c.disks[1].rerror == DISK_ERROR_REPORT);
	CHECK_STR(disk_error_policy_name(c.disks[1].werror), "enospace");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[\"path=/a,error_policy=default\"]}", &c) < 0);
	CHECK_STR(err, "disk 0: error_policy 'default' is unknown: use stop, report, ignore or enospace");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[{\"path\":\"/a\",\"rerror_policy\":1}]}", &c) < 0);
	CHECK_STR(err, "disk 0: rerror_policy must be a string");
	config_free(&c);
}

UNIT_TEST(bad_disks_are_refused_with_a_fix)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"disks\":\"path=/a\"}", &c) < 0);
	CHECK_STR(err, "disks must be an array of disks");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[\"path=/a\",\"cache=none\"]}", &c) < 0);
	CHECK_STR(err, "disk 1 has no path: use --disk path=IMAGE");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[\"path=/a,readonly=yes\"]}", &c) < 0);
	CHECK_STR(err, "disk 0: readonly=yes is not valid: use readonly=on or readonly=off");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[{\"path\":\"/a\",\"readonly\":\"on\"}]}", &c) < 0);
	CHECK_STR(err, "disk 0: readonly must be true or false");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[\"path=/a,serial=123456789012345678901\"]}", &c) < 0);
	CHECK_STR(err, "disk 0: serial '123456789012345678901' is longer than 20 bytes: shorten it");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[\"path=/a,blk_size=4k\"]}", &c) < 0);
	CHECK_STR(err, "disk 0: blk_size 4k is not valid: use 512, 1024, 2048 or 4096");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[{\"path\":\"/a\",\"blk_size\":8192}]}", &c) < 0);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[1]}", &c) < 0);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"disks\":[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\","
		    "\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]}", &c) < 0);
	CHECK_STR(err, "17 disks given: kvmm supports at most 16");
	config_free(&c);
}

UNIT_TEST(nets_parse_from_strings_and_objects)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"nets\":["
		    "\"tap=vnet0,mac=52:54:00:AB:cd:ef\","
		    "{\"tap\":\"t1\",\"mac\":\"02:00:00:00:00:01\"},"
		    "\"fd=7\",{\"fd\":9}]}", &c) == 0);
	CHECK_EQ_U64(c.nnets, 4);
	CHECK_STR(c.nets[0].tap, "vnet0");
	CHECK(c.nets[0].fd == -1);
	CHECK(c.nets[0].has_mac && !memcmp(c.nets[0].mac, mac, 6));
	CHECK_STR(c.nets[1].tap, "t1");
	CHECK(c.nets[1].has_mac && c.nets[1].mac[0] == 2 && c.nets[1].mac[5] == 1);
	CHECK(!c.nets[2].tap && c.nets[2].fd == 7 && !c.nets[2].has_mac);
	CHECK(c.nets[3].fd == 9);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\"}", &c) == 0);
	CHECK_EQ_U64(c.nnets, 0);
	config_free(&c);
}

static void net_refused(const char *nets, const char *want)
{
	struct vm_config c;
	char json[1024];

	snprintf(json, sizeof(json), "{\"kernel\":\"/k\",\"nets\":%s}", nets);
	CHECK(parse(json, &c) < 0);
	CHECK_STR(err, want);
	config_free(&c);
}

UNIT_TEST(bad_nets_are_refused_with_a_fix)
{
	net_refused("\"tap=a\"", "nets must be an array of NICs");
	net_refused("[\"mac=52:54:00:00:00:01\"]",
		    "net 0 needs exactly one of tap and fd: use --net tap=NAME or --net fd=N");
	net_refused("[\"tap=a,fd=3\"]",
		    "net 0 needs exactly one of tap and fd: use --net tap=NAME or --net fd=N");
	net_refused("[\"tap=a,model=e1000\"]", "net 0: unknown option 'model': use tap, fd, mac or mtu");
	net_refused("[\"tap=a,mac\"]", "net 0: option 'mac' has no value: use e.g. tap=NAME,mac=52:54:00:12:34:56");
	net_refused("[\"tap=a,mac=52:54:00:12:34\"]",
		    "net 0: mac '52:54:00:12:34' is not valid: use six hex bytes of a unicast address, e.g. 52:54:00:12:34:56");
	net_refused("[\"tap=a,mac=52:54:00:12:34:5g\"]",
		    "net 0: mac '52:54:00:12:34:5g' is not valid: use six hex bytes of a unicast address, e.g. 52:54:00:12:34:56");
	net_refused("[\"tap=a,mac=52:54:00:12:34:567\"]",
		    "net 0: mac '52:54:00:12:34:567' is not valid: use six hex bytes of a unicast address, e.g. 52:54:00:12:34:56");
	net_refused("[\"tap=a,mac=01:00:5e:00:00:01\"]",
		    "net 0: mac '01:00:5e:00:00:01' is not valid: use six hex bytes of a unicast address, e.g. 52:54:00:12:34:56");
	net_refused("[\"tap=a,mac=00:00:00:00:00:00\"]",
		    "net 0: mac '00:00:00:00:00:00' is not valid: use six hex bytes of a unicast address, e.g. 52:54:00:12:34:56");
	net_refused("[\"tap=0123456789abcdef\"]",
		    "net 0: tap name '0123456789abcdef' is not valid: use 1 to 15 characters without '/', ':' or spaces");
	net_refused("[\"tap=a/b\"]",
		    "net 0: tap name 'a/b' is not valid: use 1 to 15 characters without '/', ':' or spaces");
	net_refused("[{\"tap\":\"\"}]",
		    "net 0: tap name '' is not valid: use 1 to 15 characters without '/', ':' or spaces");
	net_refused("[\"fd=-1\"]", "net 0: fd -1 is not valid: give the number of an open tap file descriptor");
	net_refused("[\"fd=3x\"]", "net 0: fd 3x is not valid: give the number of an open tap file descriptor");
	net_refused("[{\"fd\":\"3\"}]", "net 0: fd must be a number");
	net_refused("[{\"tap\":1}]", "net 0: tap must be a string");
	net_refused("[1]", "net 0 must be a string such as \"tap=NAME,mac=52:54:00:12:34:56\" or an object");
	net_refused("[\"tap=a\",\"tap=a\"]", "net 1: tap 'a' is given twice: give each NIC its own tap");
	net_refused("[\"fd=4\",\"fd=4\"]", "net 1: fd 4 is given twice: give each NIC its own tap");
	net_refused("[\"tap=a,mac=52:54:00:00:00:01\",\"tap=b,mac=52:54:00:00:00:01\"]",
		    "net 1: its mac is the one net 0 has: give each NIC its own");
	net_refused("[\"tap=a\",\"tap=b\",\"tap=c\",\"tap=d\",\"tap=e\",\"tap=f\",\"tap=g\",\"tap=h\",\"tap=i\"]",
		    "9 NICs given: kvmm supports at most 8");
}

/* The edges of the shared ranges (vm_limits.h), which virtkvmmd refuses
 * the same way before it runs kvmm. */
UNIT_TEST(shared_limits_hold_at_their_edges)
{
	struct vm_config c;
	char json[256];

	snprintf(json, sizeof(json), "{\"kernel\":\"/k\",\"memory\":%llu,\"cpus\":%d}",
		 VM_MIN_MEMORY, VM_MAX_CPUS);
	CHECK(parse(json, &c) == 0);
	CHECK_EQ_U64(c.memory, VM_MIN_MEMORY);
	CHECK_EQ_U64(c.cpus, VM_MAX_CPUS);
	config_free(&c);
	snprintf(json, sizeof(json), "{\"kernel\":\"/k\",\"memory\":%llu}", VM_MAX_MEMORY);
	CHECK(parse(json, &c) == 0);
	config_free(&c);
	/* 16385 KiB: what a domain's <memory> is rounded up from */
	CHECK(parse("{\"kernel\":\"/k\",\"memory\":16778240}", &c) < 0);
	CHECK_STR(err, "memory size 16778240 bytes is not a multiple of 4K");
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"memory\":16781312}", &c) == 0);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"nets\":[\"tap=0123456789abcde\"]}", &c) == 0);
	config_free(&c);
	net_refused("[\"tap=tap:0\"]",
		    "net 0: tap name 'tap:0' is not valid: use 1 to 15 characters without '/', ':' or spaces");
	net_refused("[\"tap=..\"]",
		    "net 0: tap name '..' is not valid: use 1 to 15 characters without '/', ':' or spaces");
	CHECK(vm_tap_name_valid("vnet0") && !vm_tap_name_valid("a b") && !vm_tap_name_valid("."));
}

static void refused(const char *json, const char *want)
{
	struct vm_config c;

	CHECK(parse(json, &c) < 0);
	CHECK_STR(err, want);
	config_free(&c);
}

/* nova's console log: a log on either chardev, appended or written over. */
UNIT_TEST(chardev_logs_parse)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"serial\":{\"mode\":\"pty\",\"log\":{\"path\":\"/l\"}},"
		    "\"console\":{\"mode\":\"none\",\"log\":{\"path\":\"/m\",\"append\":true}}}", &c) == 0);
	CHECK_STR(c.serial.log, "/l");
	CHECK(!c.serial.log_append);
	CHECK_STR(c.console.log, "/m");
	CHECK(c.console.log_append);
	config_free(&c);
	CHECK(parse("{\"kernel\":\"/k\",\"serial\":\"pty\"}", &c) == 0);
	CHECK(c.serial.log == NULL);
	config_free(&c);
	refused("{\"kernel\":\"/k\",\"serial\":{\"mode\":\"pty\",\"log\":\"/l\"}}",
		"serial.log must be an object {\"path\": FILE, \"append\": true|false}");
	refused("{\"kernel\":\"/k\",\"serial\":{\"mode\":\"pty\",\"log\":{\"path\":\"\"}}}",
		"serial.log must be an object {\"path\": FILE, \"append\": true|false}");
	refused("{\"kernel\":\"/k\",\"console\":{\"mode\":\"pty\",\"log\":{\"path\":\"/l\",\"append\":1}}}",
		"console.log.append must be true or false");
	refused("{\"kernel\":\"/k\",\"serial\":{\"mode\":\"pty\",\"log\":{\"path\":\"/l\",\"mode\":1}}}",
		"serial.log: unknown key 'mode': use path, append and max_size");
	refused("{\"kernel\":\"/k\",\"serial\":{\"mode\":\"pty\",\"log\":{\"path\":\"/l\",\"max_size\":0}}}",
		"serial.log.max_size must be a positive number of bytes");
	refused("{\"kernel\":\"/k\",\"serial\":{\"mode\":\"pty\",\"logfile\":\"/l\"}}",
		"serial: unknown key 'logfile': use mode, path and log");
}

UNIT_TEST(shareable_mtu_and_vmcoreinfo_parse)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"vmcoreinfo\":true,"
		    "\"disks\":[\"path=/a,shareable=on\",{\"path\":\"/b\",\"shareable\":true},\"path=/c\"],"
		    "\"nets\":[\"tap=t0,mtu=1450\",{\"tap\":\"t1\",\"mtu\":65535},\"tap=t2\"]}", &c) == 0);
	CHECK(c.vmcoreinfo);
	CHECK(c.disks[0].shareable && c.disks[1].shareable && !c.disks[2].shareable);
	CHECK_EQ_U64(c.nets[0].mtu, 1450);
	CHECK_EQ_U64(c.nets[1].mtu, 65535);
	CHECK_EQ_U64(c.nets[2].mtu, 0);
	config_free(&c);
	refused("{\"kernel\":\"/k\",\"vmcoreinfo\":1}", "'vmcoreinfo' must be true or false");
	refused("{\"kernel\":\"/k\",\"disks\":[\"path=/a,shareable=yes\"]}",
		"disk 0: shareable=yes is not valid: use shareable=on or shareable=off");
	refused("{\"kernel\":\"/k\",\"disks\":[{\"path\":\"/a\",\"shareable\":\"on\"}]}",
		"disk 0: shareable must be true or false");
	net_refused("[\"tap=a,mtu=67\"]", "net 0: mtu 67 is not valid: use 68 to 65535");
	net_refused("[{\"tap\":\"a\",\"mtu\":65536}]", "net 0: mtu 65536 is not valid: use 68 to 65535");
	net_refused("[\"tap=a,mtu=15x\"]", "net 0: mtu 15x is not valid: use 68 to 65535");
	net_refused("[{\"tap\":\"a\",\"mtu\":\"1500\"}]", "net 0: mtu must be a number");
}

UNIT_TEST(disk_format_and_backing_chain_parse)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"disks\":["
		    "\"path=/t,format=qcow2,backing=/b1:/b2,backing_format=qcow2:raw\","
		    "{\"path\":\"/u\",\"format\":\"qcow2\",\"backing\":[\"/x:y\"],"
		    "\"backing_format\":[\"qcow2\"]},\"path=/r\"]}", &c) == 0);
	CHECK(c.disks[0].format == DISK_FORMAT_QCOW2);
	CHECK_EQ_U64(c.disks[0].nbacking, 2);
	CHECK_STR(c.disks[0].backing[0], "/b1");
	CHECK_STR(c.disks[0].backing[1], "/b2");
	CHECK_EQ_U64(c.disks[0].nbacking_format, 2);
	CHECK(c.disks[0].backing_format[0] == DISK_FORMAT_QCOW2 &&
	      c.disks[0].backing_format[1] == DISK_FORMAT_RAW);
	CHECK_EQ_U64(c.disks[1].nbacking, 1);
	CHECK_STR(c.disks[1].backing[0], "/x:y");	/* the array form keeps colons */
	CHECK(c.disks[2].format == DISK_FORMAT_RAW && !c.disks[2].nbacking);
	config_free(&c);
	refused("{\"kernel\":\"/k\",\"disks\":[\"path=/a,format=vmdk\"]}",
		"disk 0: format 'vmdk' is unknown: use raw or qcow2");
	refused("{\"kernel\":\"/k\",\"disks\":[\"path=/a,backing=/b\"]}",
		"disk 0: a raw image has no backing file: give format=qcow2 or drop backing");
	refused("{\"kernel\":\"/k\",\"disks\":[\"path=/a,format=qcow2,backing=/b,backing_format=raw:raw\"]}",
		"disk 0: backing_format names 2 layers but backing only 1");
	refused("{\"kernel\":\"/k\",\"disks\":[\"path=/a,format=qcow2,backing=/b,backing_format=vhd\"]}",
		"disk 0: format 'vhd' is unknown: use raw or qcow2");
	refused("{\"kernel\":\"/k\",\"disks\":[{\"path\":\"/a\",\"format\":\"qcow2\",\"backing\":[1]}]}",
		"disk 0: backing must hold strings");
	refused("{\"kernel\":\"/k\",\"disks\":[\"path=/a,format=qcow2,backing=1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17\"]}",
		"disk 0: backing has more than 16 layers");
	refused("{\"kernel\":\"/k\",\"disks\":[{\"path\":\"/a\",\"format\":2}]}",
		"disk 0: format must be a string");
}

static void cfg_refused(const char *json, const char *want)
{
	struct vm_config c;

	CHECK(parse(json, &c) == -EINVAL);
	CHECK_STR(err, want);
	config_free(&c);
}

/* What a save writes of the hot-added devices and vCPUs. */
UNIT_TEST(hotplug_and_present_vcpus_parse)
{
	struct vm_config c;

	CHECK(parse("{\"kernel\":\"/k\",\"cpus\":1,\"max_cpus\":4,\"vcpus_present\":[0,3],"
		    "\"hotplug\":[{\"type\":\"net\",\"id\":\"n\",\"slot\":9,\"tap\":\"t0\",\"mac\":\"52:54:00:00:00:09\"},"
		    "{\"type\":\"blk\",\"id\":\"d\",\"slot\":2,\"path\":\"/img\",\"serial\":\"s\"}]}", &c) == 0);
	CHECK_EQ_U64(c.nhotplug, 2);
	CHECK(c.hotplug[0].type == HOTPLUG_NET && c.hotplug[0].slot == 9);
	CHECK_STR(c.hotplug[0].id, "n");
	CHECK_STR(c.hotplug[0].net.tap, "t0");
	CHECK(c.hotplug[1].type == HOTPLUG_BLK && c.hotplug[1].slot == 2);
	CHECK_STR(c.hotplug[1].disk.path, "/img");
	CHECK_STR(c.hotplug[1].disk.serial, "s");
	CHECK(c.ndisks == 0 && c.nnets == 0);
	CHECK(config_cpu_present(&c, 0) && !config_cpu_present(&c, 1) && config_cpu_present(&c, 3));
	config_free(&c);
	/* Without it: the boot set. */
	CHECK(parse("{\"kernel\":\"/k\",\"cpus\":2,\"max_cpus\":4}", &c) == 0);
	CHECK(config_cpu_present(&c, 1) && !config_cpu_present(&c, 2));
	config_free(&c);
}

UNIT_TEST(bad_hotplug_and_present_vcpus_are_refused)
{
	cfg_refused("{\"kernel\":\"/k\",\"hotplug\":{}}", "hotplug must be an array of devices");
	cfg_refused("{\"kernel\":\"/k\",\"hotplug\":[{\"type\":\"blk\",\"id\":\"d\",\"path\":\"/i\"}]}",
		    "hotplug 0 must be {\"type\": \"blk\" or \"net\", \"id\", \"slot\", and the device's keys}");
	cfg_refused("{\"kernel\":\"/k\",\"hotplug\":[{\"type\":\"blk\",\"id\":\"d\",\"slot\":32,\"path\":\"/i\"}]}",
		    "hotplug 0: slot 32 is out of range: use 1 to 31");
	cfg_refused("{\"kernel\":\"/k\",\"hotplug\":[{\"type\":\"scsi\",\"id\":\"d\",\"slot\":3}]}",
		    "hotplug 0: type 'scsi' is unknown: use blk or net");
	cfg_refused("{\"kernel\":\"/k\",\"hotplug\":[{\"type\":\"blk\",\"id\":\"d\",\"slot\":3,\"path\":\"/i\"},"
		    "{\"type\":\"blk\",\"id\":\"e\",\"slot\":3,\"path\":\"/j\"}]}",
		    "hotplug 1: its id or slot is hotplug 0's");
	cfg_refused("{\"kernel\":\"/k\",\"hotplug\":[{\"type\":\"net\",\"id\":\"n\",\"slot\":3}]}",
		    "net 0 needs exactly one of tap and fd: use --net tap=NAME or --net fd=N");
	cfg_refused("{\"kernel\":\"/k\",\"max_cpus\":2,\"vcpus_present\":[1]}",
		    "vcpus_present must hold vCPU 0, the boot CPU");
	cfg_refused("{\"kernel\":\"/k\",\"max_cpus\":2,\"vcpus_present\":[0,2]}",
		    "vcpus_present names vCPU 2, past max_cpus 2");
	cfg_refused("{\"kernel\":\"/k\",\"vcpus_present\":[0,\"1\"]}",
		    "vcpus_present must hold vCPU ids 0 to 253");
}
