// The public extension point neuronmap::Communicator: a hand-written in-process implementation (ranks
// as threads) carries two real sessions' statistics to rank 0, whose run file then equals what one
// session over both shards writes; a communicator whose gather fails is recorded, never thrown.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "neuronmap/communicator.hpp"
#include "test_dir.hpp"
#include "thread_communicator.hpp"
#include "neuronmap/neuronmap.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;

namespace {

// A run file path in the running test's directory (made fresh by the test's first call).
std::string temp_path(const std::string& name) {
  static std::string dir, test;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string current = std::string(info->test_suite_name()) + "." + info->name();
  if (test != current) {
    dir = neuronmap::test::fresh_test_dir("communicator");
    test = current;
  }
  return (fs::path(dir) / (name + ".h5")).string();
}

using neuronmap::test::Rendezvous;
using neuronmap::test::ThreadCommunicator;

class FailingCommunicator final : public nm::Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string describe() const override { return "failing"; }
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>&) override {
    throw nm::DistributedError("the other rank is gone");
  }
};

// Made on the test's thread: the ranks' threads must not share LibTorch's global generator.
torch::nn::Sequential make_model() {
  torch::manual_seed(7);  // the same weights on every rank
  return torch::nn::Sequential(torch::nn::Linear(6, 12), torch::nn::ReLU(), torch::nn::Linear(12, 4));
}

// The batches of epochs 1..4, 8 of 16 rows each, the same for every rank.
std::vector<std::vector<torch::Tensor>> make_epochs() {
  torch::manual_seed(100);
  std::vector<std::vector<torch::Tensor>> epochs(4);
  for (auto& batches : epochs) {
    for (int b = 0; b < 8; ++b) batches.push_back(torch::randn({16, 6}));
  }
  return epochs;
}

// Rank r of `world` (world 0: a single process) trains on every world-th batch, starting at r.
void train(torch::nn::Sequential& model, nm::Session& session, const std::vector<torch::Tensor>& batches, int epoch,
           int rank, int world) {
  for (std::size_t b = 0; b < batches.size(); ++b) {
    if (world > 0 && static_cast<int>(b) % world != rank) continue;
    torch::NoGradGuard no_grad;
    model->forward(batches[b]);
  }
  session.end_epoch(epoch, 1.0);
}

}  // namespace

TEST(Communicator, InProcessRanksWriteWhatOneProcessWrites) {
  const auto options = nm::Options{}.every(2).reservoir_size(32).overwrite(true);
  const auto epochs = make_epochs();
  const auto single_path = temp_path("single");
  {
    auto model = make_model();
    auto session = nm::attach(*model, {"0", "2"}, nm::Options(options).file(single_path));
    for (int epoch = 1; epoch <= 4; ++epoch) train(model, session, epochs[epoch - 1], epoch, 0, 0);
    session.close();
    ASSERT_EQ(session.last_error(), "");
  }

  const int world = 2;
  const auto group = std::make_shared<Rendezvous>(world, std::chrono::seconds(20));
  const auto ranks_path = temp_path("ranks");
  const auto unused_path = temp_path("rank1_never_writes");
  std::vector<std::string> errors(world);
  std::vector<std::int64_t> written(world);
  std::vector<torch::nn::Sequential> models;
  for (int r = 0; r < world; ++r) models.push_back(make_model());
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto& model = models[static_cast<std::size_t>(r)];
      auto o = nm::Options(options)
                   .file(r == 0 ? ranks_path : unused_path)
                   .communicator(std::make_shared<ThreadCommunicator>(group, r));
      auto session = nm::attach(*model, {"0", "2"}, std::move(o));
      for (int epoch = 1; epoch <= 4; ++epoch) train(model, session, epochs[epoch - 1], epoch, r, world);
      session.close();
      errors[static_cast<std::size_t>(r)] = session.last_error();
      written[static_cast<std::size_t>(r)] = session.snapshots_written();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(written, (std::vector<std::int64_t>{2, 2}));
  EXPECT_FALSE(fs::exists(unused_path));

  const auto a = nm::Run::open(ranks_path);
  const auto b = nm::Run::open(single_path);
  ASSERT_EQ(a.size(), 2);
  ASSERT_EQ(b.size(), 2);
  for (std::int64_t i = 0; i < 2; ++i) {
    const auto x = a.snapshot(i), y = b.snapshot(i);
    EXPECT_EQ(x.epoch, y.epoch);
    ASSERT_EQ(x.layers.size(), 2u);
    for (std::size_t l = 0; l < 2; ++l) {
      const auto &p = x.layers[l], &q = y.layers[l];
      EXPECT_EQ(p.samples, 128);  // 8 batches of 16 rows, 4 from each rank
      EXPECT_EQ(p.samples, q.samples);
      EXPECT_EQ(p.min, q.min);
      EXPECT_EQ(p.max, q.max);
      for (std::size_t k = 0; k < q.mean.size(); ++k) {
        EXPECT_NEAR(p.mean[k], q.mean[k], 1e-9 * std::max(1.0, std::abs(q.mean[k])));
        EXPECT_NEAR(p.stddev[k], q.stddev[k], 1e-9 * std::max(1.0, q.stddev[k]));
      }
    }
  }
}

TEST(Communicator, AFailedGatherIsRecordedAndTrainingGoesOn) {
  const auto path = temp_path("failing");
  auto model = make_model();
  auto session = nm::attach(*model, {"0"},
                            nm::Options{}.every(1).file(path).communicator(std::make_shared<FailingCommunicator>()));
  const auto epochs = make_epochs();
  EXPECT_NO_THROW(train(model, session, epochs[0], 1, 0, 2));
  EXPECT_FALSE(session.capturing());  // no gather is attempted after a failure
  EXPECT_NO_THROW(train(model, session, epochs[1], 2, 0, 2));
  session.close();
  EXPECT_NE(session.last_error().find("the other rank is gone"), std::string::npos) << session.last_error();
  EXPECT_NE(session.last_error().find("failing"), std::string::npos) << session.last_error();
  EXPECT_EQ(session.snapshots_written(), 0);
  EXPECT_EQ(nm::Run::open(path).size(), 0);
}
