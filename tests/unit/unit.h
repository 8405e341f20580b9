/* Minimal unit-test harness: each test binary registers cases with
 * UNIT_TEST(name); `prog --list` prints the case names (one per line) so the
 * pytest layer can collect them, `prog NAME` runs one case, `prog` runs all.
 * A failed CHECK prints file:line and the expression, and fails the case. */
#ifndef KVMM_UNIT_H
#define KVMM_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct unit_case {
	const char *name;
	void (*fn)(void);
};

extern struct unit_case unit_cases[];
extern int unit_ncases;
extern int unit_failed;

#define UNIT_MAX_CASES 256

#define UNIT_TEST(name)							\
	static void unit_##name(void);					\
	__attribute__((constructor)) static void unit_reg_##name(void)	\
	{								\
		if (unit_ncases < UNIT_MAX_CASES)			\
			unit_cases[unit_ncases++] =			\
				(struct unit_case){ #name, unit_##name }; \
	}								\
	static void unit_##name(void)

#define CHECK(expr)							\
	do {								\
		if (!(expr)) {						\
			printf("  %s:%d: CHECK failed: %s\n",		\
			       __FILE__, __LINE__, #expr);		\
			unit_failed = 1;				\
		}							\
	} while (0)

#define CHECK_EQ_U64(a, b)						\
	do {								\
		unsigned long long _a = (a), _b = (b);			\
		if (_a != _b) {						\
			printf("  %s:%d: CHECK failed: %s == %s "	\
			       "(0x%llx != 0x%llx)\n", __FILE__, __LINE__, \
			       #a, #b, _a, _b);				\
			unit_failed = 1;				\
		}							\
	} while (0)

#define CHECK_STR(a, b)							\
	do {								\
		const char *_a = (a), *_b = (b);			\
		if (!_a || !_b || strcmp(_a, _b)) {			\
			printf("  %s:%d: CHECK failed: %s == \"%s\" "	\
			       "(got \"%s\")\n", __FILE__, __LINE__,	\
			       #a, _b ? _b : "(null)", _a ? _a : "(null)"); \
			unit_failed = 1;				\
		}							\
	} while (0)

#endif
