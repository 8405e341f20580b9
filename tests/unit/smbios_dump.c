/* smbios_dump CONFIG OUT3 OUT2: builds the SMBIOS tables of a VM
 * configuration (kvmm's parser, then arch/x86/smbios.c) and writes them
 * in the form `dmidecode --from-dump` reads: an entry point at offset 0
 * and the table at the file offset it names.  OUT3 starts with the 3.0
 * entry point, OUT2 with the 2.8 one; tests/vmm/test_smbios.py runs
 * dmidecode on both. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "arch/x86/layout.h"
#include "arch/x86/smbios.h"
#include "config.h"

static uint8_t buf[X86_SMBIOS_SIZE];

static int write_file(const char *path, const uint8_t *p, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(p, 1, len, f) != len || fclose(f)) {
		perror(path);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct vm_config cfg;
	json_object *in;
	char err[512];
	int64_t used;

	if (argc != 4) {
		fprintf(stderr, "usage: smbios_dump CONFIG OUT3 OUT2\n");
		return 2;
	}
	in = json_object_from_file(argv[1]);
	if (!in || config_from_json(in, &cfg, err, sizeof(err))) {
		fprintf(stderr, "error: %s\n", in ? err : json_util_get_last_err());
		return 1;
	}
	/* At address 0 the table's address is its offset in the file. */
	used = smbios_build(&cfg.smbios, buf, 0, sizeof(buf));
	if (used < 0) {
		fprintf(stderr, "error: smbios_build: %s\n", strerror((int)-used));
		return 1;
	}
	if (write_file(argv[2], buf, used))
		return 1;
	memmove(buf, buf + SMBIOS2_EP_OFF, 0x1F);	/* the 2.8 entry point first */
	memset(buf + 0x1F, 0, SMBIOS_TABLE_OFF - 0x1F);
	if (write_file(argv[3], buf, used))
		return 1;
	config_free(&cfg);
	json_object_put(in);
	return 0;
}
