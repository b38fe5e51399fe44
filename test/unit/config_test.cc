// Configuration: defaults, validation with messages that name the variable
// and its range, the environment, and the cross-variable rule.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/dtype.h"
#include "common/status.h"
#include "test_util.h"

namespace lshmoe::test {
namespace {

std::string get(const lshmoe_config_t* c, const char* name) {
  char buf[256];
  const lshmoe_status_t s = lshmoe_config_get(c, name, buf, sizeof(buf));
  EXPECT_EQ(s, LSHMOE_SUCCESS) << name << ": " << lshmoe_last_error();
  return s == LSHMOE_SUCCESS ? buf : "";
}

std::map<std::string, std::string> snapshot(const lshmoe_config_t* c) {
  std::map<std::string, std::string> all;
  for (const ConfigVar& v : config_vars()) all[v.name] = get(c, v.name);
  return all;
}

// Clears every LSHMOE_* variable for the test, restoring them after.
class ConfigEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const ConfigVar& v : config_vars()) cleared_.emplace_back(new ScopedEnv(v.name, {}));
  }
  std::vector<std::unique_ptr<ScopedEnv>> cleared_;
};

TEST(Config, DefaultsAreTheDocumentedOnes) {
  ConfigPtr c = make_config();
  EXPECT_EQ(get(c.get(), "LSHMOE_ENABLE"), "1");
  EXPECT_EQ(get(c.get(), "LSHMOE_RATIO"), "0.2");
  EXPECT_EQ(get(c.get(), "LSHMOE_HASHES"), "6");
  EXPECT_EQ(get(c.get(), "LSHMOE_PROJ_DIM"), "8");
  EXPECT_EQ(get(c.get(), "LSHMOE_REFINE"), "1");
  EXPECT_EQ(get(c.get(), "LSHMOE_SPARE_SLOTS"), "1");
  EXPECT_EQ(get(c.get(), "LSHMOE_CENTER"), "1");
  EXPECT_EQ(get(c.get(), "LSHMOE_COMPENSATE"), "1");
  EXPECT_EQ(get(c.get(), "LSHMOE_MIN_ROWS"), "32");
  EXPECT_EQ(get(c.get(), "LSHMOE_HIDDEN"), "0");
  EXPECT_EQ(get(c.get(), "LSHMOE_DTYPES"), "auto");
  EXPECT_EQ(get(c.get(), "LSHMOE_VERIFY"), "0");
  EXPECT_EQ(get(c.get(), "LSHMOE_COMMS"), "all");
  EXPECT_EQ(get(c.get(), "LSHMOE_PEERS"), "all");
  EXPECT_EQ(get(c.get(), "LSHMOE_BACKWARD"), "raw");
  EXPECT_EQ(get(c.get(), "LSHMOE_MAX_OPEN"), "8");
  EXPECT_EQ(get(c.get(), "LSHMOE_DEBUG"), "WARN");
  EXPECT_EQ(get(c.get(), "LSHMOE_CPU_ISA"), "auto");
  // Every variable is documented and readable.
  for (const ConfigVar& v : config_vars()) {
    EXPECT_NE(std::string(v.doc), "") << v.name;
    EXPECT_NE(std::string(v.type), "") << v.name;
    EXPECT_EQ(config_find(v.name), &v);
  }
  // A NULL config for a codec means the defaults.
  lshmoe_codec_t* codec = nullptr;
  ASSERT_EQ(lshmoe_codec_create(nullptr, &codec), LSHMOE_SUCCESS);
  lshmoe_plan_t p{};
  ASSERT_EQ(lshmoe_codec_plan(codec, 1000, 64, LSHMOE_FLOAT32, &p), LSHMOE_SUCCESS);
  EXPECT_EQ(p.slots, 200u);
  lshmoe_codec_destroy(codec);
}

TEST(Config, AcceptsValuesInRange) {
  ConfigPtr c = make_config();
  const std::pair<const char*, const char*> good[] = {
      {"LSHMOE_RATIO", "1"},        {"LSHMOE_RATIO", "0.001"},     {"LSHMOE_HASHES", "1"},
      {"LSHMOE_HASHES", "16"},      {"LSHMOE_PROJ_DIM", "1"},      {"LSHMOE_PROJ_DIM", "32"},
      {"LSHMOE_REFINE", "0"},       {"LSHMOE_REFINE", "16"},       {"LSHMOE_COMPENSATE", "0"},
      {"LSHMOE_COMPENSATE", "0.5"}, {"LSHMOE_MIN_ROWS", "1"},      {"LSHMOE_ENABLE", "false"},
      {"LSHMOE_VERIFY", "yes"},     {"LSHMOE_DTYPES", "fp16"},     {"LSHMOE_DEBUG", "TRACE"},
      {"LSHMOE_CPU_ISA", "scalar"}, {"LSHMOE_CPU_THREADS", "256"}, {"LSHMOE_SEED", "0"}};
  for (const auto& [name, value] : good) {
    EXPECT_EQ(lshmoe_config_set(c.get(), name, value), LSHMOE_SUCCESS)
        << name << "=" << value << ": " << lshmoe_last_error();
  }
  EXPECT_EQ(get(c.get(), "LSHMOE_RATIO"), "0.001");
  EXPECT_EQ(get(c.get(), "LSHMOE_ENABLE"), "0");
  EXPECT_EQ(get(c.get(), "LSHMOE_VERIFY"), "1");
  EXPECT_EQ(get(c.get(), "LSHMOE_PROJ_DIM"), "32");
}

struct BadValue {
  const char* name;
  const char* value;
  const char* range;  // what the message must say is allowed
};

TEST(Config, RejectsOutOfRangeValuesNamingTheVariableAndRange) {
  const BadValue bad[] = {
      {"LSHMOE_RATIO", "0", "(0, 1]"},
      {"LSHMOE_RATIO", "1.5", "(0, 1]"},
      {"LSHMOE_RATIO", "-0.2", "(0, 1]"},
      {"LSHMOE_RATIO", "nan", "(0, 1]"},
      {"LSHMOE_RATIO", "0.2x", "(0, 1]"},
      {"LSHMOE_RATIO", "", "(0, 1]"},
      {"LSHMOE_HASHES", "0", "[1, 16]"},
      {"LSHMOE_HASHES", "17", "[1, 16]"},
      {"LSHMOE_HASHES", "six", "[1, 16]"},
      {"LSHMOE_PROJ_DIM", "3", "power of two in [1, 32]"},
      {"LSHMOE_PROJ_DIM", "64", "power of two in [1, 32]"},
      {"LSHMOE_PROJ_DIM", "0", "power of two in [1, 32]"},
      {"LSHMOE_SEED", "-1", "[0, 2^40]"},
      {"LSHMOE_SEED", "99999999999999999999", "[0, 2^40]"},
      {"LSHMOE_REFINE", "17", "[0, 16]"},
      {"LSHMOE_REFINE", "-1", "[0, 16]"},
      {"LSHMOE_MIN_ROWS", "0", "[1, 2^40]"},
      {"LSHMOE_HIDDEN", "-5", "[0, 2^40]"},
      {"LSHMOE_COMPENSATE", "1.01", "[0, 1]"},
      {"LSHMOE_COMPENSATE", "-0.5", "[0, 1]"},
      {"LSHMOE_CPU_THREADS", "257", "[0, 256]"},
      {"LSHMOE_ENABLE", "2", "0 or 1"},
      {"LSHMOE_VERIFY", "maybe", "0 or 1"},
      {"LSHMOE_DEBUG", "LOUD", "WARN, INFO, TRACE"},
      {"LSHMOE_CPU_ISA", "neon", "auto, avx512bf16, avx2, scalar"},
      {"LSHMOE_DTYPES", "fp8", "bf16, fp16, fp32"},
      {"LSHMOE_DTYPES", "bf16,,fp32", "bf16, fp16, fp32"},
  };
  ConfigPtr c = make_config({{"LSHMOE_RATIO", "0.3"}, {"LSHMOE_HASHES", "4"}});
  const auto before = snapshot(c.get());
  for (const BadValue& b : bad) {
    EXPECT_EQ(lshmoe_config_set(c.get(), b.name, b.value), LSHMOE_ERR_INVALID_CONFIG)
        << b.name << "=" << b.value;
    const std::string msg = lshmoe_last_error();
    EXPECT_NE(msg.find(b.name), std::string::npos) << msg;
    EXPECT_NE(msg.find(b.range), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("\"") + b.value + "\""), std::string::npos) << msg;
    EXPECT_EQ(snapshot(c.get()), before) << "after " << b.name << "=" << b.value;
  }
}

TEST(Config, UnknownVariableNames) {
  ConfigPtr c = make_config();
  const auto before = snapshot(c.get());
  EXPECT_EQ(lshmoe_config_set(c.get(), "LSHMOE_RATO", "0.5"), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_NE(std::string(lshmoe_last_error()).find("LSHMOE_RATO"), std::string::npos);
  EXPECT_EQ(lshmoe_config_set(c.get(), "lshmoe_ratio", "0.5"), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_EQ(lshmoe_config_set(c.get(), "", "1"), LSHMOE_ERR_INVALID_CONFIG);
  char buf[64];
  EXPECT_EQ(lshmoe_config_get(c.get(), "NCCL_DEBUG", buf, sizeof(buf)), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_NE(std::string(lshmoe_last_error()).find("NCCL_DEBUG"), std::string::npos);
  EXPECT_EQ(snapshot(c.get()), before);
  EXPECT_EQ(lshmoe_config_set(c.get(), nullptr, "1"), LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(lshmoe_config_set(c.get(), "LSHMOE_RATIO", nullptr), LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(lshmoe_config_set(nullptr, "LSHMOE_RATIO", "0.5"), LSHMOE_ERR_INVALID_ARGUMENT);
}

// What config_get prints must set the same value again (lshmoe_info's
// output is meant to be pasted back into an environment).
TEST(Config, GetRoundTripsEveryValue) {
  ConfigPtr c = make_config({{"LSHMOE_RATIO", "0.1234567"}, {"LSHMOE_COMPENSATE", "0.3333333"}});
  ConfigPtr copy = make_config();
  for (const ConfigVar& v : config_vars()) {
    EXPECT_EQ(lshmoe_config_set(copy.get(), v.name, get(c.get(), v.name).c_str()), LSHMOE_SUCCESS);
  }
  CodecPtr a = make_codec({{"LSHMOE_RATIO", "0.1234567"}});
  ASSERT_NE(a, nullptr);
  lshmoe_codec_t* b = nullptr;
  ASSERT_EQ(lshmoe_codec_create(copy.get(), &b), LSHMOE_SUCCESS);
  CodecPtr b_owner(b);
  lshmoe_plan_t pa{}, pb{};
  ASSERT_EQ(lshmoe_codec_plan(a.get(), 10000000, 64, LSHMOE_FLOAT32, &pa), LSHMOE_SUCCESS);
  ASSERT_EQ(lshmoe_codec_plan(b, 10000000, 64, LSHMOE_FLOAT32, &pb), LSHMOE_SUCCESS);
  EXPECT_EQ(pa.slots, pb.slots);
  EXPECT_EQ(get(copy.get(), "LSHMOE_RATIO"), "0.1234567");
}

TEST(Config, GetNeedsRoomForTheValue) {
  ConfigPtr c = make_config();
  ASSERT_EQ(lshmoe_config_set(c.get(), "LSHMOE_DTYPES", "bf16,fp16,fp32"), LSHMOE_SUCCESS);
  char buf[16];
  // "bf16,fp16,fp32" and its NUL are 15 bytes.
  EXPECT_EQ(lshmoe_config_get(c.get(), "LSHMOE_DTYPES", buf, 14), LSHMOE_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(lshmoe_config_get(c.get(), "LSHMOE_DTYPES", buf, 15), LSHMOE_SUCCESS);
  EXPECT_STREQ(buf, "bf16,fp16,fp32");
}

TEST_F(ConfigEnv, ReadsTheEnvironment) {
  ScopedEnv ratio("LSHMOE_RATIO", "0.5");
  ScopedEnv hashes("LSHMOE_HASHES", "3");
  ScopedEnv verify("LSHMOE_VERIFY", "1");
  lshmoe_config_t* c = nullptr;
  ASSERT_EQ(lshmoe_config_from_env(&c), LSHMOE_SUCCESS) << lshmoe_last_error();
  ConfigPtr config(c);
  EXPECT_EQ(get(c, "LSHMOE_RATIO"), "0.5");
  EXPECT_EQ(get(c, "LSHMOE_HASHES"), "3");
  EXPECT_EQ(get(c, "LSHMOE_VERIFY"), "1");
  EXPECT_EQ(get(c, "LSHMOE_PROJ_DIM"), "8");  // unset: the default
  lshmoe_codec_t* codec = nullptr;
  ASSERT_EQ(lshmoe_codec_create(c, &codec), LSHMOE_SUCCESS);
  lshmoe_plan_t p{};
  ASSERT_EQ(lshmoe_codec_plan(codec, 1000, 64, LSHMOE_FLOAT32, &p), LSHMOE_SUCCESS);
  EXPECT_EQ(p.slots, 500u);
  lshmoe_codec_destroy(codec);
}

TEST_F(ConfigEnv, InvalidEnvironmentValueFailsNamingIt) {
  ScopedEnv ratio("LSHMOE_RATIO", "0.5");
  ScopedEnv refine("LSHMOE_REFINE", "100");
  lshmoe_config_t* c = reinterpret_cast<lshmoe_config_t*>(uintptr_t(0x1));
  EXPECT_EQ(lshmoe_config_from_env(&c), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_EQ(c, reinterpret_cast<lshmoe_config_t*>(uintptr_t(0x1))) << "output written on error";
  const std::string msg = lshmoe_last_error();
  EXPECT_NE(msg.find("LSHMOE_REFINE"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[0, 16]"), std::string::npos) << msg;
}

// HASHES * log2(2 * PROJ_DIM) key bits must fit 64: each value is in range
// alone, so config_set accepts them and the codec refuses the pair.
TEST_F(ConfigEnv, KeyBitsAreCheckedAcrossVariables) {
  ConfigPtr c = make_config({{"LSHMOE_HASHES", "16"}, {"LSHMOE_PROJ_DIM", "32"}});
  lshmoe_codec_t* codec = reinterpret_cast<lshmoe_codec_t*>(uintptr_t(0x1));
  EXPECT_EQ(lshmoe_codec_create(c.get(), &codec), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_EQ(codec, reinterpret_cast<lshmoe_codec_t*>(uintptr_t(0x1)));
  std::string msg = lshmoe_last_error();
  EXPECT_NE(msg.find("LSHMOE_HASHES"), std::string::npos) << msg;
  EXPECT_NE(msg.find("LSHMOE_PROJ_DIM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("64"), std::string::npos) << msg;
  // The largest keys that fit: 16 tables of 4 bits, 64 / 6 = 10 tables of 6.
  for (auto [hashes, dim] : {std::pair{"16", "8"}, std::pair{"10", "32"}}) {
    CodecPtr ok = make_codec({{"LSHMOE_HASHES", hashes}, {"LSHMOE_PROJ_DIM", dim}});
    EXPECT_NE(ok, nullptr) << hashes << " x " << dim;
  }
  // The environment path applies the same rule.
  ScopedEnv hashes("LSHMOE_HASHES", "16");
  ScopedEnv dim("LSHMOE_PROJ_DIM", "32");
  lshmoe_config_t* from_env = nullptr;
  EXPECT_EQ(lshmoe_config_from_env(&from_env), LSHMOE_ERR_INVALID_CONFIG);
  msg = lshmoe_last_error();
  EXPECT_NE(msg.find("LSHMOE_PROJ_DIM"), std::string::npos) << msg;
}

TEST_F(ConfigEnv, UnavailableIsaFailsAtCodecCreate) {
  ConfigPtr c = make_config({{"LSHMOE_CPU_ISA", "avx2"}});
  lshmoe_codec_t* codec = nullptr;
  const lshmoe_status_t s = lshmoe_codec_create(c.get(), &codec);
  if (s == LSHMOE_SUCCESS) {
    lshmoe_codec_destroy(codec);
    GTEST_SKIP() << "this processor has AVX2";
  }
  EXPECT_EQ(s, LSHMOE_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(lshmoe_last_error()).find("LSHMOE_CPU_ISA"), std::string::npos);
}

}  // namespace
}  // namespace lshmoe::test

// "auto" compresses every dtype through the C API but leaves fp32 (routing
// weights) to pass through the shim; an explicit list means the same to both.
TEST(Config, AutoDtypesLeaveFp32OutOfTheShim) {
  lshmoe::Config c;
  const uint32_t fp32 = 1u << unsigned(lshmoe::DType::kFloat32);
  const uint32_t fp16 = 1u << unsigned(lshmoe::DType::kFloat16);
  const uint32_t bf16 = 1u << unsigned(lshmoe::DType::kBFloat16);
  EXPECT_EQ(lshmoe::dtype_mask(c), fp32 | fp16 | bf16);
  EXPECT_EQ(lshmoe::shim_dtype_mask(c), fp16 | bf16);
  ASSERT_EQ(lshmoe::config_set(c, "LSHMOE_DTYPES", "fp32,bf16"), LSHMOE_SUCCESS);
  EXPECT_EQ(lshmoe::dtype_mask(c), fp32 | bf16);
  EXPECT_EQ(lshmoe::shim_dtype_mask(c), fp32 | bf16);
  EXPECT_EQ(lshmoe::config_set(c, "LSHMOE_DTYPES", "auto,fp32"), LSHMOE_ERR_INVALID_CONFIG);
}

TEST(Config, CommSelection) {
  lshmoe::Config c;
  EXPECT_TRUE(lshmoe::comm_selection(c).selects(8, 3));
  ASSERT_EQ(lshmoe::config_set(c, "LSHMOE_COMMS", "size:4,8"), LSHMOE_SUCCESS);
  EXPECT_TRUE(lshmoe::comm_selection(c).selects(8, 0));
  EXPECT_TRUE(lshmoe::comm_selection(c).selects(4, 9));
  EXPECT_FALSE(lshmoe::comm_selection(c).selects(2, 4));
  ASSERT_EQ(lshmoe::config_set(c, "LSHMOE_COMMS", "index:2"), LSHMOE_SUCCESS);
  EXPECT_TRUE(lshmoe::comm_selection(c).selects(16, 2));
  EXPECT_FALSE(lshmoe::comm_selection(c).selects(2, 16));
  for (const char* bad : {"", "some", "size:", "size:4,", "index:-1", "size:x", "all,size:2"}) {
    EXPECT_EQ(lshmoe::config_set(c, "LSHMOE_COMMS", bad), LSHMOE_ERR_INVALID_CONFIG) << bad;
    EXPECT_NE(std::string(lshmoe::last_error()).find("LSHMOE_COMMS"), std::string::npos);
  }
  EXPECT_EQ(lshmoe::config_set(c, "LSHMOE_PEERS", "local"), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_EQ(lshmoe::config_set(c, "LSHMOE_BACKWARD", "fast"), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_EQ(lshmoe::config_set(c, "LSHMOE_MAX_OPEN", "0"), LSHMOE_ERR_INVALID_CONFIG);
}
