# virtkvmmd: the RPC server and daemon (src/driver/rpc/, src/driver/daemon.c).
# Included by the top-level Makefile.am.
