# virtkvmmd: domain XML parse/format/validate (src/driver/conf/).
# Included by the top-level Makefile.am.

# Shared by the daemon and its unit tests.
noinst_LIBRARIES += src/driver/libdrvcommon.a
src_driver_libdrvcommon_a_SOURCES = src/driver/error.c src/driver/error.h
src_driver_libdrvcommon_a_CPPFLAGS = $(AM_CPPFLAGS) $(LIBVIRT_CFLAGS)

# Domain XML: parse, validate, format (src/driver/conf/).  Pure library.
noinst_LIBRARIES += src/driver/libdrvconf.a
src_driver_libdrvconf_a_SOURCES = \
	src/driver/conf/domain_conf.c src/driver/conf/domain_conf.h \
	src/driver/conf/domain_tables.c src/driver/conf/domain_tables.h \
	src/driver/conf/domain_xml.c src/driver/conf/domain_xml.h \
	src/driver/conf/domain_parse.c src/driver/conf/domain_parse.h \
	src/driver/conf/domain_parse_devices.c \
	src/driver/conf/domain_validate.c \
	src/driver/conf/domain_format.c \
	src/driver/conf/snapshot_conf.c src/driver/conf/snapshot_conf.h
DRVCONF_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/driver $(LIBVIRT_CFLAGS) $(LIBXML_CFLAGS) $(GLIB_CFLAGS)
src_driver_libdrvconf_a_CPPFLAGS = $(DRVCONF_CPPFLAGS)
DRVCONF_LIBS = src/driver/libdrvconf.a src/driver/libdrvcommon.a $(LIBXML_LIBS) $(GLIB_LIBS)

# xml2xml: the golden round-trip tool (tests/driver/test_xml2xml.py).
check_PROGRAMS += tests/unit/xml2xml
tests_unit_xml2xml_SOURCES = tests/unit/xml2xml.c src/driver/kvmm/vmconfig.c
tests_unit_xml2xml_CPPFLAGS = $(DRVCONF_CPPFLAGS) $(JSONC_CFLAGS)
tests_unit_xml2xml_LDADD = $(DRVCONF_LIBS) $(JSONC_LIBS)

EXTRA_DIST += tests/xml2xml tests/xml2config tests/driver
