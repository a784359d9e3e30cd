// `neuronmap compare`: runs of the same model compare as identical (CKA 1, every group matched with
// Jaccard 1); runs of different models give the CKA a direct computation on their reference outputs
// gives; the reference rows the run file stores are the layer's outputs; bad inputs fail in one line.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <rapidjson/document.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "neuronmap/neuronmap.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("neuronmap_compare_tests_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto path = dir / name;
  fs::remove(path);
  return path.string();
}

struct Result {
  int exit_code = -1;
  std::string out, err;
};

Result run_cli(const std::string& arguments) {
  const std::string err_path = temp_path("stderr.txt");
  const std::string command = std::string(NEURONMAP_CLI) + " " + arguments + " 2>" + err_path;
  Result result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 65536> buffer{};
  for (std::size_t n; (n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0;) result.out.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_path);
  result.err.assign(std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>());
  return result;
}

// Inputs with two latent factors, so that fc1's neurons fall into correlated groups.
torch::Tensor latent_inputs(std::int64_t rows, std::uint64_t seed) {
  torch::manual_seed(seed);
  const auto z = torch::randn({rows, 2});
  const auto mix = torch::tensor({{1.0f, 0.8f, -0.6f, 0.9f, 0.2f, -1.0f, 0.7f, 0.5f},
                                  {0.1f, -0.5f, 0.9f, 0.3f, 1.0f, 0.4f, -0.8f, 0.6f}});
  return z.mm(mix) + 0.05 * torch::randn({rows, 8});
}

struct NetImpl : torch::nn::Module {
  NetImpl() : fc1(register_module("fc1", torch::nn::Linear(8, 12))), fc2(register_module("fc2", torch::nn::Linear(12, 4))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Net);

Net make_net(std::uint64_t seed) {
  torch::manual_seed(seed);
  return Net();
}

/// Writes a run of `model` (no training: the statistics depend on the inputs only) with a snapshot at
/// epochs 2 and 4 and the reference batch `reference`.
void write_run(Net& model, const std::string& path, const torch::Tensor& reference) {
  torch::NoGradGuard no_grad;
  auto session = nm::attach(*model, {"fc1", "fc2"}, nm::Options{}.every(2).file(path).workers(1));
  session.set_reference([&] { model->forward(reference); });
  for (int epoch = 1; epoch <= 4; ++epoch) {
    for (int step = 0; step < 4; ++step) model->forward(latent_inputs(64, 100 + static_cast<std::uint64_t>(step)));
    session.end_epoch(epoch, 1.0 / epoch);
  }
  session.close();
  ASSERT_EQ(session.last_error(), "");
  ASSERT_EQ(session.snapshots_written(), 2);
}

/// Linear CKA of two n x p / n x q representations, in float64, written out from the definition.
double direct_cka(const torch::Tensor& x_in, const torch::Tensor& y_in) {
  auto x = x_in.to(torch::kDouble);
  auto y = y_in.to(torch::kDouble);
  x = x - x.mean(0);
  y = y - y.mean(0);
  const double cross = y.t().mm(x).pow(2).sum().item<double>();
  return cross / (x.t().mm(x).norm().item<double>() * y.t().mm(y).norm().item<double>());
}

/// Every value of `"key": <number or null>` in a JSON text, in order (NaN for null).
std::vector<double> json_numbers(const std::string& json, const std::string& key) {
  std::vector<double> out;
  const std::regex pattern("\"" + key + "\": (null|[-+0-9.eE]+)");
  for (auto it = std::sregex_iterator(json.begin(), json.end(), pattern); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1] == "null" ? std::nan("") : std::stod((*it)[1]));
  return out;
}

std::size_t count_of(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

class Compare : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new torch::Tensor(latent_inputs(32, 7));
    path_a_ = new std::string(temp_path("a.h5"));
    path_same_ = new std::string(temp_path("same.h5"));
    path_other_ = new std::string(temp_path("other.h5"));
    auto a = make_net(1);
    auto other = make_net(2);
    write_run(a, *path_a_, *reference_);
    write_run(a, *path_same_, *reference_);
    write_run(other, *path_other_, *reference_);
    torch::NoGradGuard no_grad;
    fc1_a_ = new torch::Tensor(a->fc1(*reference_));
    fc1_other_ = new torch::Tensor(other->fc1(*reference_));
  }
  static void TearDownTestSuite() {
    fs::remove_all(fs::path(*path_a_).parent_path());
    delete reference_;
    delete fc1_a_;
    delete fc1_other_;
    delete path_a_;
    delete path_same_;
    delete path_other_;
  }
  static torch::Tensor *reference_, *fc1_a_, *fc1_other_;
  static std::string *path_a_, *path_same_, *path_other_;
};
torch::Tensor *Compare::reference_, *Compare::fc1_a_, *Compare::fc1_other_;
std::string *Compare::path_a_, *Compare::path_same_, *Compare::path_other_;

TEST_F(Compare, RunFileStoresTheReferenceOutputs) {
  const auto run = nm::Run::open(*path_a_);
  ASSERT_EQ(run.size(), 2);
  for (std::int64_t i = 0; i < run.size(); ++i) {
    const auto snapshot = run.snapshot(i);
    const auto& fc1 = snapshot.layers[0];
    ASSERT_EQ(fc1.name, "fc1");
    ASSERT_EQ(fc1.reference_rows, 32);
    ASSERT_EQ(fc1.reference.size(), 32u * 12u);
    const auto expected = fc1_a_->contiguous();
    const float* want = expected.data_ptr<float>();
    for (std::size_t k = 0; k < fc1.reference.size(); ++k)
      ASSERT_EQ(fc1.reference[k], want[k]) << k;
    EXPECT_EQ(run.summary(i).layers[1].reference_rows, 32);
  }
}

TEST_F(Compare, SameModelIsIdentical) {
  const auto r = run_cli("compare " + *path_a_ + " " + *path_same_ + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count_of(r.out, "\"layer_a\""), 2u) << r.out;  // fc1 and fc2, the names both runs have
  const auto cka = json_numbers(r.out, "cka");
  ASSERT_EQ(cka.size(), 2u);
  for (double c : cka) EXPECT_NEAR(c, 1.0, 1e-9);
  const auto groups = json_numbers(r.out, "groups_a");
  ASSERT_EQ(groups.size(), 2u);
  ASSERT_GT(groups[0], 0) << "fc1 has no groups: the test would not test the matching\n" << r.out;
  EXPECT_EQ(json_numbers(r.out, "groups_b"), groups);
  const auto jaccard = json_numbers(r.out, "jaccard");
  EXPECT_EQ(static_cast<double>(jaccard.size()), groups[0] + groups[1]);
  for (double j : jaccard) EXPECT_EQ(j, 1.0);
  for (double j : json_numbers(r.out, "mean_jaccard")) EXPECT_TRUE(std::isnan(j) || j == 1.0);
  EXPECT_EQ(json_numbers(r.out, "mean_jaccard")[0], 1.0);
  EXPECT_EQ(count_of(r.out, "\"unmatched_a\": []"), 2u);
  EXPECT_EQ(count_of(r.out, "\"unmatched_b\": []"), 2u);
  EXPECT_EQ(json_numbers(r.out, "epoch"), (std::vector<double>{4, 4}));  // the last snapshots
  EXPECT_NE(r.out.find("same reference inputs"), std::string::npos);
}

TEST_F(Compare, DifferentModelsGiveTheDirectCka) {
  const auto r = run_cli("compare " + *path_a_ + " " + *path_other_ + " --layers fc1 --epoch-a 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto cka = json_numbers(r.out, "cka");
  ASSERT_EQ(cka.size(), 1u) << r.out;
  const double want = direct_cka(*fc1_a_, *fc1_other_);
  EXPECT_LT(want, 0.999);
  EXPECT_NEAR(cka[0], want, 1e-6);
  EXPECT_EQ(json_numbers(r.out, "epoch"), (std::vector<double>{2, 4}));
  // Matched and unmatched groups account for every group on both sides.
  const auto groups_a = json_numbers(r.out, "groups_a")[0];
  const auto groups_b = json_numbers(r.out, "groups_b")[0];
  const auto matched = static_cast<double>(json_numbers(r.out, "jaccard").size());
  const auto unmatched = [&](const std::string& key) {
    const auto at = r.out.find("\"" + key + "\": [");
    const auto end = r.out.find(']', at);
    const auto list = r.out.substr(at, end - at);
    return list.find_first_of("0123456789") == std::string::npos ? 0.0
                                                                 : static_cast<double>(count_of(list, ",") + 1);
  };
  EXPECT_EQ(matched + unmatched("unmatched_a"), groups_a);
  EXPECT_EQ(matched + unmatched("unmatched_b"), groups_b);
}

TEST_F(Compare, PairsNamedLayersAndPrintsATable) {
  const auto r = run_cli("compare " + *path_a_ + " " + *path_other_ + " --layers fc1:fc2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("layer A"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fc1 ~ fc2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("same reference inputs"), std::string::npos);
  // CKA between layers of different widths on the same 32 rows is defined.
  const auto j = run_cli("compare " + *path_a_ + " " + *path_other_ + " --layers fc1:fc2 --json");
  ASSERT_EQ(j.exit_code, 0);
  const auto cka = json_numbers(j.out, "cka");
  ASSERT_EQ(cka.size(), 1u);
  EXPECT_TRUE(cka[0] > 0.0 && cka[0] < 1.0) << cka[0];
}

TEST_F(Compare, BadInputsFailInOneLine) {
  const auto expect_error = [](const std::string& arguments, const std::string& part) {
    const auto r = run_cli(arguments);
    EXPECT_EQ(r.exit_code, 2) << arguments << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(part), std::string::npos) << arguments << "\n" << r.err;
    EXPECT_EQ(count_of(r.err, "\n"), 1u) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  };
  const std::string a = *path_a_;
  expect_error("compare " + a + " " + temp_path("missing.h5"), "does not exist");
  const auto foreign = temp_path("foreign.h5");
  std::ofstream(foreign) << "not a run\n";
  expect_error("compare " + foreign + " " + a, "not an HDF5 file");
  expect_error("compare " + a + " " + a + " --layers fc1,conv9", "layer 'conv9' is not in run A");
  expect_error("compare " + a + " " + a + " --layers fc1,conv9", "its layers: fc1, fc2");
  expect_error("compare " + a + " " + a + " --layers fc1:conv9", "layer 'conv9' is not in run B");
  expect_error("compare " + a + " " + a + " --epoch-b 3", "no snapshot at epoch 3; its snapshot epochs: 2, 4");

  const auto empty = temp_path("empty.h5");
  {
    auto model = make_net(3);
    auto session = nm::attach(*model, {"fc1"}, nm::Options{}.every(5).file(empty));
    session.end_epoch(1);
  }
  expect_error("compare " + a + " " + empty, "has no committed snapshots");
}

// options_json is written by a JSON library: a file name with a quote, a backslash, a control
// character and "</script>" (whose '/' makes a directory) still gives valid JSON that names the file.
TEST(OptionsJson, AwkwardFileNameGivesValidJson) {
  const std::string path = temp_path("run \"q\" \\ \x01 </script>.h5");
  {
    auto model = make_net(4);
    torch::NoGradGuard no_grad;
    auto session = nm::attach(*model, {"fc1"}, nm::Options{}.every(1).file(path).tag_names({"t\"\\\x02</b>"}));
    model->forward(latent_inputs(16, 5));
    session.end_epoch(1);
    session.close();
  }
  const auto run = nm::Run::open(path);
  const std::string& text = run.info().options_json;
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  ASSERT_FALSE(doc.HasParseError()) << text;
  ASSERT_TRUE(doc.IsObject() && doc["file"].IsString()) << text;
  EXPECT_EQ(std::string(doc["file"].GetString(), doc["file"].GetStringLength()), path);
  EXPECT_EQ(doc["every"].GetInt(), 1);
  EXPECT_DOUBLE_EQ(doc["grouping"]["threshold"].GetDouble(), 0.6);
  EXPECT_FALSE(doc.HasMember("process_group"));
  EXPECT_EQ(run.info().tag_names.at(0), "t\"\\\x02</b>");
  fs::remove_all(fs::path(path).parent_path().parent_path());
}

}  // namespace
