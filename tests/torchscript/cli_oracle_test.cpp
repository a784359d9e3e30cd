// `neuronmap capture` and `neuronmap layers` (the CLI binary): the oracle's model cases reproduced
// exactly (max |diff| = 0, on the reference BLAS the oracle was made with), plus the verbs' errors.
#include <gtest/gtest.h>

#include <hdf5.h>
#include <rapidjson/document.h>

#include <torch/script.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "capture_tool.hpp"
#include "neuronmap/errors.hpp"
#include "ts_test_util.hpp"

namespace {

namespace fs = std::filesystem;

std::string cli() { return NEURONMAP_CLI; }

bool child_on_reference_blas() {
#ifdef NEURONMAP_REFERENCE_BLAS
  return true;
#else
  return false;
#endif
}

rapidjson::Document read_json(const std::string& path) {
  const auto bytes = nm_test::read_bytes(path);
  rapidjson::Document d;
  d.Parse(bytes.data(), bytes.size());
  return d;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0) return 0.0;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

class OracleCapture : public ::testing::TestWithParam<std::string> {};

TEST_P(OracleCapture, CliReproducesForwardHooksExactly) {
  const std::string dir = nm_test::oracle_dir() + "/" + GetParam();
  if (!fs::exists(dir + "/manifest.json")) GTEST_SKIP() << "oracle case not found at " << dir;
  const auto manifest = read_json(dir + "/manifest.json");
  ASSERT_TRUE(manifest.IsObject());
  const double tolerance = child_on_reference_blas() ? 0.0 : 1e-5;
  for (const auto& mode : manifest["modes"].GetObject()) {
    const std::string ref_dir = mode.value["dir"].GetString();
    const bool no_grad = mode.value["no_grad"].GetBool();
    SCOPED_TRACE(GetParam() + "/" + ref_dir);
    std::vector<std::string> layers;
    std::string list;
    for (const auto& layer : mode.value["layers"].GetObject()) {
      layers.emplace_back(layer.name.GetString());
      list += (list.empty() ? "" : ",") + layers.back();
    }
    const std::string out = nm_test::temp_path("oracle_" + GetParam() + "_" + ref_dir + ".h5");
    const auto r = nm_test::run_command(cli() + " capture " + dir + "/model_scripted.pt --input " + dir +
                                            "/input.h5 --layers " + list + " --out " + out + (no_grad ? "" : " --grad"),
                                        /*reference_blas=*/true);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const auto& layer : layers) {
      const auto& info = mode.value["layers"][layer.c_str()];
      if (!info["fired"].GetBool()) {
        EXPECT_THROW(neuronmap::detail::read_h5_tensor(out, "/" + layer), neuronmap::FileError) << layer;
        EXPECT_NE(r.output.find(layer + ": did not run"), std::string::npos) << r.output;
        std::cout << "[ oracle ] " << GetParam() << "/" << ref_dir << " " << layer << ": did not fire, not captured\n";
        continue;
      }
      const at::Tensor got = neuronmap::detail::read_h5_tensor(out, "/" + layer);
      const at::Tensor want = nm_test::load_tensor(dir + "/" + ref_dir + "/" + layer + ".pt");
      ASSERT_EQ(got.sizes(), want.sizes()) << layer;
      const double diff = max_abs_diff(got, want);
      EXPECT_LE(diff, tolerance) << layer;
      std::cout << "[ oracle ] " << GetParam() << "/" << ref_dir << " " << layer << " " << got.sizes()
                << " max|diff| = " << diff << (info["parameter_free"].GetBool() ? " (parameter-free)" : "") << "\n";
    }
    const at::Tensor output = neuronmap::detail::read_h5_tensor(out, "/output");
    EXPECT_LE(max_abs_diff(output, nm_test::load_tensor(dir + "/" + ref_dir + "/__output__.pt")), tolerance);
    fs::remove(out);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, OracleCapture, ::testing::Values("mlp", "cnn", "lstm", "transformer"));

// Traced models keep their submodules' calls too.
TEST(OracleCapture, TracedModelsToo) {
  for (const std::string name : {"mlp", "cnn"}) {
    const std::string dir = nm_test::oracle_dir() + "/" + name;
    if (!fs::exists(dir + "/model_traced.pt")) GTEST_SKIP() << "oracle case not found at " << dir;
    const std::string layers = name == "mlp" ? "fc1,relu1,fc2,relu2,fc3" : "conv1,relu1,pool1,conv2,relu2,pool2,fc1,relu3,fc2";
    const std::string out = nm_test::temp_path("oracle_traced_" + name + ".h5");
    const auto r = nm_test::run_command(cli() + " capture " + dir + "/model_traced.pt --input " + dir +
                                            "/input.h5 --layers " + layers + " --out " + out, true);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::stringstream split(layers);
    for (std::string layer; std::getline(split, layer, ',');) {
      const double diff = max_abs_diff(neuronmap::detail::read_h5_tensor(out, "/" + layer),
                                       nm_test::load_tensor(dir + "/ref/" + layer + ".pt"));
      EXPECT_LE(diff, child_on_reference_blas() ? 0.0 : 1e-5) << name << " " << layer;
    }
    fs::remove(out);
  }
}

void write_int64_input(const std::string& path, const at::Tensor& tokens) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  std::vector<hsize_t> dims(tokens.sizes().begin(), tokens.sizes().end());
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t data = H5Dcreate2(file, "input", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const at::Tensor t = tokens.to(at::kLong).contiguous();
  H5Dwrite(data, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr());
  H5Dclose(data);
  H5Sclose(space);
  H5Fclose(file);
}

TEST(CaptureVerb, Int64InputAndEvalMode) {
  const auto refs = nm_test::load_dict(nm_test::data_dir() + "/seqnet_refs.pt");
  const std::string input = nm_test::temp_path("seqnet_input.h5");
  const std::string out = nm_test::temp_path("seqnet_capture.h5");
  write_int64_input(input, refs.at("input").toTensor());
  const auto r = nm_test::run_command(cli() + " capture " + nm_test::data_dir() + "/seqnet.pt --input " + input +
                                          " --layers emb,lstm,gru,drop --out " + out + " --eval",
                                      true);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string layer : {"emb", "lstm", "gru", "drop"}) {
    EXPECT_EQ(max_abs_diff(neuronmap::detail::read_h5_tensor(out, "/" + layer),
                           refs.at("pass0/" + layer + "/0").toTensor()),
              0.0)
        << layer;
  }
  fs::remove(input);
  fs::remove(out);
}

TEST(CaptureVerb, BadFilesAndNamesFailWithOneLineAndExitTwo) {
  const std::string model = nm_test::data_dir() + "/convnet.pt";
  const std::string good_input = nm_test::temp_path("convnet_input.h5");
  const auto refs = nm_test::load_dict(nm_test::data_dir() + "/convnet_refs.pt");
  neuronmap::detail::write_h5_tensors(good_input, {{"input", refs.at("input").toTensor(), -1}});
  const std::string no_input = nm_test::temp_path("no_input.h5");
  neuronmap::detail::write_h5_tensors(no_input, {{"x", refs.at("input").toTensor(), -1}});
  const std::string out = nm_test::temp_path("bad_capture.h5");
  struct Case {
    std::string args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"/nonexistent/model.pt --input " + good_input + " --layers fc --out " + out, "does not exist"},
      {good_input + " --input " + good_input + " --layers fc --out " + out, "cannot load TorchScript model"},
      {model + " --input /nonexistent/in.h5 --layers fc --out " + out, "does not exist"},
      {model + " --input " + model + " --layers fc --out " + out, "is not an HDF5 file"},
      {model + " --input " + no_input + " --layers fc --out " + out, "has no dataset /input"},
      {model + " --input " + good_input + " --layers fc,nope --out " + out, "'blocks.0.fc'"},
      {model + " --input " + good_input + " --layers fc --out /nonexistent/dir/out.h5", "cannot create"},
  };
  for (const auto& c : cases) {
    const auto r = nm_test::run_command(cli() + " capture " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  fs::remove(good_input);
  fs::remove(no_input);
}

TEST(LayersVerb, ListsLayersWithShapes) {
  const std::string dir = nm_test::oracle_dir() + "/transformer";
  if (!fs::exists(dir)) GTEST_SKIP() << "oracle case not found at " << dir;
  auto r = nm_test::run_command(cli() + " layers " + dir + "/model_scripted.pt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("encoder.linear1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("TransformerEncoderLayer"), std::string::npos) << r.output;
  r = nm_test::run_command(cli() + " layers " + dir + "/model_scripted.pt --input " + dir + "/input.h5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Eval mode with autograd on: the sublayers run, so they have shapes.
  EXPECT_NE(r.output.find("[8, 10, 32] -> 80 x 32 (one sample per token)"), std::string::npos) << r.output;
  const std::string cnn = nm_test::oracle_dir() + "/cnn";
  r = nm_test::run_command(cli() + " layers " + cnn + "/model_scripted.pt --input " + cnn + "/input.h5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[32, 16, 32, 32] -> 32 x 16 (mean over 32x32)"), std::string::npos) << r.output;
  std::cout << r.output;
  r = nm_test::run_command(cli() + " layers /nonexistent.pt");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
