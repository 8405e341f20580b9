// SPDX-License-Identifier: MIT
/* virtio-net (virtio spec 5.1): not written yet. */
#include "guest.h"
#include "virtio.h"

void virtio_net_run(struct virtio_dev *v, int index)
{
	info("virtio-net dev=%s not driven (no driver yet)", v->name);
}
