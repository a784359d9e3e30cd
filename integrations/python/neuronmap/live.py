"""neuronmap.serve: the live view of a run file from Python. It runs the `neuronmap serve` command as a
child process (the server is the CLI's: no second implementation, no LibTorch in the server)."""
import os as _os
import re as _re
import subprocess as _subprocess

from . import _analysis as _core  # its exceptions; the server needs no torch


class LiveServer:
    """A running `neuronmap serve`. Stop it with stop() or use it as a context manager; the child also
    ends when the Python process does (it is killed by the interpreter's exit handlers otherwise)."""

    def __init__(self, path, port=8050, host="127.0.0.1", open_browser=False, cli=None):
        from ._cli import _find_cli
        cli = cli or _find_cli()
        if cli is None:
            raise _core.FileError("neuronmap.serve: the neuronmap executable was not found "
                                  "(set NEURONMAP_CLI or put it on PATH)")
        cmd = [cli, "serve", _os.fspath(path), "--port", str(int(port)), "--host", str(host)]
        if open_browser:
            cmd.append("--open")
        self._proc = _subprocess.Popen(cmd, stdout=_subprocess.PIPE, stderr=_subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        match = _re.search(r"(http://\S+/)", line)
        if not match:
            err = self._proc.stderr.read() if self._proc.wait(timeout=30) is not None else ""
            raise _core.FileError(f"neuronmap.serve: the server did not start: {(err or line).strip()}")
        self.url = match.group(1)
        self.port = int(_re.search(r":(\d+)/$", self.url).group(1))

    @property
    def running(self):
        return self._proc.poll() is None

    def stop(self, timeout=10):
        """Stops the server (SIGTERM, then SIGKILL after `timeout` s); idempotent."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except _subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream:
                stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __del__(self):
        try:
            self.stop(timeout=2)
        except Exception:
            pass

    def __repr__(self):
        return f"<neuronmap.LiveServer {self.url} {'running' if self.running else 'stopped'}>"


def serve(path, port=8050, host="127.0.0.1", open_browser=False):
    """Serves the live dashboard of the run file `path` (it may not exist yet) at http://host:port/,
    while training writes it; returns a LiveServer at once (port=0: any free port, see .port)."""
    return LiveServer(path, port=port, host=host, open_browser=open_browser)
