// Which interfaces the net plugin offers, and what it says about them.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>

#include "transport/net_devices.h"

namespace lshmoe::transport {
namespace {

TEST(NetDevices, NamedInterfaceOnly) {
  std::vector<net::DeviceInfo> d;
  ASSERT_EQ(find_net_devices("lo", "", &d), LSHMOE_SUCCESS) << last_error();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].name, "lo");
  EXPECT_TRUE(d[0].pci_path.empty());  // virtual
  EXPECT_GT(d[0].speed_mbps, 0);
  ASSERT_EQ(d[0].address.ss_family, AF_INET);
  const auto* in = reinterpret_cast<const sockaddr_in*>(&d[0].address);
  EXPECT_EQ(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
}

TEST(NetDevices, PrefixesMatchAsInNccl) {
  std::vector<net::DeviceInfo> d;
  ASSERT_EQ(find_net_devices("l", "", &d), LSHMOE_SUCCESS);
  ASSERT_FALSE(d.empty());
  for (const auto& x : d) EXPECT_EQ(x.name[0], 'l');
}

TEST(NetDevices, UcxDevicesNameInterfacesExactly) {
  std::vector<net::DeviceInfo> d;
  ASSERT_EQ(find_net_devices("", "lo:1", &d), LSHMOE_SUCCESS);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].name, "lo");
  EXPECT_EQ(find_net_devices("", "l", &d), LSHMOE_ERR_INVALID_CONFIG);  // no prefixes there
  EXPECT_NE(std::string(last_error()).find("UCX_NET_DEVICES"), std::string::npos);
}

TEST(NetDevices, UnknownInterfaceIsAnErrorNamingTheSetting) {
  std::vector<net::DeviceInfo> d;
  EXPECT_EQ(find_net_devices("nosuch0", "", &d), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_NE(std::string(last_error()).find("LSHMOE_NET_IF=\"nosuch0\""), std::string::npos)
      << last_error();
}

TEST(NetDevices, DefaultLeavesOutLoopbackWhenSomethingElseIsUp) {
  std::vector<net::DeviceInfo> d;
  ASSERT_EQ(find_net_devices("", "", &d), LSHMOE_SUCCESS);
  ASSERT_FALSE(d.empty());
  if (d.size() > 1 || d[0].name != "lo") {
    for (const auto& x : d) {
      EXPECT_NE(x.name, "lo");
      EXPECT_NE(x.name.rfind("docker", 0), 0u);
    }
  }
}

}  // namespace
}  // namespace lshmoe::transport
