#include "common/topology.h"

#include <hwloc.h>

#include <cstdio>
#include <memory>

namespace lshmoe {
namespace {

constexpr unsigned kNvidiaVendor = 0x10de;
constexpr unsigned kPciClassDisplay = 0x03;  // high byte of the PCI class id

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};

std::string pci_address(hwloc_obj_t pci) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%04x:%02x:%02x.%01x", pci->attr->pcidev.domain, pci->attr->pcidev.bus,
           pci->attr->pcidev.dev, pci->attr->pcidev.func);
  return buf;
}

}  // namespace

Status discover_devices(std::vector<Device>* devices) {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) {
    return fail(LSHMOE_ERR_INTERNAL, "hwloc: topology init failed");
  }
  std::unique_ptr<hwloc_topology, TopologyDeleter> topology(raw);
  hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  // PCI and Linux sysfs name what we need; the GPU-runtime and display
  // plugins would load vendor libraries (OpenCL, X11) into the caller.
  for (const char* plugin : {"opencl", "cuda", "nvml", "rsmi", "levelzero", "gl"}) {
    hwloc_topology_set_components(raw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, plugin);
  }
  if (hwloc_topology_load(raw) != 0) {
    return fail(LSHMOE_ERR_INTERNAL, "hwloc: topology load failed");
  }
  devices->clear();
  for (hwloc_obj_t os = hwloc_get_next_osdev(raw, nullptr); os != nullptr;
       os = hwloc_get_next_osdev(raw, os)) {
    const auto type = os->attr->osdev.type;
    if (type != HWLOC_OBJ_OSDEV_NETWORK && type != HWLOC_OBJ_OSDEV_OPENFABRICS) continue;
    const hwloc_obj_t parent = os->parent;  // the PCI device, unless virtual
    const bool on_pci = parent != nullptr && parent->type == HWLOC_OBJ_PCI_DEVICE;
    devices->push_back(Device{Device::Kind::kNetwork, os->name ? os->name : "?",
                              on_pci ? pci_address(parent) : ""});
  }
  for (hwloc_obj_t pci = hwloc_get_next_pcidev(raw, nullptr); pci != nullptr;
       pci = hwloc_get_next_pcidev(raw, pci)) {
    if (pci->attr->pcidev.vendor_id == kNvidiaVendor &&
        (pci->attr->pcidev.class_id >> 8) == kPciClassDisplay) {
      devices->push_back(Device{Device::Kind::kGpu, "GPU", pci_address(pci)});
    }
  }
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe
