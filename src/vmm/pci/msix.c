/* MSI-X (PCI Local Bus 3.0, 6.8.2): capability, table, PBA, masking. */
#include <errno.h>
#include <string.h>

#include "msix.h"
#include "pci.h"

#define MSIX_CTRL		2	/* message control, in the capability */
#define MSIX_CTRL_MASKALL	0x4000
#define MSIX_CTRL_ENABLE	0x8000
#define MSIX_VEC_MASKED		1
#define MSIX_STATE_VERSION	1

int msix_init(struct msix *m, struct pci_func *f, const struct msix_sink *sink,
	      unsigned int nvec, int bar, uint32_t table_off, uint32_t pba_off)
{
	uint64_t size;
	unsigned int i;
	int cap;

	if (bar < 0 || bar >= PCI_NUM_BARS || !nvec || nvec > MSIX_MAX_VECTORS ||
	    (table_off | pba_off) & 7)
		return -EINVAL;
	size = f->bars[bar].size;
	if (table_off + nvec * MSIX_ENTRY_SIZE > size || pba_off + 8 > size ||
	    (pba_off < table_off + nvec * MSIX_ENTRY_SIZE && table_off < pba_off + 8))
		return -EINVAL;
	cap = pci_func_add_cap(f, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
	if (cap < 0)
		return cap;
	memset(m, 0, sizeof(*m));
	m->f = f;
	m->sink = sink;
	m->nvec = nvec;
	m->bar = bar;
	m->table_off = table_off;
	m->pba_off = pba_off;
	m->cap = cap;
	pci_put(f->cfg + cap + MSIX_CTRL, nvec - 1, 2);
	f->wmask[cap + MSIX_CTRL + 1] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
	pci_put(f->cfg + cap + 4, table_off | bar, 4);
	pci_put(f->cfg + cap + 8, pba_off | bar, 4);
	for (i = 0; i < MSIX_MAX_VECTORS; i++)
		m->route[i] = -1;
	msix_reset(m);
	return 0;
}

static uint16_t ctrl(const struct msix *m)
{
	return pci_get(m->f->cfg + m->cap + MSIX_CTRL, 2);
}

bool msix_enabled(const struct msix *m)
{
	return ctrl(m) & MSIX_CTRL_ENABLE;
}

static bool masked(const struct msix *m, unsigned int v)
{
	return !(ctrl(m) & MSIX_CTRL_ENABLE) || (ctrl(m) & MSIX_CTRL_MASKALL) ||
	       (m->table[v * MSIX_ENTRY_SIZE + 12] & MSIX_VEC_MASKED);
}

static void deliver(struct msix *m, unsigned int v)
{
	const uint8_t *e = m->table + v * MSIX_ENTRY_SIZE;
	uint64_t addr = pci_get(e, 4) | (uint64_t)pci_get(e + 4, 4) << 32;
	uint32_t data = pci_get(e + 8, 4);

	if (m->route[v] < 0) {
		m->route[v] = m->sink->alloc(m->sink->opaque);
		if (m->route[v] < 0)
			return;		/* no route: the message is lost */
		m->routed_addr[v] = ~0ULL;
	}
	/* Routes follow the table lazily, at delivery: the guest rewrites
	 * entries freely while they are masked. */
	if (m->routed_addr[v] != addr || m->routed_data[v] != data) {
		m->sink->route(m->sink->opaque, m->route[v], addr, data);
		m->routed_addr[v] = addr;
		m->routed_data[v] = data;
	}
	m->sink->fire(m->sink->opaque, m->route[v]);
}

/* Delivers whatever became unmasked with its pending bit set. */
static void flush_pending(struct msix *m)
{
	unsigned int v;

	for (v = 0; v < m->nvec; v++) {
		if ((m->pba & (1ULL << v)) && !masked(m, v)) {
			m->pba &= ~(1ULL << v);
			deliver(m, v);
		}
	}
}

void msix_notify(struct msix *m, unsigned int vector)
{
	if (vector >= m->nvec || !msix_enabled(m))
		return;
	if (masked(m, vector))
		m->pba |= 1ULL << vector;
	else
		deliver(m, vector);
}

bool msix_bar_access(struct msix *m, int bar, uint64_t off, uint8_t *data,
		     unsigned int len, bool is_write)
{
	uint64_t tlen = m->nvec * MSIX_ENTRY_SIZE;

	if (bar != m->bar)
		return false;
	/* GUEST: only aligned 4- and 8-byte accesses, as the spec allows;
	 * others read 0 and write nothing. */
	if (off >= m->table_off && off - m->table_off < tlen) {
		off -= m->table_off;
		if ((len != 4 && len != 8) || (off & (len - 1)) || off + len > tlen)
			return true;
		if (!is_write) {
			memcpy(data, m->table + off, len);
			return true;
		}
		memcpy(m->table + off, data, len);
		/* vector control: only the mask bit exists */
		m->table[(off & ~15ULL) + 12] &= MSIX_VEC_MASKED;
		memset(m->table + (off & ~15ULL) + 13, 0, 3);
		flush_pending(m);
		return true;
	}
	if (off >= m->pba_off && off - m->pba_off < 8) {
		off -= m->pba_off;
		if (!is_write && (len == 4 || len == 8) && !(off & (len - 1))) {
			uint64_t bits = m->pba >> (8 * off);

			pci_put(data, (uint32_t)bits, 4);
			if (len == 8)
				pci_put(data + 4, bits >> 32, 4);
		}
		return true;	/* the PBA is read-only */
	}
	return false;
}

void msix_cfg_written(struct msix *m, unsigned int off, unsigned int len)
{
	if (off < m->cap + MSIX_CTRL + 2 && off + len > m->cap + MSIX_CTRL)
		flush_pending(m);
}

void msix_reset(struct msix *m)
{
	unsigned int v;

	memset(m->table, 0, sizeof(m->table));
	for (v = 0; v < m->nvec; v++)
		m->table[v * MSIX_ENTRY_SIZE + 12] = MSIX_VEC_MASKED;
	m->pba = 0;
}

int msix_save(struct msix *m, struct state_buf *out)
{
	uint8_t hdr[9] = { MSIX_STATE_VERSION };
	int r;

	pci_put(hdr + 1, (uint32_t)m->pba, 4);
	pci_put(hdr + 5, m->pba >> 32, 4);
	r = state_put(out, hdr, sizeof(hdr));
	return r ? r : state_put(out, m->table, m->nvec * MSIX_ENTRY_SIZE);
}

int msix_load(struct msix *m, const uint8_t *data, size_t len)
{
	size_t need = 9 + m->nvec * MSIX_ENTRY_SIZE;
	unsigned int v;

	if (len < need || data[0] != MSIX_STATE_VERSION)
		return -EINVAL;
	m->pba = (pci_get(data + 1, 4) | (uint64_t)pci_get(data + 5, 4) << 32);
	if (m->nvec < 64)
		m->pba &= (1ULL << m->nvec) - 1;
	memcpy(m->table, data + 9, m->nvec * MSIX_ENTRY_SIZE);
	for (v = 0; v < m->nvec; v++) {
		m->table[v * MSIX_ENTRY_SIZE + 12] &= MSIX_VEC_MASKED;
		memset(m->table + v * MSIX_ENTRY_SIZE + 13, 0, 3);
	}
	return need;
}
