// The devices of this machine that lshmoe cares about, from hwloc: network
// interfaces (with their PCI address) and NVIDIA GPUs on the PCI bus.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace lshmoe {

struct Device {
  enum class Kind { kNetwork, kGpu } kind;
  std::string name;      // interface name ("eth0", "mlx5_0") or "GPU"
  std::string pci_path;  // "0000:3b:00.0", empty for virtual interfaces
};

Status discover_devices(std::vector<Device>* devices);

}  // namespace lshmoe
