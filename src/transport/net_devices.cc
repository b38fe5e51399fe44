#include "transport/net_devices.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "common/log.h"
#include "common/topology.h"

namespace lshmoe::transport {
namespace {

constexpr int kDefaultSpeedMbps = 10000;  // virtual interfaces report none

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

uint64_t fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

bool matches(const std::string& name, const std::vector<std::string>& prefixes, bool exact) {
  for (const std::string& p : prefixes) {
    if (exact ? name == p : name.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}

}  // namespace

Status find_net_devices(const std::string& only, const std::string& ucx_devices,
                        std::vector<net::DeviceInfo>* out) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return fail(LSHMOE_ERR_NETWORK, "net: getifaddrs failed: %s", strerror(errno));
  }
  // One address per interface that is up: IPv4 first.
  std::map<std::string, net::DeviceInfo> up;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || !(a->ifa_flags & IFF_UP)) continue;
    const int family = a->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    net::DeviceInfo& d = up[a->ifa_name];
    if (d.address_length != 0 && !(d.address.ss_family == AF_INET6 && family == AF_INET)) continue;
    d.name = a->ifa_name;
    d.address_length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    memcpy(&d.address, a->ifa_addr, d.address_length);
  }
  freeifaddrs(list);

  std::vector<std::string> wanted;
  bool exact = false;
  const char* setting = nullptr;
  if (!only.empty()) {
    wanted = split(only);
    setting = "LSHMOE_NET_IF";
  } else if (!ucx_devices.empty() && ucx_devices != "all") {
    for (std::string d : split(ucx_devices)) wanted.push_back(d.substr(0, d.find(':')));
    exact = true;
    setting = "UCX_NET_DEVICES";
  }
  out->clear();
  for (auto& [name, d] : up) {
    const bool take = setting != nullptr ? matches(name, wanted, exact)
                                         : name != "lo" && name.compare(0, 6, "docker") != 0;
    if (take) out->push_back(d);
  }
  if (out->empty() && setting == nullptr && up.count("lo")) out->push_back(up["lo"]);
  if (out->empty() && setting == nullptr) {
    return fail(LSHMOE_ERR_NETWORK, "net: no network interface is up");
  }
  if (out->empty()) {
    return fail(LSHMOE_ERR_INVALID_CONFIG, "net: %s=\"%s\" matches no interface that is up",
                setting, !only.empty() ? only.c_str() : ucx_devices.c_str());
  }

  // PCI placement from hwloc; speed and hardware address from sysfs.
  std::vector<Device> hw;
  if (discover_devices(&hw) != LSHMOE_SUCCESS) {
    LSHMOE_INFO("net: hwloc found no devices (%s); PCI paths from sysfs only", last_error());
    hw.clear();
  }
  for (net::DeviceInfo& d : *out) {
    const std::string sys = "/sys/class/net/" + d.name;
    for (const Device& h : hw) {
      if (h.kind == Device::Kind::kNetwork && h.name == d.name && !h.pci_path.empty()) {
        d.pci_path = real_path("/sys/bus/pci/devices/" + h.pci_path);
      }
    }
    if (d.pci_path.empty()) d.pci_path = real_path(sys + "/device");
    const int speed = atoi(read_line(sys + "/speed").c_str());
    d.speed_mbps = speed > 0 ? speed : kDefaultSpeedMbps;
    d.guid = fnv1a(d.name + "/" + read_line(sys + "/address"));
  }
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::transport
