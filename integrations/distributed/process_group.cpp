// The Communicator over a c10d process group: a snapshot's gather of variable-length byte buffers as
// two collectives (the longest length by all-reduce MAX, then a gather of buffers padded to it, each
// led by its own length), on CPU tensors (Gloo).
#include <cstring>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "neuronmap/distributed.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap {
namespace {

class ProcessGroupCommunicator final : public Communicator {
 public:
  ProcessGroupCommunicator(c10::intrusive_ptr<c10d::ProcessGroup> group, std::chrono::milliseconds timeout)
      : group_(std::move(group)), timeout_(timeout) {
    if (!group_) throw UsageError("process_group(): the process group is null");
    try {
      backend_ = group_->getBackendName();
    } catch (const std::exception&) {
      backend_ = "c10d";
    }
  }

  int rank() const override { return group_->getRank(); }
  int size() const override { return group_->getSize(); }
  std::string describe() const override {
    return fmt::format("{} process group, rank {} of {}", backend_, rank(), size());
  }

  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& bytes) override {
    const auto length = static_cast<std::int64_t>(bytes.size());
    std::vector<at::Tensor> longest{at::full({1}, length, at::kLong)};
    c10d::AllreduceOptions max;
    max.reduceOp = c10d::ReduceOp::MAX;
    if (timeout_.count() > 0) max.timeout = timeout_;
    run("all-reduce of the buffer sizes", [&] { return group_->allreduce(longest, max); });
    const std::int64_t width = longest[0].item<std::int64_t>() + static_cast<std::int64_t>(sizeof(std::int64_t));

    at::Tensor mine = at::zeros({width}, at::kByte);
    std::memcpy(mine.data_ptr<std::uint8_t>(), &length, sizeof length);
    if (length > 0) std::memcpy(mine.data_ptr<std::uint8_t>() + sizeof length, bytes.data(), bytes.size());
    std::vector<at::Tensor> input{mine};
    std::vector<std::vector<at::Tensor>> output;
    if (rank() == 0) {
      output.emplace_back();
      for (int r = 0; r < size(); ++r) output[0].push_back(at::empty({width}, at::kByte));
    }
    c10d::GatherOptions to_root;
    to_root.rootRank = 0;
    if (timeout_.count() > 0) to_root.timeout = timeout_;
    run("gather of the statistics to rank 0", [&] { return group_->gather(output, input, to_root); });

    std::vector<std::vector<std::uint8_t>> parts;
    if (rank() != 0) return parts;
    for (const auto& t : output[0]) {
      const auto* data = t.data_ptr<std::uint8_t>();
      std::int64_t n = 0;
      std::memcpy(&n, data, sizeof n);
      if (n < 0 || n > width - static_cast<std::int64_t>(sizeof n)) throw DistributedError("gather: a corrupt buffer");
      parts.emplace_back(data + sizeof n, data + sizeof n + n);
    }
    return parts;
  }

 private:
  template <typename Start>
  void run(const char* what, Start start) {
    try {
      auto work = start();
      work->wait();
    } catch (const c10::Error& e) {
      throw DistributedError(fmt::format("{} failed: {}", what, e.what_without_backtrace()));
    } catch (const std::exception& e) {
      throw DistributedError(fmt::format("{} failed: {}", what, e.what()));
    }
  }

  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::chrono::milliseconds timeout_;
  std::string backend_;
};

}  // namespace

std::shared_ptr<Communicator> make_communicator(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                std::chrono::milliseconds timeout) {
  return std::make_shared<ProcessGroupCommunicator>(std::move(group), timeout);
}

}  // namespace neuronmap
