"""The hop loop in C: the firmware bridge's reference framer compiled for this machine.

``--hop-loop c`` (``open_streamer(..., hop_loop="c")``) streams with the framer that
``edgesep firmware`` emits (:mod:`edgesep.firmware_bridge`: streaming STFT, features,
quantiser, state feedback, masks, inverse FFT, overlap-add; C99, float32), built here with the
host ``gcc`` into a shared library and driven through ctypes. The model still runs in
ai-edge-litert, on the interpreter's own buffers: one ctypes call per hop, and one callback
into Python for ``Invoke``. The Python streamer (:mod:`edgesep.runtime.stream`) stays the
reference; this path trades its per-hop numpy calls for C.

Its output equals the Python streamer's to float rounding for float models. For int8 models
the C FFT (float32) and numpy's (float64 inside) can round a feature to the neighbouring
quantisation step now and then, which the model's states carry on: the waveforms then differ
by a little, not the separation quality (``tests/test_hop_loop.py`` bounds both).

Libraries are cached by the SHA-256 of their sources, the compiler (its version and target
machine) and the flags, in ``$EDGESEP_HOP_LOOP_CACHE`` (default ``~/.cache/edgesep/hop-loop``);
a build is written in a temporary ``.build-*`` folder and renamed into place, so a crash never
leaves a half-built library under a final name (a killed build may leave a ``.build-*``
folder, never used). gcc is needed on a cache hit too: its identity is part of the key.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from edgesep.contract import Manifest, read_artefact
from edgesep.errors import EdgesepError
from edgesep.runtime.latency import LatencyStats, cpu_clock
from edgesep.runtime.stepper import Stepper

#: Prefix of the generated C (its functions and macros).
PREFIX = "hop"
#: How a user gets each compiler on Debian/Ubuntu.
INSTALL = {"gcc": "apt-get install -y gcc",
           "aarch64-linux-gnu-gcc": "apt-get install -y gcc-aarch64-linux-gnu"}


def cache_dir() -> Path:
    root = os.environ.get("EDGESEP_HOP_LOOP_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "edgesep" / "hop-loop"


def compiler_identity(compiler: str) -> tuple[str, str]:
    """``(version, target machine)`` of ``compiler``, part of a library's cache key (gcc stops
    at its first ``-dump`` option, hence two calls); an error naming the install when missing."""
    path = shutil.which(compiler)
    if path is None:
        raise EdgesepError(f"--hop-loop c compiles the C framer and needs {compiler} on the "
                           f"PATH ({INSTALL.get(compiler, 'install it')}); --hop-loop python "
                           "needs none")
    return _identity(path)


@functools.cache
def _identity(path: str) -> tuple[str, str]:
    try:
        return tuple(subprocess.run([path, option], capture_output=True, text=True,
                                    timeout=60).stdout.strip()
                     for option in ("-dumpfullversion", "-dumpmachine"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgesepError(f"{path} does not answer ({exc})") from None


def host_sources(manifest: Manifest, precision: str | None = None) -> dict[str, str]:
    """The C of the framer around ``manifest``'s TFLite artefact for ``precision`` (its
    contract header carries that artefact's tensors and quantisation)."""
    from edgesep.firmware_bridge import emit
    from edgesep.firmware_bridge.tflite_model import read_tflite

    artefact = manifest.artefact(precision, "tflite")
    if artefact.format != "tflite":
        raise EdgesepError(f"--hop-loop c runs TFLite artefacts; {artefact.key} is "
                           f"{artefact.format}")
    model = read_artefact(artefact)
    spec = emit.firmware_spec(PREFIX, manifest, artefact, model,
                              read_tflite(model, str(artefact.path)), arena_measured=None)
    return emit.host_files(spec)


def build_library(files: dict[str, str], compiler: str = "gcc") -> Path:
    """The shared library of :func:`host_sources`' ``files``, from the cache or compiled now
    (``compiler``: ``gcc``, or a cross compiler such as ``aarch64-linux-gnu-gcc``). The
    sources lie beside it."""
    return cached_library(files, compiler)[0]


def cached_library(files: dict[str, str], compiler: str = "gcc") -> tuple[Path, bool]:
    """:func:`build_library`'s library and whether this call compiled it (``False``: taken
    from the cache)."""
    from edgesep.firmware_bridge import toolchain

    flags = [*toolchain.STRICT_CFLAGS, *toolchain.SHARED_FLAGS]
    digest = hashlib.sha256(repr((compiler, compiler_identity(compiler), flags,
                                  sorted(files.items()))).encode()).hexdigest()[:24]
    final = cache_dir() / digest
    library = final / f"lib{PREFIX}.so"
    if library.is_file():
        return library, False
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=".build-") as tmp:
            folder = Path(tmp) / "src"
            folder.mkdir()
            for name, text in files.items():
                (folder / name).write_text(text)
            toolchain.host_library(folder, PREFIX, folder / library.name,
                                   parts=("framer", "fft", "host"), compiler=compiler)
            try:
                os.replace(folder, final)
            except OSError:  # another process built the same library first
                if not library.is_file():
                    raise
    except OSError as exc:
        raise EdgesepError(f"cannot build the C hop loop in {final.parent} ({exc.strerror}; "
                           "EDGESEP_HOP_LOOP_CACHE names another folder)") from None
    return library, True


class CompiledStreamer:
    """:class:`edgesep.runtime.stream.Streamer`'s interface on the C framer: ``hop`` samples
    in, ``{source: hop samples}`` out (new arrays, as the Python streamer's).

    :attr:`built_library`: whether opening it compiled the C library (a cache miss);
    :attr:`latency` and :attr:`cpu_latency` time each hop (wall clock, own CPU time);
    :attr:`model_latency` times the model's ``Invoke`` as the C step calls it, once per hop.
    """

    def __init__(self, manifest: Manifest, stepper: Stepper,
                 library: Path | None = None) -> None:
        """``library``: one :func:`build_library` made for this artefact elsewhere (a cross
        build for an emulated target); by default built here with gcc."""
        from edgesep.firmware_bridge.host import HostFramer

        io = stepper.backend.io()
        if io is None:
            raise EdgesepError(f"--hop-loop c needs a backend that runs on its own buffers "
                               f"(litert or tflite-runtime), not {stepper.backend.name}")
        self.manifest = manifest
        self.cfg = manifest.stft
        self.hop = self.cfg.hop
        self.sources = manifest.sources
        self.stepper = stepper
        self.built_library = False
        if library is None:
            library, self.built_library = cached_library(host_sources(manifest,
                                                                      stepper.artefact.key))
        try:
            self.framer = HostFramer(library, library.parent, PREFIX)
        except OSError as exc:  # e.g. a cache on a noexec mount, or a file removed from it
            raise EdgesepError(f"cannot load the C hop loop {library} ({exc}); "
                               "EDGESEP_HOP_LOOP_CACHE names another cache folder") from None
        if (self.framer.hop, self.framer.output_delay) != (self.hop,
                                                           self.cfg.output_delay_samples):
            raise EdgesepError("internal: the C framer's contract differs from the manifest")
        hop_ns = round(1e9 * self.hop / self.cfg.sample_rate)
        self.latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self.model_latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self.cpu_latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self._cpu_clock, self.cpu_clock_name = cpu_clock(stepper.backend)
        raw_invoke = io.invoke
        add_model_ns = self.model_latency.add
        clock = time.perf_counter_ns

        def invoke() -> None:
            t = clock()
            raw_invoke()
            add_model_ns(clock() - t)

        self.framer.bind_buffers([io.inputs[t["name"]] for t in self.framer.inputs],
                                 [io.outputs[t["name"]] for t in self.framer.outputs], invoke)
        self._nonfinite_before_reset = 0

    @property
    def output_delay_samples(self) -> int:
        return self.cfg.output_delay_samples

    @property
    def nonfinite_samples(self) -> int:
        """NaN/inf input samples replaced by 0, over every stream (as the Python streamer)."""
        return self._nonfinite_before_reset + self.framer.nonfinite_samples

    def reset(self) -> None:
        """Start a new stream: input, overlap-add and model states back to zero."""
        self._nonfinite_before_reset += self.framer.nonfinite_samples
        self.framer.reset()

    def process_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        t0 = time.perf_counter_ns()
        c0 = self._cpu_clock()
        out = self.framer.process(chunk)
        self.cpu_latency.add(self._cpu_clock() - c0)
        self.latency.add(time.perf_counter_ns() - t0)
        return dict(zip(self.sources, out, strict=True))
