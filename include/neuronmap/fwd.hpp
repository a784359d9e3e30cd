// Forward declarations, so that headers which only pass NeuronMap or LibTorch types around stay light.
#pragma once

namespace torch {
namespace nn {
class Module;
}  // namespace nn
}  // namespace torch

namespace neuronmap {
class Options;
class Session;
class Run;
struct Group;
struct LayerSnapshot;
struct Snapshot;
struct RunInfo;
struct Counters;
}  // namespace neuronmap
