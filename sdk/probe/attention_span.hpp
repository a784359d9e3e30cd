// Per-head attention weights for front ends that see where an attention module's call starts and ends
// (Python hooks, TorchScript graph ops) but not the ops inside it: between begin and end, a
// RecordFunction callback on the calling thread takes the first outermost softmax, [B*H, T, S].
// nn.MultiheadAttention's forward runs no other softmax before that one.
#pragma once

#include <functional>
#include <string>

namespace at {
class Tensor;
}

namespace neuronmap::detail {

/// Receives the weights as [B, H, T, S] (a view of the softmax's output, detached), on the thread that
/// ran the forward, with recording off. Must not throw.
using TakeAttention = std::function<void(const at::Tensor& weights)>;

/// Opens this thread's span for a module with `heads` heads (closing one left open). Throws what
/// addThreadLocalCallback throws.
void begin_attention_span(int heads, TakeAttention take);

/// Closes this thread's span (nothing if none is open). Returns the name of a fused attention kernel
/// that ran inside it while no softmax was taken (its weights stayed inside the kernel), else "".
std::string end_attention_span() noexcept;

/// Whether `op` is one of PyTorch's fused attention kernels (its inference fast paths), which compute
/// the weights inside one op.
bool fused_attention_op(const char* op) noexcept;

}  // namespace neuronmap::detail
