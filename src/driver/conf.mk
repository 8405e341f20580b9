# virtkvmmd: domain XML parse/format/validate (src/driver/conf/).
# Included by the top-level Makefile.am.

# Shared by the daemon and its unit tests.
noinst_LIBRARIES += src/driver/libdrvcommon.a
src_driver_libdrvcommon_a_SOURCES = src/driver/error.c src/driver/error.h
src_driver_libdrvcommon_a_CPPFLAGS = $(AM_CPPFLAGS) $(LIBVIRT_CFLAGS)
