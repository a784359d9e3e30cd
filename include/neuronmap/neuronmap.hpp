// NeuronMap: watch what the neurons of a LibTorch model learn while it trains. The umbrella header
// (free of LibTorch headers; TorchScript and c10d are in torchscript.hpp and distributed.hpp).
#pragma once

#include "neuronmap/communicator.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/group.hpp"
#include "neuronmap/layers.hpp"
#include "neuronmap/options.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/session.hpp"
#include "neuronmap/snapshot.hpp"
#include "neuronmap/version.hpp"
