/* The disks' backing chains of a starting domain: completed from the
 * qcow2 headers where the definition leaves them open, and numbered as
 * libvirt's live XML shows them. */
#ifndef KVMM_DISK_CHAIN_H
#define KVMM_DISK_CHAIN_H

#include <stdint.h>

#include "conf/domain_conf.h"

/* Before kvmm is run (the object's lock held): each qcow2 disk without a
 * complete chain gets the layers its headers name, and every image its
 * node index.  0, or -1 after reporting (a backing format the header does
 * not record, one kvmm does not read, too many layers), DEF unchanged. */
int disk_chain_prepare(struct domain_def *def);

/* When the run ends: back to the definition's chains, without indexes. */
void disk_chain_forget(struct domain_def *def);

/* A restarted daemon adopting a run: DEF, the persistent definition
 * that also serves as the run's, takes the chains and indexes of LIVE,
 * the same definition as the run's status file has it. */
void disk_chain_adopt(struct domain_def *def, struct domain_def *live);

/* The virtual size a qcow2 header on FD states: 1 (*SIZE set), or 0 when
 * FD does not start with a qcow2 header. */
int disk_chain_qcow2_size(int fd, uint64_t *size);

/* 1 when FD starts with a qcow2 header that names a backing file, else 0. */
int disk_chain_qcow2_has_backing(int fd);

#endif
