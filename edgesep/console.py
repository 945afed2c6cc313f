"""A quiet console: library start-up chatter captured, progress that suits where it goes.

TensorFlow, XLA and LiteRT print start-up lines on file descriptor 2 from C++ (absl's "All log
messages before absl::InitializeLog()", ``cudart_stub``, ``cuInit`` on a machine without a GPU,
LiteRT's "Created TensorFlow Lite XNNPACK delegate"), before Python logging exists and whatever
``TF_CPP_MIN_LOG_LEVEL`` says for some of them. :func:`captured_stderr` redirects fd 2 to a
temporary file around such a call and, once fd 2 is back, replays every line that is not known
start-up noise (:data:`NOISE`), so real errors still show. :func:`import_tensorflow` imports
TensorFlow that way. :func:`progress` is a tqdm bar on a terminal and, when stderr is a file or
a pipe, a plain line now and then (no carriage-return redraws).

``edgesep --verbose`` (:func:`set_verbose`, or ``EDGESEP_VERBOSE=1`` in the environment)
turns all of this off: every library line shows and TensorFlow logs at its own default level.
This module imports no TensorFlow unless :func:`import_tensorflow` is called.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
import tempfile
import warnings

#: Lines that libraries print on fd 2 while starting up (dropped unless verbose).
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+:\d+\] "  # absl/glog INFO and WARNING lines
    r"|E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|INFO: Initialized TensorFlow Lite runtime"
    r"|fully_quantize: \d+, inference_type:"
    r"|oneDNN custom operations are on"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|\s*$)"
)

_verbose = os.environ.get("EDGESEP_VERBOSE") == "1"
log = logging.getLogger("edgesep.progress")


def set_verbose(verbose: bool) -> None:
    """``True``: let every library line through (child processes inherit it)."""
    global _verbose
    _verbose = bool(verbose)
    os.environ["EDGESEP_VERBOSE"] = "1" if verbose else "0"


def is_verbose() -> bool:
    return _verbose


def quiet_environment() -> None:
    """Environment defaults read by TensorFlow and its children when they start (a value the
    user set is kept): C++ logging at ERROR+ (FATAL only when quiet); Keras 3 on TensorFlow
    unless ``KERAS_BACKEND`` names another backend (``edgesep train --backend jax``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _verbose else "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def quiet_logging(verbose: bool | None = None) -> None:
    """Console logging for the command line: edgesep's own lines (INFO, DEBUG when verbose)
    as plain messages on stderr; other libraries' Python loggers (tensorflow, tf2onnx,
    onnxruntime's root-logger warnings, absl) only at ERROR unless verbose."""
    verbose = _verbose if verbose is None else verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.ERROR,
                        format="%(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.ERROR)
    logging.getLogger("edgesep").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in ("tensorflow", "tf2onnx", "absl", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)


@contextlib.contextmanager
def captured_stderr(keep=None):
    """Redirect file descriptor 2 (C and C++ code included) to a temporary file for the
    block; then replay the lines not matching :data:`NOISE` (or for which ``keep(line)`` is
    true) to ``sys.stderr``. A no-op when verbose or when fd 2 cannot be duplicated."""
    if _verbose:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            for line in text.splitlines(keepends=True):
                if (keep(line) if keep is not None else not NOISE.match(line)):
                    sys.stderr.write(line if line.endswith("\n") else line + "\n")
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()


def import_tensorflow():
    """``import tensorflow`` with its start-up lines captured (see :func:`captured_stderr`);
    absl's Python logging is set to ERROR first unless verbose. Returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_environment()
    if not _verbose:
        with contextlib.suppress(ImportError):
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
    with captured_stderr():
        tf = importlib.import_module("tensorflow")
    if not _verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return tf


def import_keras():
    """``import keras`` on the backend ``KERAS_BACKEND`` names (TensorFlow by default, its
    start-up lines captured; ``jax`` needs no TensorFlow). Returns the module."""
    quiet_environment()
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import_tensorflow()
    with captured_stderr():
        keras = importlib.import_module("keras")
    return keras


def require_tensorflow_backend(what: str) -> None:
    """Raise a one-line :class:`EdgesepError` unless Keras runs on TensorFlow (the converters
    need its graphs: export, pruning's fine-tuning inside an export, calibration)."""
    from edgesep.errors import EdgesepError

    keras = import_keras()
    if keras.backend.backend() != "tensorflow":
        raise EdgesepError(f"{what} runs on Keras's TensorFlow backend, this process has "
                           f"{keras.backend.backend()!r}: unset KERAS_BACKEND or set it to "
                           "tensorflow")


@contextlib.contextmanager
def quiet_library_warnings():
    """Filter the Python warnings that libraries raise about themselves (TensorFlow's
    ``tf.lite.Interpreter is deprecated``, created by its own int8 calibrator) for the
    block; edgesep's warnings still show. Verbose: nothing filtered."""
    with warnings.catch_warnings():
        if not _verbose:
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is "
                                    "deprecated", category=UserWarning)
        yield


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """The part of tqdm's interface edgesep uses, printing a plain log line instead of
    redrawing: on :meth:`set_postfix_str` (a new stage: one line each) and when ``update``
    crosses each ``every``-th fraction of ``total`` (default 10 %)."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, every: float | None = 0.1) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every = every
        self.postfix = ""
        self._next = self._threshold(initial)

    def _threshold(self, n: int) -> float:
        if not self.total or self.every is None:
            return float("inf")
        step = max(1.0, self.every * self.total)
        return (n // step + 1) * step

    def _line(self) -> str:
        of = f"/{self.total}" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.n}{of} {self.unit}{extra}"

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self._next or (self.every is not None and self.n == self.total):
            log.info(self._line())
            self._next = self._threshold(self.n)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        """Name the stage now starting or just finished: one line."""
        self.postfix = ""
        of = f" ({self.n}/{self.total})" if self.total else ""
        log.info(f"{self.desc}: {text}{of}")

    def reset(self, total: int | None = None) -> None:
        self.n, self.total = 0, total
        self._next = self._threshold(0)

    def close(self) -> None:
        pass

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
             initial: int = 0, leave: bool = True, unit_scale: bool = False,
             every: float | None = 0.1):
    """A tqdm bar when stderr is a terminal, else a :class:`LineProgress` (log lines, no
    ``\\r`` redraws: one per stage, and every ``every`` of the total, None: never);
    with ``enabled=False`` a bar that shows nothing."""
    from tqdm import tqdm

    if not enabled:
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=True)
    if stderr_is_terminal():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                    unit_scale=unit_scale)
    return LineProgress(total, desc, unit, initial, every)
