/* Private to the parser files. */
#ifndef KVMM_DOMAIN_PARSE_H
#define KVMM_DOMAIN_PARSE_H

#include <libxml/tree.h>

#include "domain_conf.h"

int parse_memory(xmlNodePtr node, unsigned long long *kib);
int parse_devices(xmlNodePtr root, struct domain_def *def);

#endif
