# cmake -P script: `cmake --install` into a scratch prefix, then the installed Python package alone
# (PYTHONPATH=<prefix>/<site dir>, no build tree, no LD_LIBRARY_PATH) attaches to an eager model,
# writes a run and reads it back; the extension must load libneuronmap from the prefix (its RPATH).
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})\n${out}\n${err}")
endif()
if(IS_ABSOLUTE ${SITE_DIR})
  message(FATAL_ERROR "NEURONMAP_PYTHON_INSTALL_DIR=${SITE_DIR} is absolute: this test needs it under the prefix")
endif()
set(site ${prefix}/${SITE_DIR})
file(GLOB core ${site}/neuronmap/_core*.so)
if(NOT EXISTS ${site}/neuronmap/__init__.py OR NOT core)
  message(FATAL_ERROR "install did not put the package (with _core) into ${site}/neuronmap")
endif()
file(WRITE ${WORK_DIR}/check.py [=[
import os, sys
import torch
from torch import nn
import neuronmap

prefix = os.path.realpath(sys.argv[1])
assert os.path.realpath(neuronmap.__file__).startswith(prefix), neuronmap.__file__
assert os.path.realpath(neuronmap._core.__file__).startswith(prefix), neuronmap._core.__file__
assert os.path.realpath(neuronmap._analysis.__file__).startswith(prefix), neuronmap._analysis.__file__
with open("/proc/self/maps") as maps:
    libs = {line.split()[-1] for line in maps if "libneuronmap.so" in line}
assert libs and all(os.path.realpath(p).startswith(prefix) for p in libs), libs

torch.manual_seed(0)
model = nn.Sequential()
model.add_module("fc1", nn.Linear(4, 8))
model.add_module("relu1", nn.ReLU())
model.add_module("fc2", nn.Linear(8, 2))
path = os.path.join(sys.argv[2], "run.h5")
with neuronmap.attach(model, ["fc1", "relu1"], every=1, file=path, min_group_size=2) as s:
    for epoch in (1, 2):
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(16, 4))
        s.end_epoch(epoch, 1.0 / epoch)
run = neuronmap.open(path)
assert run.layers == ["fc1", "relu1"], run.layers
assert len(run) == 2, len(run)
print("installed neuronmap", neuronmap.__version__, "from", os.path.dirname(neuronmap.__file__),
      "wrote", len(run), "snapshots")
]=])
execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH PYTHONPATH=${site} OMP_NUM_THREADS=1
                        ${PYTHON} -s ${WORK_DIR}/check.py ${prefix} ${WORK_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the installed package failed (${rc})\n${out}\n${err}")
endif()
message(STATUS "${out}")
