// NeuronMap: watch what the neurons of a LibTorch model learn while it trains. The umbrella header.
#pragma once

#include "neuronmap/errors.hpp"
#include "neuronmap/options.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/session.hpp"
#include "neuronmap/snapshot.hpp"
#include "neuronmap/version.hpp"
