/* ACPI fixed-hardware power management: the PM1a event block (status and
 * enable), the PM1a control block (sleep = power off), the PM timer and
 * the GPE0 block (GPE 1: PCI hotplug).  The fixed power button and the
 * GPEs raise the SCI, a level interrupt that stays asserted while an
 * enabled status bit is set. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "device.h"
#include "util.h"
#include "vm.h"

#define PM1_STS		0	/* 2 bytes, write 1 to clear */
#define PM1_EN		2	/* 2 bytes */
#define PM1_CNT		4	/* 2 bytes */
#define PM_TMR		8	/* 4 bytes, read-only */
#define GPE0_STS	12	/* 2 bytes, write 1 to clear */
#define GPE0_EN		14	/* 2 bytes */
#define PM_BLOCK_LEN	16

#define PM1_PWRBTN	(1u << 8)
#define PM1_WAK		(1u << 15)
#define PM1_CNT_SCI_EN	(1u << 0)
#define PM1_CNT_SLP_TYP(v) (((v) >> 10) & 7)
#define PM1_CNT_SLP_EN	(1u << 13)

#define PM_TMR_HZ	3579545ULL

struct acpi_pm_state {
	uint32_t version;
	uint16_t sts, en, cnt;
	uint16_t gpe_sts, gpe_en;
};

struct acpi_pm {
	struct device dev;
	unsigned int sci;
	uint8_t s5_slp_typ;
	int sci_level;
	struct acpi_pm_state s;
};

#define ACPI_PM_STATE_VERSION 2

static struct acpi_pm *to_pm(struct device *dev)
{
	return (struct acpi_pm *)dev;
}

static void acpi_pm_update_sci(struct acpi_pm *pm)
{
	int level = !!(pm->s.sts & pm->s.en & PM1_PWRBTN) ||
		    !!(pm->s.gpe_sts & pm->s.gpe_en);

	if (level != pm->sci_level) {
		pm->sci_level = level;
		kvm_irq_line(pm->dev.vm, pm->sci, level);
	}
}

static uint32_t acpi_pm_timer(void)
{
	/* 24-bit counter at 3.579545 MHz from the host's monotonic clock;
	 * split to avoid overflowing 64 bits after ~80 minutes. */
	uint64_t ns = now_ns();
	uint64_t ticks = (ns / 1000000000ULL) * PM_TMR_HZ +
			 (ns % 1000000000ULL) * PM_TMR_HZ / 1000000000ULL;

	return ticks & 0xffffff;
}

static void acpi_pm_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct acpi_pm *pm = to_pm(dev);
	uint8_t regs[PM_BLOCK_LEN];
	uint32_t tmr = acpi_pm_timer();
	uint16_t cnt = pm->s.cnt | PM1_CNT_SCI_EN;

	/* GUEST: byte or word accesses anywhere in the block are served
	 * from this snapshot; the bus already checked addr+len fits. */
	memcpy(regs + PM1_STS, &pm->s.sts, 2);
	memcpy(regs + PM1_EN, &pm->s.en, 2);
	memcpy(regs + PM1_CNT, &cnt, 2);
	memset(regs + 6, 0, 2);
	memcpy(regs + PM_TMR, &tmr, 4);
	memcpy(regs + GPE0_STS, &pm->s.gpe_sts, 2);
	memcpy(regs + GPE0_EN, &pm->s.gpe_en, 2);
	memcpy(data, regs + addr, len);
}

static void acpi_pm_write_cnt(struct acpi_pm *pm, uint16_t v)
{
	if ((v & PM1_CNT_SLP_EN) && PM1_CNT_SLP_TYP(v) == pm->s5_slp_typ) {
		vm_request(pm->dev.vm, REASON_POWEROFF, NULL);
		return;
	}
	/* SLP_EN is write-only; other sleep states are not offered (the
	 * DSDT has no _S3/_S4), so such requests are ignored. */
	pm->s.cnt = v & ~PM1_CNT_SLP_EN;
}

/* GUEST: any byte or word of the GPE0 block; status bits are cleared by
 * writing 1, enable bits are stored as written. */
static void acpi_pm_write_gpe(struct acpi_pm *pm, uint64_t addr, const uint8_t *data,
			      unsigned int len)
{
	uint8_t regs[4] = { 0 };
	uint16_t v;

	memcpy(regs + 2, &pm->s.gpe_en, 2);
	memcpy(regs + (addr - GPE0_STS), data, MIN(len, sizeof(regs) - (addr - GPE0_STS)));
	if (addr < GPE0_EN) {
		memcpy(&v, regs, 2);
		pm->s.gpe_sts &= ~v;
	}
	if (addr + len > GPE0_EN)
		memcpy(&pm->s.gpe_en, regs + 2, 2);
	acpi_pm_update_sci(pm);
}

static void acpi_pm_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct acpi_pm *pm = to_pm(dev);
	uint8_t regs[8];
	uint16_t v;

	if (addr >= GPE0_STS) {
		acpi_pm_write_gpe(pm, addr, data, len);
		return;
	}
	if (addr >= PM_TMR)
		return;
	/* Merge the access into the current values so byte writes work. */
	memcpy(regs + PM1_STS, &(uint16_t){ 0 }, 2);
	memcpy(regs + PM1_EN, &pm->s.en, 2);
	memcpy(regs + PM1_CNT, &pm->s.cnt, 2);
	memset(regs + 6, 0, 2);
	memcpy(regs + addr, data, MIN(len, sizeof(regs) - addr));
	if (addr < PM1_EN) {
		memcpy(&v, regs + PM1_STS, 2);
		pm->s.sts &= ~v;	/* write 1 to clear */
	}
	if (addr < PM1_CNT && addr + len > PM1_EN)
		memcpy(&pm->s.en, regs + PM1_EN, 2);
	if (addr < 6 && addr + len > PM1_CNT) {
		memcpy(&v, regs + PM1_CNT, 2);
		acpi_pm_write_cnt(pm, v);
	}
	acpi_pm_update_sci(pm);
}

void acpi_pm_power_button(struct device *dev)
{
	struct acpi_pm *pm = to_pm(dev);

	pthread_mutex_lock(&dev->lock);
	pm->s.sts |= PM1_PWRBTN;
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&dev->lock);
}

void acpi_pm_gpe_raise(struct device *dev, unsigned int gpe)
{
	struct acpi_pm *pm = to_pm(dev);

	pthread_mutex_lock(&dev->lock);
	pm->s.gpe_sts |= 1u << gpe;
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&dev->lock);
}

static void acpi_pm_reset(struct device *dev)
{
	struct acpi_pm *pm = to_pm(dev);

	memset(&pm->s, 0, sizeof(pm->s));
	pm->s.version = ACPI_PM_STATE_VERSION;
	pm->sci_level = 0;
}

static int acpi_pm_save(struct device *dev, struct state_buf *out)
{
	return state_put(out, &to_pm(dev)->s, sizeof(struct acpi_pm_state));
}

static int acpi_pm_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct acpi_pm *pm = to_pm(dev);
	struct acpi_pm_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	if (s.version != ACPI_PM_STATE_VERSION)
		return -EINVAL;
	pm->s = s;
	acpi_pm_update_sci(pm);
	return 0;
}

static void acpi_pm_destroy(struct device *dev)
{
	free(to_pm(dev));
}

static const struct device_ops acpi_pm_ops = {
	.name = "acpi-pm",
	.read = acpi_pm_read,
	.write = acpi_pm_write,
	.reset = acpi_pm_reset,
	.save = acpi_pm_save,
	.load = acpi_pm_load,
	.destroy = acpi_pm_destroy,
};

struct device *acpi_pm_create(struct vm *vm, uint16_t base, unsigned int sci,
			      uint8_t s5_slp_typ)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return NULL;
	device_init(&pm->dev, &acpi_pm_ops, vm);
	pm->sci = sci;
	pm->s5_slp_typ = s5_slp_typ;
	acpi_pm_reset(&pm->dev);
	if (bus_register(&vm->pio, base, PM_BLOCK_LEN, &pm->dev)) {
		free(pm);
		return NULL;
	}
	return &pm->dev;
}
