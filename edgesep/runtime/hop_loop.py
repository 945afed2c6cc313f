"""The hop loop in C: the reference framer compiled for this machine.

``--hop-loop c`` (``open_streamer(..., hop_loop="c")``) streams with the framer that
``edgesep firmware`` also emits (:mod:`edgesep.framer`: streaming STFT, features, quantiser,
state feedback, masks, inverse FFT, overlap-add; C99, float32), built here with the host
``gcc`` into a shared library (:mod:`edgesep.framer.cache`) and driven through ctypes. The
model still runs in ai-edge-litert, on the interpreter's own buffers: one ctypes call per hop,
and one callback into Python for ``Invoke``. The Python streamer (:mod:`edgesep.runtime.stream`)
stays the reference; this path trades its per-hop numpy calls for C.

Its output equals the Python streamer's to float rounding for float models. For int8 models
the C FFT (float32) and numpy's (float64 inside) can round a feature to the neighbouring
quantisation step now and then, which the model's states carry on: the waveforms then differ
by a little, not the separation quality (``tests/test_hop_loop.py`` bounds both).

Libraries are cached by the SHA-256 of their sources, the compiler and the flags, in a folder
private to the user (``$EDGESEP_HOP_LOOP_CACHE``, default ``~/.cache/edgesep/hop-loop``), and
checked against their build record before they are loaded (:mod:`edgesep.framer.cache`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgesep.contract import Manifest
from edgesep.errors import EdgesepError
from edgesep.framer.cache import CACHE_ENV, cached_library
from edgesep.framer.host import HostFramer
from edgesep.framer.sources import HOST_PREFIX, host_sources
from edgesep.runtime.latency import LatencyStats, cpu_clock
from edgesep.runtime.stepper import Stepper


class CompiledStreamer:
    """:class:`edgesep.runtime.stream.Streamer`'s interface on the C framer: ``hop`` samples
    in, ``{source: hop samples}`` out (new arrays, as the Python streamer's).

    :attr:`built_library`: whether opening it compiled the C library (a cache miss);
    :attr:`latency` and :attr:`cpu_latency` time each hop (wall clock, own CPU time);
    :attr:`model_latency` times the model's ``Invoke`` as the C step calls it, once per hop.
    """

    def __init__(self, manifest: Manifest, stepper: Stepper,
                 library: Path | None = None) -> None:
        """``library``: one :func:`edgesep.framer.cache.build_library` made for this artefact
        elsewhere (a cross build for an emulated target); by default built here with gcc."""
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
            self.framer = HostFramer(library, library.parent, HOST_PREFIX)
        except OSError as exc:  # e.g. a cache on a noexec mount, or a file removed from it
            raise EdgesepError(f"cannot load the C hop loop {library} ({exc}); "
                               f"{CACHE_ENV} names another cache folder") from None
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
