// Device discovery through hwloc (what lshmoe_info prints, what the net
// plugin will offer NCCL).
#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "common/topology.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe {
namespace {

// "dddd:bb:dd.f" in lower-case hex.
bool is_pci_address(const std::string& s) {
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (!std::isxdigit(static_cast<unsigned char>(s[i])) || std::isupper(s[i])) return false;
  }
  return s[11] >= '0' && s[11] <= '7';
}

TEST(Topology, DevicesHaveNamesAndWellFormedPciAddresses) {
  std::vector<Device> devices;
  ASSERT_EQ(discover_devices(&devices), LSHMOE_SUCCESS) << lshmoe_last_error();
  for (const Device& d : devices) {
    EXPECT_FALSE(d.name.empty());
    if (d.kind == Device::Kind::kGpu) {
      EXPECT_FALSE(d.pci_path.empty());
    }
    if (!d.pci_path.empty()) {
      EXPECT_TRUE(is_pci_address(d.pci_path)) << d.pci_path;
    }
  }
}

TEST(Topology, PciAddressFormat) {
  EXPECT_TRUE(is_pci_address("0000:3b:00.0"));
  EXPECT_FALSE(is_pci_address("0000:3B:00.0"));
  EXPECT_FALSE(is_pci_address("0000:3b:00.8"));
  EXPECT_FALSE(is_pci_address("eth0"));
}

TEST(Version, MatchesTheHeaderMacros) {
  const std::string expected = std::to_string(LSHMOE_VERSION_MAJOR) + "." +
                               std::to_string(LSHMOE_VERSION_MINOR) + "." +
                               std::to_string(LSHMOE_VERSION_PATCH);
  EXPECT_EQ(lshmoe_version(), expected);
}

}  // namespace
}  // namespace lshmoe
