// Every JSON the tools write stays valid JSON whatever the names hold: a run file path, a layer name and
// a tag with a quote, a backslash, a control character and "</script>" round-trip through
// `inspect --json`, the JSON report and the dashboard's embedded data, which holds no raw "</".
#include <gtest/gtest.h>

#include <rapidjson/document.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "detail/json_writer.hpp"
#include "report_fixture.hpp"

namespace neuronmap::test {
namespace {

const std::string kCli = NEURONMAP_CLI;
const std::string kAwkward = "q\"b\\s\x01</script>&";

rapidjson::Document parse(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  EXPECT_FALSE(doc.HasParseError()) << "offset " << doc.GetErrorOffset() << " in: " << text.substr(0, 2000);
  return doc;
}

std::string text_of(const rapidjson::Value& v) {
  return v.IsString() ? std::string(v.GetString(), v.GetStringLength()) : std::string("<not a string>");
}

class AwkwardNames : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = test_dir();
    // The '/' of "</script>" makes a directory, which the writer creates.
    run_path_ = root_ + "/run " + kAwkward + ".h5";
    plans_ = {{"fc1", "torch::nn::LinearImpl", "rows as samples", 12},
              {"layer " + kAwkward, "torch::nn::LinearImpl", "rows as samples", 12}};
    RunInfo info = planted_info(plans_);
    info.tag_names = {"tag " + kAwkward};
    detail::RunWriter writer(run_path_, info, true);
    for (int s = 0; s < 2; ++s) {
      Snapshot snap;
      snap.epoch = 5 * (s + 1);
      snap.loss = 1.0 / (1.0 + s);
      snap.timestamp = 1.77e9 + 60.0 * s;
      for (std::size_t k = 0; k < plans_.size(); ++k) snap.layers.push_back(planted_layer(plans_[k], s, 2, 7 + k));
      writer.append(snap);
    }
    writer.close();
  }

  std::string root_, run_path_;
  std::vector<LayerPlan> plans_;
};

TEST_F(AwkwardNames, InspectJsonParsesBack) {
  const auto r = run_command({kCli, "inspect", run_path_, "--json"}, root_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = parse(r.out);
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(text_of(doc["file"]), run_path_);
  EXPECT_EQ(text_of(doc["tag_names"][0]), "tag " + kAwkward);
  EXPECT_EQ(text_of(doc["layers"][1]["name"]), "layer " + kAwkward);
  EXPECT_EQ(text_of(doc["snapshots"][1]["layers"][1]["name"]), "layer " + kAwkward);
  EXPECT_EQ(doc["snapshots"].Size(), 2u);
}

TEST_F(AwkwardNames, ReportJsonAndDashboardDataParseBack) {
  const std::string out = root_ + "/out";
  const auto r = run_command({kCli, "report", run_path_, "--out", out}, root_);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto doc = parse(read_file(out + "/pytorch_neuron_group_analysis_report.json"));
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(text_of(doc["pytorch_analysis"]["run_file"]), run_path_);
  EXPECT_EQ(text_of(doc["pytorch_analysis"]["tag_names"][0]), "tag " + kAwkward);
  const std::string html_path = out + "/pytorch_interactive_dashboard.html";
  if (!std::filesystem::exists(html_path)) GTEST_SKIP() << "no dashboard (ECharts not installed)";
  const std::string html = read_file(html_path);
  const std::string open = "<script type=\"application/json\" id=\"nm-data\">";
  const auto begin = html.find(open);
  ASSERT_NE(begin, std::string::npos);
  const auto end = html.find("</script>", begin);
  ASSERT_NE(end, std::string::npos);
  const std::string data = html.substr(begin + open.size(), end - begin - open.size());
  EXPECT_EQ(data.find("</"), std::string::npos);
  EXPECT_EQ(data.find('<'), std::string::npos);
  const auto dash = parse(data);
  ASSERT_TRUE(dash.IsObject());
  EXPECT_EQ(text_of(dash["run"]["file"]), run_path_);
  EXPECT_EQ(text_of(dash["run"]["layers"][1]), "layer " + kAwkward);
}

TEST(JsonWriter, EscapesWritesNullForNaNAndKeepsFullPrecision) {
  detail::JsonWriter w(detail::JsonLayout::compact, detail::JsonEscape::html);
  w.begin_object().field("a", std::nan("")).field("b", 1.5).field("s", "q\"</script>\n\xff");
  w.field("third", 1.0 / 3.0).field("big", std::uint64_t{18446744073709551615u}).field("two", 2.0);
  w.key("v").array(std::vector<double>{1.0, INFINITY}).end_object();
  const std::string& text = w.str();
  EXPECT_EQ(text.find('<'), std::string::npos);
  EXPECT_NE(text.find("\\u003c/script\\u003e"), std::string::npos);
  EXPECT_NE(text.find("\"two\":2,"), std::string::npos) << "integral doubles print as integers";
  const auto doc = parse(text);
  EXPECT_TRUE(doc["a"].IsNull());
  EXPECT_EQ(doc["b"].GetDouble(), 1.5);
  EXPECT_EQ(text_of(doc["s"]), "q\"</script>\n\xEF\xBF\xBD");
  EXPECT_EQ(doc["third"].GetDouble(), 1.0 / 3.0);
  EXPECT_EQ(doc["big"].GetUint64(), 18446744073709551615u);
  EXPECT_EQ(doc["v"][0].GetInt(), 1);
  EXPECT_TRUE(doc["v"][1].IsNull());
}

TEST(JsonWriter, PrettyKeepsArraysOfScalarsOnOneLine) {
  detail::JsonWriter w;
  w.begin_object().key("ids").array(std::vector<int>{1, 2, 3});
  w.key("rows").begin_array().begin_object().field("x", 1).end_object().end_array();
  w.key("none").array(std::vector<int>{}).end_object();
  EXPECT_EQ(w.str(), "{\n  \"ids\": [1, 2, 3],\n  \"rows\": [\n    {\n      \"x\": 1\n    }\n  ],\n  \"none\": []\n}");
}

}  // namespace
}  // namespace neuronmap::test
