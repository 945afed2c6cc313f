"""The C text of the framer, generated from the manifest (the one source of truth) and the
checked model bytes: the frame contract header (``PREFIX_contract.h``) and the framer, FFT and
host templates of ``templates/`` with ``@prefix@``/``@PREFIX@`` filled in.

:class:`FramerSpec` gathers and checks what the header states, once. The firmware folder
(:mod:`edgesep.firmware_bridge.emit`) adds the model array and the TFLM glue; the host build
(:func:`host_sources`) adds ``PREFIX_host.c``. Nothing here runs a model or a compiler.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Self

import numpy as np

from edgesep.contract import FRAME, MASKS, Artefact, Manifest, TensorSpec, read_artefact
from edgesep.dsp import LOG_FLOOR
from edgesep.errors import EdgesepError
from edgesep.tflite_model import MICRO_OPS, TfliteModel, read_tflite

#: Prefix of the C the host build generates (its functions and macros).
HOST_PREFIX = "hop"
#: ``--name``: a lower-case C identifier (its upper-case form prefixes the macros).
PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
#: Arena margin over the measured figure, and the granularity it is rounded up to.
ARENA_MARGIN = 0.25
ARENA_ROUND = 1024
#: TfLiteType codes of the dtypes the framer handles.
TFLITE_TYPES = {"float32": 1, "int16": 7, "int8": 9}
C_TYPES = {"float32": "float", "int16": "int16_t", "int8": "int8_t"}

#: How the contract header describes each feature of :data:`edgesep.dsp.FEATURES`.
FEATURE_WORDS = {"log1p_magnitude": "log1p(|X[k]|)",
                 "log_magnitude": f"log(|X[k]| + {LOG_FLOOR!r}) (LOG_FLOOR)"}


def check_prefix(name: str) -> str:
    if not PREFIX_RE.match(name or ""):
        raise EdgesepError(f"--name {name!r}: use a lower-case C identifier (a-z, 0-9, _; "
                           "starting with a letter; at most 31 characters)")
    return name


def arena_with_margin(measured: int) -> int:
    """The arena the glue allocates: ``measured`` plus :data:`ARENA_MARGIN`, rounded up."""
    return int(math.ceil(measured * (1 + ARENA_MARGIN) / ARENA_ROUND) * ARENA_ROUND)


@dataclass(frozen=True)
class CTensor:
    """A model input or output as the C contract lists it (model order)."""

    index: int
    spec: TensorSpec

    @property
    def dtype(self) -> str:
        return self.spec.dtype.name

    @property
    def elements(self) -> int:
        return int(np.prod(self.spec.shape))

    @property
    def nb_bytes(self) -> int:
        return self.elements * self.spec.dtype.itemsize


@dataclass(frozen=True)
class CState:
    """One state: the input that receives it, the output that feeds it, where it lives."""

    name: str
    input: CTensor
    output: CTensor
    offset: int

    @property
    def requantise(self) -> bool:
        """Whether the output's scale/zero point differ from the input's (then the framer
        dequantises and requantises it, as the Python stepper does); else it goes back raw."""
        a, b = self.input.spec, self.output.spec
        return a.quantised and (np.float32(a.scale) != np.float32(b.scale)
                                or a.zero_point != b.zero_point)


@dataclass
class FramerSpec:
    """Everything the contract header states, gathered and checked once
    (:meth:`create`)."""

    prefix: str
    manifest: Manifest
    artefact: Artefact
    model: bytes
    tflite: TfliteModel
    arena_measured: int | None  # None: no TFLM in this build (the host hop loop)
    inputs: list[CTensor] = field(default_factory=list)
    outputs: list[CTensor] = field(default_factory=list)
    states: list[CState] = field(default_factory=list)
    state_bytes: int = 0

    @property
    def macro(self) -> str:
        return self.prefix.upper()

    @property
    def arena_bytes(self) -> int:
        if self.arena_measured is None:
            raise EdgesepError("no TFLM arena measured for this build")
        return arena_with_margin(self.arena_measured)

    @property
    def frame(self) -> CTensor:
        return next(t for t in self.inputs if t.spec.role == FRAME)

    @property
    def masks(self) -> CTensor:
        return next(t for t in self.outputs if t.spec.role == MASKS)

    def framer_ram_bytes(self, pointer_bytes: int = 4) -> int:
        """``sizeof(PREFIX_framer)`` on a target with ``pointer_bytes`` pointers and 4-byte
        floats/ints (ILP32 for a Cortex-M): the fields of the struct in framer.h, in order."""
        cfg, bins, sources = self.manifest.stft, self.manifest.nb_model_bins, len(
            self.manifest.sources)
        sizes = [
            pointer_bytes, pointer_bytes, 2 * pointer_bytes,  # model, user, portable rfft
            4 * 4 * cfg.n_fft, 4 * sources * cfg.synthesis_span, 4 * bins * sources,
            self.frame.nb_bytes, self.masks.nb_bytes, self.state_bytes, 4, 4,
        ]
        total = 0
        for size in sizes:
            total = -(-total // 4) * 4 + size  # every field is 4-aligned on such a target
        return -(-total // max(4, pointer_bytes)) * max(4, pointer_bytes)

    @classmethod
    def create(cls, prefix: str, manifest: Manifest, artefact: Artefact, model: bytes,
               tflite: TfliteModel, arena_measured: int | None) -> Self:
        """Pair the manifest's tensors with the model's order and lay out the states; raise
        for what the framer cannot run (dtypes, an FFT size, state feedback that needs
        requantising)."""
        spec = cls(check_prefix(prefix), manifest, artefact, model, tflite, arena_measured)
        spec._pair_tensors()
        return spec

    def _pair_tensors(self) -> None:
        spec, artefact, tflite = self, self.artefact, self.tflite
        where = f"{artefact.path.name} ({artefact.key})"
        n_fft = self.manifest.stft.n_fft
        if n_fft < 4 or n_fft & (n_fft - 1):
            raise EdgesepError(f"{where}: the firmware FFT needs a power-of-two n_fft, got "
                               f"{n_fft}")
        by_name = {t.name: t for t in artefact.inputs}
        out_by_name = {t.name: t for t in artefact.outputs}
        for kind, order, table, target in (("inputs", tflite.inputs, by_name, spec.inputs),
                                           ("outputs", tflite.outputs, out_by_name,
                                            spec.outputs)):
            if sorted(t.name for t in order) != sorted(table):
                raise EdgesepError(f"{where}: the model's {kind} "
                                   f"{sorted(t.name for t in order)} differ from the "
                                   f"manifest's {sorted(table)}")
            for index, tensor in enumerate(order):
                mspec = table[tensor.name]
                if mspec.dtype.name not in TFLITE_TYPES:
                    raise EdgesepError(f"{where}: tensor {tensor.name} is {mspec.dtype.name}; "
                                       f"the framer handles {', '.join(TFLITE_TYPES)}")
                if tuple(tensor.shape) != mspec.shape or tensor.dtype != mspec.dtype.name:
                    raise EdgesepError(f"{where}: tensor {tensor.name} is {tensor.dtype}"
                                       f"{list(tensor.shape)} in the model, {mspec.dtype.name}"
                                       f"{list(mspec.shape)} in the manifest")
                target.append(CTensor(index, mspec))
        outputs = {t.spec.name: t for t in spec.outputs}
        offset = 0
        for tin in spec.inputs:
            if tin.spec.role != "state":
                continue
            tout = outputs[tin.spec.feeds_from]
            a, b = tin.spec, tout.spec
            if a.dtype != b.dtype or a.quantised != b.quantised:
                raise EdgesepError(f"{where}: state {b.name} ({b.dtype}) cannot feed "
                                   f"{a.name} ({a.dtype}): the framer converts scales, not "
                                   "dtypes")
            spec.states.append(CState(a.name, tin, tout, offset))
            offset += -(-tin.nb_bytes // 4) * 4
        spec.state_bytes = max(offset, 4)


# --- formatting helpers ---------------------------------------------------------------------


def c_float(value: float) -> str:
    """A C float literal that reads back as ``np.float32(value)`` exactly."""
    text = f"{float(np.float32(value)):.9g}"
    if not any(ch in text for ch in ".en"):
        text += ".0"
    return text + "f"


def c_string(text: str) -> str:
    if not all(32 <= ord(ch) < 127 and ch not in '"\\?' for ch in text):
        raise EdgesepError(f"{text!r}: not a plain ASCII name for a C string")
    return f'"{text}"'


def _float_table(values: np.ndarray, per_line: int = 6) -> str:
    items = [c_float(v) for v in values]
    lines = [", ".join(items[i: i + per_line]) for i in range(0, len(items), per_line)]
    return "    " + ",\n    ".join(lines)


def render(template: str, prefix: str, package: str = "edgesep.framer", **fields: str) -> str:
    """A template of ``package``'s ``templates/`` with ``@prefix@``, ``@PREFIX@`` and
    ``@FIELD@`` filled."""
    text = resources.files(package).joinpath("templates", template).read_text()
    text = text.replace("@prefix@", prefix).replace("@PREFIX@", prefix.upper())
    for key, value in fields.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Za-z_]+@", text)
    if left:
        raise EdgesepError(f"template {template}: unfilled {sorted(set(left))}")
    return text


def _tensor_row(t: CTensor) -> str:
    s = t.spec
    shape = list(s.shape) + [0] * (4 - len(s.shape))
    scale = c_float(s.scale) if s.quantised else "0.0f"
    zp = s.zero_point if s.quantised else 0
    return (f"    {{{c_string(s.name)}, {TFLITE_TYPES[t.dtype]}, {len(s.shape)}, "
            f"{{{', '.join(str(v) for v in shape)}}}, {t.elements}u, {t.nb_bytes}u, {scale}, "
            f"{zp}}}")


def _describe(t: CTensor) -> str:
    s = t.spec
    quant = f"scale {float(np.float32(s.scale)):.9g}, zero point {s.zero_point}" if s.quantised \
        else "float"
    feeds = f"  <- {s.feeds_from}" if s.feeds_from else ""
    shape = str(list(s.shape))
    return f" *   {t.index:3d}  {s.name:32s} {s.dtype.name:7s} {shape:18s} {quant}{feeds}"


def window_words(cfg) -> str:
    if cfg.asymmetric:
        return (f"asymmetric (a sqrt-Hann rise over {cfg.n_fft - cfg.synthesis_length // 2} "
                f"samples, a sqrt-Hann fall over the last {cfg.synthesis_length // 2})")
    return f"periodic {cfg.window}"


def synthesis_words(cfg) -> str:
    if cfg.asymmetric:
        return (f"a periodic Hann of {cfg.synthesis_length} samples scaled to sum to 1 over the "
                "hops, divided by the analysis window there: perfect reconstruction, short delay")
    return "the weighted-overlap-add dual of the analysis window"


def arena_block(spec: FramerSpec) -> str:
    """The contract header's TFLM arena macros (nothing where no arena was measured)."""
    if spec.arena_measured is None:
        return "/* (no TensorFlow Lite Micro arena: this build runs the model elsewhere) */\n"
    p, m = spec.prefix, spec.macro
    return f"""/* --- TensorFlow Lite Micro arena ---
 * Measured: the smallest arena in which the tflite-micro interpreter (reference kernels, on a
 * 64-bit host, whose interpreter structs are larger than a 32-bit device's) allocates and
 * invokes the model. The glue allocates it plus {round(100 * ARENA_MARGIN)} % (optimised
 * kernels such as CMSIS-NN ask for scratch buffers), rounded up to {ARENA_ROUND} bytes;
 * {p}_tflm_arena_used_bytes() reports the device's own figure. */
#define {m}_TFLM_ARENA_MEASURED_BYTES {spec.arena_measured}
#define {m}_TFLM_ARENA_MARGIN_PERCENT {round(100 * ARENA_MARGIN)}
#define {m}_TFLM_ARENA_BYTES {spec.arena_bytes}
"""


def contract_header(spec: FramerSpec) -> str:
    """``PREFIX_contract.h``: the frame contract, from the manifest only."""
    p, m, man = spec.prefix, spec.macro, spec.manifest
    cfg = man.stft
    if len(spec.tflite.inputs) != len(spec.inputs):
        raise EdgesepError("internal: tensor tables out of step")
    if any(len(t.spec.shape) > 4 for t in spec.inputs + spec.outputs):
        raise EdgesepError("a model tensor has more than 4 dimensions; the contract lists 4")
    frame, masks = spec.frame, spec.masks
    analysis = cfg.analysis_window
    synthesis = cfg.synthesis_window[-cfg.synthesis_span:]  # 0 before its span
    k = np.arange(cfg.n_fft // 2)
    cos_table = np.cos(2 * np.pi * k / cfg.n_fft)
    sin_table = np.sin(2 * np.pi * k / cfg.n_fft)
    nb_states = len(spec.states)
    def quant(t: CTensor) -> str:
        q = t.spec.quantised
        return f"{c_float(t.spec.scale) if q else '0.0f'}, {t.spec.zero_point if q else 0}"

    states_rows = ",\n".join(
        f"    {{{c_string(s.name)}, {s.input.index}, {s.output.index}, {s.offset}u, "
        f"{s.input.elements}u, {s.input.nb_bytes}u, {TFLITE_TYPES[s.input.dtype]}, "
        f"{quant(s.input)}, {quant(s.output)}, {int(s.requantise)}}}"
        for s in spec.states) or "    {\"\", 0, 0, 0u, 0u, 0u, 0, 0.0f, 0, 0.0f, 0, 0}"
    ops = spec.tflite.ops
    op_lines = "\n".join(f" *   {op:28s} {spec.tflite.op_counts[op]:4d} nodes  " + (
        f"(MicroMutableOpResolver::{MICRO_OPS[op]})" if op in MICRO_OPS else "(not in TFLM)")
        for op in ops)  # a host build (the C hop loop) never checks the ops against TFLM
    sources = ", ".join(c_string(s) for s in man.sources)
    frame_q = frame.spec.quantised
    masks_q = masks.spec.quantised
    return f"""/* {p}_contract.h: the frame contract of the exported model, for firmware.
 *
 * Generated by `edgesep firmware` from manifest.json alone (artefact {spec.artefact.key}:
 * {spec.artefact.path.name}, SHA-256 {spec.artefact.sha256[:16]}...); do not edit: regenerate.
 *
 * Signal path per hop (edgesep.dsp, edgesep.runtime.stream):
 *   audio at {cfg.sample_rate} Hz, mono float; hop {cfg.hop} samples; frame {cfg.n_fft} samples,
 *   causal (the frame ends at the newest sample); analysis window: {window_words(cfg)}
 *   ({p}_analysis_window); X = FFT(window * frame), {cfg.nb_bins} bins.
 *   feature: {FEATURE_WORDS[man.feature]} for k < {man.nb_model_bins} (NB_MODEL_BINS),
 *   quantised into the model input 'frame' (round half to even, saturate).
 *   masks: model output 'masks', [bin][source], dequantised, clipped to [0, 1], NaN -> 0; the
 *   Nyquist bin (k = {cfg.n_fft // 2}) reuses the top model bin's mask.
 *   output per source: inverse FFT of mask * X (mixture phase); its newest SYNTHESIS_LENGTH
 *   = {cfg.synthesis_span} samples times the synthesis window ({p}_synthesis_window,
 *   {synthesis_words(cfg)}), overlap-added.
 * Latency: {cfg.latency_samples} samples ({cfg.latency_ms:g} ms) algorithmic: one hop of
 *   input buffering plus an output delay of {cfg.output_delay_samples} samples (output sample
 *   n is input sample n - {cfg.output_delay_samples}); a hop must be computed within
 *   {1000 * cfg.hop / cfg.sample_rate:g} ms.
 *
 * Model inputs (model order: TFLite Micro's input(i)):
{chr(10).join(_describe(t) for t in spec.inputs)}
 * Model outputs (output(j)):
{chr(10).join(_describe(t) for t in spec.outputs)}
 * States: zero (the zero point) at reset; output 'X_out' feeds input 'X' on the next hop, as
 *   it is when both have the same quantisation ({sum(not s.requantise for s in spec.states)} of \
{len(spec.states)} states here), else
 *   dequantised and requantised (round half to even, saturate).
 *
 * Ops ({len(ops)}, {spec.tflite.nb_nodes} nodes):
{op_lines}
 */
#ifndef {m}_CONTRACT_H
#define {m}_CONTRACT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

/* --- STFT and latency --- */
#define {m}_SAMPLE_RATE {cfg.sample_rate}
#define {m}_N_FFT {cfg.n_fft}
#define {m}_HOP {cfg.hop}
#define {m}_NB_BINS {cfg.nb_bins}
#define {m}_NB_MODEL_BINS {man.nb_model_bins}
#define {m}_WINDOW {c_string(cfg.window)}
#define {m}_SYNTHESIS_LENGTH {cfg.synthesis_span}
#define {m}_FEATURE {c_string(man.feature)}
/* 1: log(|X| + LOG_FLOOR), 0: log1p(|X|) */
#define {m}_FEATURE_LOG {int(man.feature == "log_magnitude")}
#define {m}_LOG_FLOOR {LOG_FLOOR!r}f
#define {m}_LATENCY_SAMPLES {cfg.latency_samples}
#define {m}_LATENCY_US {round(1e6 * cfg.latency_samples / cfg.sample_rate)}
#define {m}_OUTPUT_DELAY_SAMPLES {cfg.output_delay_samples}
#define {m}_NB_SOURCES {len(man.sources)}
#define {m}_SOURCE_NAMES {{{sources}}}

/* --- dtypes (TfLiteType codes) --- */
#define {m}_DTYPE_FLOAT32 1
#define {m}_DTYPE_INT16 7
#define {m}_DTYPE_INT8 9

/* --- model tensors --- */
#define {m}_NB_INPUTS {len(spec.inputs)}
#define {m}_NB_OUTPUTS {len(spec.outputs)}
#define {m}_NB_STATES {nb_states}
#define {m}_STATE_BYTES {spec.state_bytes}
#define {m}_FRAME_INDEX {frame.index}
#define {m}_FRAME_DTYPE {m}_DTYPE_{frame.dtype.upper()}
#define {m}_FRAME_ELEMENTS {frame.elements}
#define {m}_FRAME_SCALE {c_float(frame.spec.scale) if frame_q else "1.0f"}
#define {m}_FRAME_ZERO_POINT ({frame.spec.zero_point if frame_q else 0})
typedef {C_TYPES[frame.dtype]} {p}_frame_t;
#define {m}_MASKS_INDEX {masks.index}
#define {m}_MASKS_DTYPE {m}_DTYPE_{masks.dtype.upper()}
#define {m}_MASKS_ELEMENTS {masks.elements}
#define {m}_MASKS_SCALE {c_float(masks.spec.scale) if masks_q else "1.0f"}
#define {m}_MASKS_ZERO_POINT ({masks.spec.zero_point if masks_q else 0})
typedef {C_TYPES[masks.dtype]} {p}_masks_t;

typedef struct {{
    const char *name;
    int dtype;          /* {m}_DTYPE_* */
    int rank;
    int32_t shape[4];
    uint32_t elements;
    uint32_t bytes;
    float scale;        /* 0 for float tensors */
    int32_t zero_point;
}} {p}_tensor_info;

typedef struct {{
    const char *name;
    int input_index;    /* the model input that receives the state */
    int output_index;   /* the model output that feeds it (name + "_out") */
    uint32_t offset;    /* in the framer's state buffer */
    uint32_t elements;
    uint32_t bytes;
    int dtype;
    float scale;        /* the input's */
    int32_t zero_point; /* the input's: a zero state holds this value */
    float out_scale;    /* the output's */
    int32_t out_zero_point;
    int requantise;     /* 1: output and input quantisation differ: dequantise, requantise */
}} {p}_state_info;

extern const {p}_tensor_info {p}_inputs[{m}_NB_INPUTS];
extern const {p}_tensor_info {p}_outputs[{m}_NB_OUTPUTS];
extern const {p}_state_info {p}_states[{max(nb_states, 1)}];

/* --- ops the model uses (the resolver in {p}_tflm.cc registers exactly these) --- */
#define {m}_NB_OPS {len(ops)}
extern const char *const {p}_ops[{m}_NB_OPS];

{arena_block(spec)}
/* --- tables --- */
extern const float {p}_analysis_window[{m}_N_FFT];
extern const float {p}_synthesis_window[{m}_SYNTHESIS_LENGTH]; /* the frame's newest samples */
extern const float {p}_fft_cos[{m}_N_FFT / 2]; /* cos(2 pi k / N_FFT) */
extern const float {p}_fft_sin[{m}_N_FFT / 2]; /* sin(2 pi k / N_FFT) */

#ifdef {m}_CONTRACT_IMPLEMENTATION /* defined by {p}_framer.c only */
const {p}_tensor_info {p}_inputs[{m}_NB_INPUTS] = {{
{(","+chr(10)).join(_tensor_row(t) for t in spec.inputs)}
}};
const {p}_tensor_info {p}_outputs[{m}_NB_OUTPUTS] = {{
{(","+chr(10)).join(_tensor_row(t) for t in spec.outputs)}
}};
const {p}_state_info {p}_states[{max(nb_states, 1)}] = {{
{states_rows}
}};
const char *const {p}_ops[{m}_NB_OPS] = {{
    {", ".join(c_string(op) for op in ops)}
}};
const float {p}_analysis_window[{m}_N_FFT] = {{
{_float_table(analysis)}
}};
const float {p}_synthesis_window[{m}_SYNTHESIS_LENGTH] = {{
{_float_table(synthesis)}
}};
const float {p}_fft_cos[{m}_N_FFT / 2] = {{
{_float_table(cos_table)}
}};
const float {p}_fft_sin[{m}_N_FFT / 2] = {{
{_float_table(sin_table)}
}};
#endif /* {m}_CONTRACT_IMPLEMENTATION */

#ifdef __cplusplus
}}
#endif

#endif /* {m}_CONTRACT_H */
"""


def framer_files(spec: FramerSpec) -> dict[str, str]:
    """The framer any build compiles: contract header, framer and FFT."""
    p = spec.prefix
    files = {f"{p}_contract.h": contract_header(spec)}
    for name in ("framer.h", "framer.c", "fft.h", "fft.c"):
        files[f"{p}_{name}"] = render(name, p)
    return files


def host_files(spec: FramerSpec) -> dict[str, str]:
    """The framer for this machine (:mod:`edgesep.runtime.hop_loop`): :func:`framer_files`
    and ``PREFIX_host.c`` (its model step on an interpreter's own buffers); no model array,
    no TFLM."""
    files = framer_files(spec)
    files[f"{spec.prefix}_host.c"] = render("host.c", spec.prefix)
    return files


def host_sources(manifest: Manifest, precision: str | None = None) -> dict[str, str]:
    """The C of the host framer (prefix :data:`HOST_PREFIX`) around ``manifest``'s TFLite
    artefact for ``precision``: its contract header carries that artefact's tensors and
    quantisation."""
    artefact = manifest.artefact(precision, "tflite")
    if artefact.format != "tflite":
        raise EdgesepError(f"--hop-loop c runs TFLite artefacts; {artefact.key} is "
                           f"{artefact.format}")
    model = read_artefact(artefact)
    spec = FramerSpec.create(HOST_PREFIX, manifest, artefact, model,
                             read_tflite(model, str(artefact.path)), arena_measured=None)
    return host_files(spec)
