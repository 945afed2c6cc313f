"""The one frame stepper: run one frame of a streaming model, carry its states.

Every path that runs a model frame by frame goes through :class:`Stepper`: the streamer,
``bench``, ``validate``, the export's accuracy check and the int8 calibration (the Keras float
model behind the same interface). So the accuracy a manifest records is measured by the code
that ships.

Float features in, float masks out, whatever the model's I/O types: the frame is quantised with
its scale/zero point and the masks dequantised (:func:`quantise`/:func:`dequantise`, the only
quantiser). A state output whose (dtype, scale, zero point) equals its receiving input's is fed
back raw (exact for int8); otherwise it is dequantised and requantised.

Where the backend offers zero-copy access (:meth:`edgesep.runtime.backends.Backend.io`, the
TFLite interpreters) a step allocates next to nothing: the frame is quantised into the model's
input buffer, each state output is copied into its input buffer, and the masks are read from
the output buffer. Other backends (ONNX Runtime, the Keras reference) take the same numbers
through ``backend.run`` with dicts.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from edgesep.contract import FRAME, MASKS, Artefact, Manifest, TensorSpec, check_model_io
from edgesep.errors import EdgesepError
from edgesep.runtime.backends import Backend


def quantise(x: np.ndarray, spec: TensorSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Float -> the tensor's dtype (``round(x / scale) + zero_point``, saturated, float32),
    written into ``out`` (the tensor's own buffer) when given."""
    if not spec.quantised:
        q = np.asarray(x, dtype=spec.dtype)
    else:
        scale, zero_point, low, high = _constants(spec)
        q = np.rint(np.asarray(x, np.float32) / scale)
        q += zero_point
        np.maximum(q, low, out=q)  # np.clip's argument checks cost more than the clip here
        np.minimum(q, high, out=q)
        q = q.astype(spec.dtype) if out is None else q  # integral and in range: exact
    if out is None:
        return q
    out[...] = np.reshape(q, out.shape)
    return out


def dequantise(x: np.ndarray, spec: TensorSpec, out: np.ndarray | None = None) -> np.ndarray:
    """The tensor's dtype -> float32 (into ``out`` when given)."""
    if not spec.quantised:
        if out is None:
            return np.asarray(x, dtype=np.float32)
        out[...] = np.reshape(x, out.shape)
        return out
    scale, zero_point, _, _ = _constants(spec)
    out = np.subtract(x, zero_point, out=out, dtype=np.float32)
    return np.multiply(out, scale, out=out)


@functools.lru_cache(maxsize=256)
def _constants(spec: TensorSpec) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    """``(scale, zero point, dtype min, dtype max)`` of a quantised tensor, as float32 (worked
    out once per tensor: ``np.iinfo`` costs more than a hop's quantisation)."""
    info = np.iinfo(spec.dtype)
    return (np.float32(spec.scale), np.float32(spec.zero_point), np.float32(info.min),
            np.float32(info.max))


class Stepper:
    """A streaming model as a per-frame function ``features -> masks`` carrying its states.

    ``inputs``/``outputs`` are the model's tensors (from the backend); build it with
    :meth:`for_artefact` to check them against a manifest first. With ``record``, after each
    :meth:`step` :attr:`last_feeds` and :attr:`last_outputs` hold the raw tensors of that call
    (calibration records them; the runtime does not, to allocate nothing per hop for it).
    """

    def __init__(self, backend: Backend, nb_sources: int,
                 artefact: Artefact | None = None, record: bool = False) -> None:
        self.backend, self.artefact, self.record = backend, artefact, record
        self.inputs, self.outputs = list(backend.inputs), list(backend.outputs)
        frames = [t for t in self.inputs if t.role == FRAME]
        masks = [t for t in self.outputs if t.role == MASKS]
        if len(frames) != 1 or len(masks) != 1:
            raise EdgesepError("a streaming model needs one 'frame' input and one 'masks' output")
        self._frame, self._masks = frames[0], masks[0]
        self.nb_model_bins = int(np.prod(self._frame.shape))
        self.nb_sources = nb_sources
        if int(np.prod(self._masks.shape)) != self.nb_model_bins * nb_sources:
            raise EdgesepError(f"masks output {self._masks.shape} does not hold "
                               f"{self.nb_model_bins} bins x {nb_sources} sources")
        outputs = {t.name: t for t in self.outputs}
        self._links: list[tuple[TensorSpec, TensorSpec, bool]] = []
        for spec in (t for t in self.inputs if t.role == "state"):
            out = outputs.get(spec.feeds_from)
            if out is None or out.shape != spec.shape:
                raise EdgesepError(f"state input {spec.name} has no matching output "
                                   f"{spec.feeds_from}")
            same = (out.dtype, out.scale, out.zero_point) == (spec.dtype, spec.scale,
                                                              spec.zero_point)
            self._links.append((spec, out, same))
        self.last_feeds: dict[str, np.ndarray] = {}
        self.last_outputs: dict[str, np.ndarray] = {}
        self._io = backend.io()
        if self._io is not None:
            self._frame_in = self._io.inputs[self._frame.name].reshape(-1)
            self._masks_out = self._io.outputs[self._masks.name].reshape(-1)
            ins, outs = self._io.inputs, self._io.outputs
            self._fed_back = [(ins[spec.name], outs[src.name])
                              for spec, src, same in self._links if same]
            self._requantised = [(ins[spec.name], outs[src.name], spec, src)
                                 for spec, src, same in self._links if not same]
        self._mask_values = np.zeros(self.nb_model_bins * nb_sources, np.float32)
        self.reset()

    @classmethod
    def for_artefact(cls, artefact: Artefact, backend: Backend, nb_sources: int) -> Stepper:
        """A stepper on ``backend`` after checking its tensors against the manifest's."""
        if backend.format is not None:  # the keras reference computes in float32
            check_model_io(artefact, backend.inputs, backend.outputs)
        else:
            floats = [(t.name, t.shape) for t in artefact.inputs + artefact.outputs]
            have = [(t.name, t.shape) for t in backend.inputs + backend.outputs]
            if sorted(floats) != sorted(have):
                raise EdgesepError(f"the reference model's tensors {sorted(have)} differ from "
                                   f"artefact {artefact.key}'s {sorted(floats)}")
        return cls(backend, nb_sources, artefact)

    @property
    def masks_spec(self) -> TensorSpec:
        """The model's masks output (its raw values are in ``last_outputs[masks_spec.name]``)."""
        return self._masks

    @property
    def raw_state_feedback(self) -> bool:
        """True when every state is fed back without requantisation."""
        return all(same for _, _, same in self._links)

    @property
    def nb_states(self) -> int:
        return len(self._links)

    def reset(self) -> None:
        """Zero the states (the quantised zero for integer states)."""
        self._feeds = {spec.name: quantise(np.zeros(spec.shape, np.float32), spec)
                       for spec, _, _ in self._links}
        if self._io is not None:
            for spec, _, _ in self._links:
                np.copyto(self._io.inputs[spec.name], self._feeds[spec.name])

    def step(self, features: np.ndarray) -> np.ndarray:
        """``[shape=(nb_model_bins,)]`` -> masks ``[shape=(nb_model_bins, nb_sources)]``."""
        if self._io is not None:
            raw_masks = self._step_in_place(features)
        else:
            raw_masks = self._step_with_dicts(features)
        values = dequantise(raw_masks, self._masks, out=self._mask_values)
        # clip to [0, 1] with NaN -> 0 (fmax/fmin skip NaN): a new array, one call each, where
        # np.nan_to_num is ten Python-level calls
        masks = np.fmax(values, np.float32(0.0))
        np.fmin(masks, np.float32(1.0), out=masks)
        return masks.reshape(self.nb_model_bins, self.nb_sources)

    def _step_in_place(self, features: np.ndarray) -> np.ndarray:
        io = self._io
        quantise(features, self._frame, out=self._frame_in)
        if self.record:
            self.last_feeds = {name: view.copy() for name, view in io.inputs.items()}
        io.invoke()
        if self.record:
            self.last_outputs = {name: view.copy() for name, view in io.outputs.items()}
        for state_in, state_out in self._fed_back:
            state_in[...] = state_out  # ndarray assignment: half the cost of np.copyto here
        for state_in, state_out, spec_in, src in self._requantised:
            quantise(dequantise(state_out, src), spec_in, out=state_in)
        return self._masks_out

    def _step_with_dicts(self, features: np.ndarray) -> np.ndarray:
        feeds = self._feeds
        feeds[self._frame.name] = quantise(np.reshape(features, self._frame.shape), self._frame)
        out = self.backend.run(feeds)
        if self.record:
            self.last_feeds, self.last_outputs = dict(feeds), out
        for spec, src, same in self._links:
            raw = out[src.name]
            feeds[spec.name] = raw if same else quantise(dequantise(raw, src), spec)
        return out[self._masks.name].reshape(-1)

    def run(self, features: np.ndarray) -> np.ndarray:
        """Masks of every frame of ``features [shape=(nb_frames, nb_model_bins)]`` from zero
        states: ``[shape=(nb_frames, nb_model_bins, nb_sources)]``."""
        self.reset()
        return np.stack([self.step(f) for f in features])


def open_stepper(manifest: Manifest, precision: str | None = None, backend: str = "litert",
                 threads: int = 1, run: str | os.PathLike | None = None) -> Stepper:
    """A stepper on ``manifest``'s artefact for ``precision`` run by ``backend``.

    The model is loaded from the bytes checked against the manifest. ``backend="keras"`` runs
    the float reference instead: the training run ``run`` or, when not given, the manifest's
    ``source_run`` resolved against the export folder; either must match the manifest's config
    (and its weights' SHA-256, when recorded). Needs the ``[train]`` extra.
    """
    from edgesep.contract import read_artefact
    from edgesep.runtime.backends import backend_class, backend_format

    fmt = backend_format(backend)
    artefact = manifest.artefact(precision, fmt or "tflite")
    cls = backend_class(backend)
    if cls.precisions is not None and artefact.precision not in cls.precisions:
        raise EdgesepError(f"backend {backend} runs {', '.join(sorted(cls.precisions))} "
                           f"models; artefact {artefact.key} is {artefact.precision}")
    if fmt is None:
        run_dir = Path(run) if run is not None else manifest.source_run_path()
        _check_reference_run(manifest, run_dir)
        model = cls(run_dir, threads)
    else:
        model = cls(read_artefact(artefact), threads)
    return Stepper.for_artefact(artefact, model, len(manifest.sources))


def _check_reference_run(manifest: Manifest, run_dir: Path) -> None:
    from edgesep.config import Config
    from edgesep.runs import check_source_weights, run_config

    if not run_dir.is_dir():
        raise EdgesepError(f"{run_dir}: the reference run does not exist (--run RUN gives it)")
    cfg = run_config(run_dir).to_dict()
    exported = Config.from_dict(manifest.config, origin=f"{manifest.directory}: config").to_dict()
    if {k: cfg[k] for k in ("stft", "model")} != {k: exported[k] for k in ("stft", "model")}:
        raise EdgesepError(f"{run_dir}: this run's config differs from the one "
                           f"{manifest.directory} was exported from")
    check_source_weights(run_dir, manifest)
