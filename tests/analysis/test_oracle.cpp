// Agreement with the Python reference on the shared oracle cases (README "Comparison rules").
#include <cmath>

#include <gtest/gtest.h>

#include <sstream>

#include "analysis/grouping.hpp"
#include "analysis/moments.hpp"
#include "analysis/records.hpp"
#include "analysis_test_util.hpp"

namespace {

using namespace neuronmap::detail;
using neuronmap::Grouping;
using neuronmap::GroupingMethod;
namespace t = neuronmap::test;

class OracleCase : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = t::oracle_case_dir(GetParam());
    if (!t::file_exists(dir_ + "/X.npy")) GTEST_SKIP() << "oracle case not found at " << dir_ << " (NEURONMAP_SHARED_DIR)";
    x_ = t::read_npy(dir_ + "/X.npy");
    corr_ = correlation_from_samples(x_);
  }
  rapidjson::Document ref(const std::string& method) const { return t::read_json(dir_ + "/ref/" + method + ".json"); }

  // labels and neuron_indices identical, cohesion/mean_activation within 1e-9, vectors allclose 1e-6.
  void expect_identical(const GroupingResult& g, const std::string& method) const {
    const auto doc = ref(method);
    EXPECT_EQ(g.labels, t::int_array(doc["labels"]));
    const auto& groups = doc["groups"].GetArray();
    ASSERT_EQ(g.groups.size(), groups.Size());
    const Eigen::MatrixXd patterns = t::read_npy(dir_ + "/ref/" + method + ".activation_pattern.npy");
    for (rapidjson::SizeType k = 0; k < groups.Size(); ++k) {
      EXPECT_EQ(g.groups[k], t::int_array(groups[k]["neuron_indices"])) << "group " << k;
      EXPECT_NEAR(g.cohesion[k], groups[k]["cohesion_score"].GetDouble(), 1e-9);
      const Eigen::VectorXd pattern = activation_pattern(x_, g.groups[k]);
      EXPECT_NEAR(mean_activation(pattern), groups[k]["mean_activation"].GetDouble(), 1e-9);
      EXPECT_NEAR(mean_activation(corr_.mean, g.groups[k]), groups[k]["mean_activation"].GetDouble(), 1e-9);
      EXPECT_LE((pattern - patterns.row(k).transpose()).cwiseAbs().maxCoeff(),
                1e-6 + 1e-6 * patterns.row(k).cwiseAbs().maxCoeff());
    }
    EXPECT_EQ(std::vector<std::int32_t>(corr_.dead.begin(), corr_.dead.end()).size(), x_.cols());
    std::vector<std::int32_t> dead;
    for (std::size_t i = 0; i < corr_.dead.size(); ++i)
      if (corr_.dead[i]) dead.push_back(static_cast<std::int32_t>(i));
    EXPECT_EQ(dead, t::int_array(doc["dead_neurons"]));
  }

  std::string dir_;
  Eigen::MatrixXd x_;
  Correlation corr_;
};

TEST_P(OracleCase, CorrelationClusteringIdentical) {
  expect_identical(correlation_groups(corr_, 0.6, 3), "correlation_clustering");
  EXPECT_EQ(correlation_groups(corr_, 0.6, 3).n_edges, ref("correlation_clustering")["diagnostics"]["n_edges"].GetInt64());
}

TEST_P(OracleCase, HierarchicalIdentical) {
  const GroupingResult g = hierarchical_groups(corr_, 0.6, 0, 3);
  expect_identical(g, "hierarchical");
  EXPECT_EQ(g.n_raw_clusters, ref("hierarchical")["diagnostics"]["n_raw_clusters"].GetInt64());
}

TEST_P(OracleCase, KMeansSameKHighAriNoWorseInertia) {
  const GroupingResult g = kmeans_groups(corr_, 0, 10, 42, 3);
  const auto doc = ref("kmeans");
  const auto& diagnostics = doc["diagnostics"];
  EXPECT_EQ(g.chosen_k, diagnostics["chosen_k"].GetInt());
  EXPECT_GE(adjusted_rand_index(g.labels, t::int_array(doc["labels"])), 0.99);
  EXPECT_LE(g.inertia, 1.001 * diagnostics["inertia"].GetDouble());
  // Silhouettes from C agree with scikit-learn's (from the profiles) for every k.
  for (const auto& [k, score] : g.silhouette_by_k) {
    const std::string key = std::to_string(k);
    ASSERT_TRUE(diagnostics["silhouette_by_k"].HasMember(key.c_str()));
  }
}

TEST_P(OracleCase, StreamingMomentsGiveTheSameGroups) {
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = x_.cast<float>();
  if (x_.cast<float>().cast<double>() != x_) GTEST_SKIP() << "float64 case: moments take float32 rows";
  Moments m(x_.cols());
  for (std::int64_t r0 = 0; r0 < rows.rows(); r0 += 128)
    m.add(rows.data() + r0 * rows.cols(), std::min<std::int64_t>(128, rows.rows() - r0));
  const Correlation streamed = correlation_from_moments(m);
  EXPECT_EQ(correlation_groups(streamed, 0.6, 3).labels, t::int_array(ref("correlation_clustering")["labels"]));
  EXPECT_EQ(hierarchical_groups(streamed, 0.6, 0, 3).labels, t::int_array(ref("hierarchical")["labels"]));
}

// Options::products(float32): each batch's product in float32, merged into float64 totals. The
// groups stay the reference's; the correlations move by at most 1e-5 (docs/PERFORMANCE.md).
TEST_P(OracleCase, Float32ProductsGiveTheSameGroups) {
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = x_.cast<float>();
  if (x_.cast<float>().cast<double>() != x_) GTEST_SKIP() << "float64 case: moments take float32 rows";
  Moments exact(x_.cols()), fast(x_.cols(), ProductPrecision::f32);
  for (std::int64_t r0 = 0; r0 < rows.rows(); r0 += 128) {
    const auto n = std::min<std::int64_t>(128, rows.rows() - r0);
    exact.add(rows.data() + r0 * rows.cols(), n);
    fast.add(rows.data() + r0 * rows.cols(), n);
  }
  const Correlation r64 = correlation_from_moments(exact, Precision::f64);
  const Correlation r32 = correlation_from_moments(fast, Precision::f64);
  double max_delta = 0;
  for (std::int64_t i = 0; i < x_.cols(); ++i)
    for (std::int64_t j = 0; j < x_.cols(); ++j) max_delta = std::max(max_delta, std::abs(r64.r(i, j) - r32.r(i, j)));
  std::ostringstream delta_text;
  delta_text << std::scientific << max_delta;
  RecordProperty("max_abs_delta_r", delta_text.str());
  EXPECT_LE(max_delta, 1e-5);
  EXPECT_EQ(correlation_groups(r32, 0.6, 3).labels, t::int_array(ref("correlation_clustering")["labels"]));
  EXPECT_EQ(hierarchical_groups(r32, 0.6, 0, 3).labels, t::int_array(ref("hierarchical")["labels"]));
}

INSTANTIATE_TEST_SUITE_P(Synthetic, OracleCase, ::testing::Values("tiny", "medium", "hard"));

}  // namespace
