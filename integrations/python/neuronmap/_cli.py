"""The `neuronmap` executable, for the parts of the package that run it (pictures, the live view). No torch."""
import os as _os


def _find_cli():
    """The `neuronmap` executable: $NEURONMAP_CLI, next to this package in a build tree, or on PATH."""
    import shutil
    env = _os.environ.get("NEURONMAP_CLI")
    if env and _os.access(env, _os.X_OK):
        return env
    here = _os.path.dirname(_os.path.abspath(__file__))
    built = _os.path.join(here, "..", "..", "bin", "neuronmap")  # <build>/python/neuronmap -> <build>/bin
    if _os.access(built, _os.X_OK):
        return _os.path.normpath(built)
    return shutil.which("neuronmap")
