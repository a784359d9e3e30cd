"""The three demo scripts of examples/python run (as scripts, in a fresh interpreter) and say what they did."""
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python")


@pytest.mark.parametrize("script,expect", [
    ("pytorch_demo_neuron_groups.py", ["total_learning_events", "learning events by skill type", "run.h5"]),
    ("standalone_pytorch_demo.py", ["learning events", "picture: pytorch_all_layers_heatmap.png",
                                    "standalone_analysis_report.json"]),
    ("pytorch_simulation_demo.py", ["fc1: (120, 32), 4 groups", "pytorch_simulation_report.json"]),
])
def test_example(tmp_path, script, expect):
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for text in expect:
        assert text in p.stdout, p.stdout
