/* Driver for the unit-test binaries; see unit.h. */
#include "unit.h"

struct unit_case unit_cases[UNIT_MAX_CASES];
int unit_ncases;
int unit_failed;

static int run_case(const struct unit_case *c)
{
	unit_failed = 0;
	c->fn();
	printf("%s %s\n", unit_failed ? "FAIL" : "PASS", c->name);
	return unit_failed;
}

int main(int argc, char **argv)
{
	int i, bad = 0, found = 0;

	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (i = 0; i < unit_ncases; i++)
			printf("%s\n", unit_cases[i].name);
		return 0;
	}
	for (i = 0; i < unit_ncases; i++) {
		if (argc > 1 && strcmp(argv[1], unit_cases[i].name))
			continue;
		found = 1;
		bad |= run_case(&unit_cases[i]);
	}
	if (!found) {
		fprintf(stderr, "no such test case\n");
		return 2;
	}
	return bad ? 1 : 0;
}
