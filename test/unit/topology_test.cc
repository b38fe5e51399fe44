// Device discovery through hwloc (what lshmoe_info prints, what the net
// plugin will offer NCCL).
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "common/topology.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe {
namespace {

TEST(Topology, DevicesHaveNamesAndWellFormedPciAddresses) {
  std::vector<Device> devices;
  ASSERT_EQ(discover_devices(&devices), LSHMOE_SUCCESS) << lshmoe_last_error();
  const std::regex pci("[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]");
  for (const Device& d : devices) {
    EXPECT_FALSE(d.name.empty());
    if (d.kind == Device::Kind::kGpu) {
      EXPECT_FALSE(d.pci_path.empty());
    }
    if (!d.pci_path.empty()) {
      EXPECT_TRUE(std::regex_match(d.pci_path, pci)) << d.pci_path;
    }
  }
}

TEST(Version, MatchesTheHeaderMacros) {
  const std::string expected = std::to_string(LSHMOE_VERSION_MAJOR) + "." +
                               std::to_string(LSHMOE_VERSION_MINOR) + "." +
                               std::to_string(LSHMOE_VERSION_PATCH);
  EXPECT_EQ(lshmoe_version(), expected);
}

}  // namespace
}  // namespace lshmoe
