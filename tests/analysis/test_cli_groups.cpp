// The `groups` verb end to end: the oracle's X.h5 with --json, and bad inputs (exit code 2).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include <gtest/gtest.h>
#include <hdf5.h>

#include "analysis/grouping.hpp"
#include "analysis_test_util.hpp"

namespace {

namespace t = neuronmap::test;

struct Result {
  int exit_code = -1;
  std::string out;
};

Result run_cli(const std::string& arguments) {
  const std::string command = std::string(NEURONMAP_CLI) + " " + arguments + " 2>/dev/null";
  Result result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  std::array<char, 65536> buffer{};
  for (std::size_t n; (n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0;) result.out.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("neuronmap_groups_" + std::to_string(getpid()) + "_" + name)).string();
}

TEST(GroupsCli, OracleCaseAsJson) {
  const std::string dir = t::oracle_case_dir("medium");
  if (!t::file_exists(dir + "/X.h5")) GTEST_SKIP() << "oracle case not found at " << dir;
  const std::vector<std::pair<std::string, std::string>> methods = {
      {"correlation", "correlation_clustering"}, {"hierarchical", "hierarchical"}, {"kmeans", "kmeans"}};
  for (const auto& [method, reference] : methods) {
    SCOPED_TRACE(method);
    const Result r = run_cli("groups " + dir + "/X.h5 --dataset X --method " + method + " --json");
    ASSERT_EQ(r.exit_code, 0);
    const auto doc = t::read_json_text(r.out);
    const auto ref = t::read_json(dir + "/ref/" + reference + ".json");
    EXPECT_EQ(doc["n_samples"].GetInt64(), ref["n_samples"].GetInt64());
    EXPECT_EQ(doc["n_neurons"].GetInt64(), ref["n_neurons"].GetInt64());
    EXPECT_EQ(t::int_array(doc["dead_neurons"]), t::int_array(ref["dead_neurons"]));
    EXPECT_EQ(std::string(doc["method"].GetString()), method);
    ASSERT_TRUE(doc["params"].HasMember("min_group_size"));
    const auto labels = t::int_array(doc["labels"]);
    std::vector<std::int32_t> ungrouped;
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0) ungrouped.push_back(static_cast<std::int32_t>(i));
    EXPECT_EQ(t::int_array(doc["ungrouped"]), ungrouped);
    if (method == "kmeans") {
      EXPECT_EQ(doc["diagnostics"]["chosen_k"].GetInt(), ref["diagnostics"]["chosen_k"].GetInt());
      EXPECT_GE(neuronmap::detail::adjusted_rand_index(labels, t::int_array(ref["labels"])), 0.99);
      continue;
    }
    EXPECT_EQ(labels, t::int_array(ref["labels"]));
    const auto& groups = doc["groups"].GetArray();
    const auto& expected = ref["groups"].GetArray();
    ASSERT_EQ(groups.Size(), expected.Size());
    for (rapidjson::SizeType g = 0; g < groups.Size(); ++g) {
      EXPECT_EQ(t::int_array(groups[g]["neuron_indices"]), t::int_array(expected[g]["neuron_indices"]));
      EXPECT_EQ(groups[g]["group_size"].GetInt(), expected[g]["group_size"].GetInt());
      EXPECT_NEAR(groups[g]["cohesion_score"].GetDouble(), expected[g]["cohesion_score"].GetDouble(), 1e-9);
      EXPECT_NEAR(groups[g]["mean_activation"].GetDouble(), expected[g]["mean_activation"].GetDouble(), 1e-9);
    }
  }
}

TEST(GroupsCli, TableOutput) {
  const std::string dir = t::oracle_case_dir("tiny");
  if (!t::file_exists(dir + "/X.h5")) GTEST_SKIP() << "oracle case not found at " << dir;
  const Result r = run_cli("groups " + dir + "/X.h5 --dataset /X --method hierarchical --threshold 0.6");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("4 groups"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ungrouped:"), std::string::npos);
}

TEST(GroupsCli, BadInputsExitTwo) {
  EXPECT_EQ(run_cli("groups /nonexistent/acts.h5 --dataset X").exit_code, 2);
  // A file with a 1-D dataset and an integer dataset.
  const std::string path = temp_path("bad.h5");
  {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    const hsize_t n = 10;
    const hid_t space = H5Screate_simple(1, &n, nullptr);
    const std::vector<float> values(10, 1.0f);
    const hid_t one_d = H5Dcreate2(file, "v", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(one_d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    const hsize_t dims[2] = {5, 2};
    const hid_t space2 = H5Screate_simple(2, dims, nullptr);
    const std::vector<int> ints(10, 1);
    const hid_t integer = H5Dcreate2(file, "i", H5T_NATIVE_INT, space2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(integer, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ints.data());
    H5Dclose(one_d);
    H5Dclose(integer);
    H5Sclose(space);
    H5Sclose(space2);
    H5Fclose(file);
  }
  EXPECT_EQ(run_cli("groups " + path + " --dataset missing").exit_code, 2);
  EXPECT_EQ(run_cli("groups " + path + " --dataset v").exit_code, 2);
  EXPECT_EQ(run_cli("groups " + path + " --dataset i").exit_code, 2);
  // A usage error is exit code 1 (CLI11 parse error).
  EXPECT_EQ(run_cli("groups " + path + " --dataset v --method spectral").exit_code, 1);
  std::filesystem::remove(path);
}

}  // namespace
