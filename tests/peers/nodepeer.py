"""Run the node-smpp SMSC (``tests/peers/smsc.js``) from Python tests.

::

    from tests.peers.nodepeer import NodeSmsc, node_available

    pytestmark = pytest.mark.skipif(not node_available(), reason="node is not installed")

    with NodeSmsc("normal", receipt_delay_ms=50) as smsc:
        ...connect to 127.0.0.1:smsc.port...
        submits = smsc.wait_submits(1)        # the SUBMIT lines, parsed
        assert submits[0]["destination_addr"] == "61400000001"

:func:`ensure_installed` runs ``npm ci`` in ``tests/peers`` when ``node_modules`` is
missing (``NodeSmsc`` calls it), so a fresh clone needs only node and npm.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

__all__ = ["PEER_DIR", "NodePeerError", "NodeSmsc", "ensure_installed", "node_available"]

PEER_DIR = Path(__file__).resolve().parent
SMSC_JS = PEER_DIR / "smsc.js"
READY_TIMEOUT = 15.0
NPM_TIMEOUT = 300.0


class NodePeerError(RuntimeError):
    """The node peer cannot be installed or started."""


def node_available() -> bool:
    """True when a ``node`` executable is on PATH."""
    return shutil.which("node") is not None


def ensure_installed() -> None:
    """Install the peer's npm dependencies (``npm ci``, from package-lock.json) when
    ``tests/peers/node_modules`` lacks them. Raises :class:`NodePeerError` when node
    or npm is missing or the install fails. Safe to call from parallel processes."""
    if not node_available():
        raise NodePeerError("node is not installed (needed for the node-smpp test peer)")
    if (PEER_DIR / "node_modules" / "smpp" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodePeerError(
            "npm is not installed: cannot install the node-smpp test peer "
            f"(run `npm ci` in {PEER_DIR})"
        )
    with _install_lock():
        if (PEER_DIR / "node_modules" / "smpp" / "package.json").exists():
            return
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PEER_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodePeerError(f"`npm ci` in {PEER_DIR} took over {NPM_TIMEOUT:.0f} s") from exc
        if result.returncode != 0:
            raise NodePeerError(
                f"`npm ci` in {PEER_DIR} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )


@contextlib.contextmanager
def _install_lock() -> Any:
    """An exclusive lock (pytest-xdist workers may start at once), held on
    package.json itself so no lock file is left behind."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with (PEER_DIR / "package.json").open("rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class NodeSmsc:
    """``node tests/peers/smsc.js MODE ...`` as a subprocess on 127.0.0.1, on a port
    the OS picks (read :attr:`port` once entered).

    ``mode`` is ``normal``, ``permanent``, ``throttle``, ``slow``, ``drop``, ``garbage``,
    ``mute`` or ``hang`` (see smsc.js); the keyword options map to the script's flags:
    ``receipt_delay_ms``, ``throttle`` (rejections per destination), ``throttle_ms``
    (throttle everything this long), ``slow_ms``, ``drop_after`` (submits answered
    before a connection is destroyed, or garbage is sent, or it hangs), ``drops`` (how
    many times), ``system_id`` / ``password`` (required credentials), ``id_style``
    (``hex`` / ``dec``).

    Every stdout line is collected by a thread: ``SUBMIT`` lines parsed into
    :attr:`submits`, all of them (kind, parsed JSON or ``None``) into :attr:`events`.
    """

    _FLAGS: ClassVar[dict[str, str]] = {
        "receipt_delay_ms": "--receipt-delay",
        "throttle": "--throttle",
        "slow_ms": "--slow",
        "drop_after": "--drop-after",
        "drops": "--drops",
        "system_id": "--system-id",
        "password": "--password",
        "id_style": "--id-style",
        "throttle_ms": "--throttle-ms",
    }

    def __init__(self, mode: str = "normal", **options: Any) -> None:
        unknown = set(options) - set(self._FLAGS)
        if unknown:
            raise TypeError(f"unknown NodeSmsc option(s): {', '.join(sorted(unknown))}")
        self.mode = mode
        self.options = options
        self.host = "127.0.0.1"
        self.port = 0
        self.submits: list[dict[str, Any]] = []
        self.events: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._stderr: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []

    def command(self) -> list[str]:
        args = ["node", str(SMSC_JS), self.mode, "--port", "0", "--host", self.host]
        for name, value in self.options.items():
            if value is not None:
                args += [self._FLAGS[name], str(value)]
        return args

    def start(self) -> None:
        ensure_installed()
        self._proc = subprocess.Popen(
            self.command(),
            cwd=PEER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise NodePeerError(
                    f"node SMSC ({' '.join(self.command())}) did not print READY within "
                    f"{READY_TIMEOUT:.0f} s (exit code {self._proc.returncode}):\n"
                    + "".join(self._stderr)[-2000:]
                )

    def stop(self) -> None:
        """Close the peer's stdin (it exits), escalating to SIGTERM then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for thread in self._threads:
            thread.join(5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> NodeSmsc:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def send_mo(self, source: str, destination: str, text: str, **extra: Any) -> None:
        """Ask the peer to deliver an MO deliver_sm to a bound receiver (its response
        shows up as an ``MO_RESP`` event)."""
        assert self._proc is not None and self._proc.stdin is not None
        command = {"source": source, "destination": destination, "text": text, **extra}
        self._proc.stdin.write("MO " + json.dumps(command) + "\n")
        self._proc.stdin.flush()

    def wait_submits(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The first ``count`` SUBMIT records, waiting up to ``timeout`` seconds for
        them; raises ``TimeoutError`` with what arrived."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.submits) >= count, timeout):
                raise TimeoutError(f"{len(self.submits)} of {count} submits: {self.submits}")
            return list(self.submits[:count])

    def wait_event(self, kind: str, timeout: float = 5.0, count: int = 1) -> list[Any]:
        """The data of the first ``count`` events of ``kind`` (``RECEIPT``,
        ``RECEIPT_RESP``, ``DROP``, ``MO_RESP``...), waiting up to ``timeout`` s."""

        def found() -> list[Any]:
            return [data for k, data in self.events if k == kind]

        with self._cond:
            if not self._cond.wait_for(lambda: len(found()) >= count, timeout):
                raise TimeoutError(f"no {count} {kind} event(s) in {self.events}")
            return found()[:count]

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            try:
                data = json.loads(rest) if rest else None
            except ValueError:
                data = rest
            with self._cond:
                if kind == "READY":
                    self.port = int(data)
                    self._ready.set()
                elif kind == "SUBMIT":
                    data["received_at"] = time.monotonic()  # when it reached us, for rates
                    self.submits.append(data)
                self.events.append((kind, data))
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)


if __name__ == "__main__":  # pragma: no cover - manual use: python tests/peers/nodepeer.py
    ensure_installed()
    with NodeSmsc(os.environ.get("SMSC_MODE", "normal")) as smsc:
        print(f"node SMSC on 127.0.0.1:{smsc.port}; Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while smsc.returncode is None:
                time.sleep(1)
