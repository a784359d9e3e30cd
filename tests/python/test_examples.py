"""The three demo scripts of examples/python run (as scripts, in a fresh interpreter) and say what they did."""
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python")


@pytest.mark.parametrize("script,expect", [
    ("pytorch_demo_neuron_groups.py", ["total_learning_events", "learning events by skill type", "run.h5"]),
    ("standalone_pytorch_demo.py", ["learning events", "picture: pytorch_all_layers_heatmap.png",
                                    "picture: pytorch_groups_network_fc1.png",
                                    "standalone_analysis_report.json"]),
    ("pytorch_simulation_demo.py", ["fc1: (120, 32), 4 groups", "picture: pytorch_groups_heatmap_fc1.png",
                                    "pytorch_simulation_report.json", "torch loaded: False"]),
])
def test_example(tmp_path, script, expect):
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for text in expect:
        assert text in p.stdout, p.stdout


def test_simulation_demo_runs_where_torch_cannot_be_imported(tmp_path):
    """The NumPy path of `import neuronmap` needs no torch: the demo runs with `import torch` made to fail."""
    script = os.path.join(EXAMPLES, "pytorch_simulation_demo.py")
    code = ("import runpy, sys; sys.modules['torch'] = None; "  # None in sys.modules: import torch raises ImportError
            f"sys.argv = [{script!r}, {str(tmp_path / 'out')!r}]; runpy.run_path({script!r}, run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "fc1: (120, 32), 4 groups" in p.stdout and "picture: pytorch_groups_network_fc1.png" in p.stdout
    assert os.path.isfile(tmp_path / "out" / "pytorch_groups_scatter_fc1.png")
