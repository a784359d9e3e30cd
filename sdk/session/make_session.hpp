// The one way every front end (C++ modules, TorchScript, Python) builds a Session: Session's constructor
// is private, and make_session reaches it through the one friend, detail::SessionAccess (session.cpp).
#pragma once

#include <string>

#include "neuronmap/session.hpp"
#include "probe/probe_set.hpp"

namespace neuronmap::detail {

/// `device` is recorded in the run file (e.g. "cpu", "cuda:0").
Session make_session(const ProbeFactory& make_probes, const std::string& device, Options options);

}  // namespace neuronmap::detail
