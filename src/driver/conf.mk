# virtkvmmd: domain XML parse/format/validate (src/driver/conf/).
# Included by the top-level Makefile.am.
