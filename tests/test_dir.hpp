// A fresh, empty directory per running test, under the test binary's directory: every test file that
// writes files uses this one, so runs never see each other's leftovers.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace neuronmap::test {

/// NEURONMAP_TEST_BINARY_DIR/<area>/<suite>.<test>, emptied.
inline std::string fresh_test_dir(const std::string& area) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::path(NEURONMAP_TEST_BINARY_DIR) / area /
                                    (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace neuronmap::test
