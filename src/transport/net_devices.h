// The network interfaces a job may use, and their properties: addresses from
// getifaddrs, PCI placement from hwloc, speed and hardware address from sysfs.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace lshmoe::transport {

namespace net {

struct DeviceInfo {
  std::string name;      // the network interface
  std::string pci_path;  // sysfs path of its PCI function; empty for virtual interfaces
  uint64_t guid = 0;     // from the interface's hardware address
  int speed_mbps = 0;
  sockaddr_storage address{};  // where its listeners bind
  socklen_t address_length = 0;
};

}  // namespace net

// `only`: names or prefixes, comma-separated (LSHMOE_NET_IF); when empty,
// `ucx_devices` (UCX_NET_DEVICES: "eth0,mlx5_0:1", "all"); when both are
// empty, every interface that is up except loopback and docker bridges, or
// loopback when nothing else is up. Fails naming the setting when it
// matches no interface that is up.
Status find_net_devices(const std::string& only, const std::string& ucx_devices,
                        std::vector<net::DeviceInfo>* out);

}  // namespace lshmoe::transport
