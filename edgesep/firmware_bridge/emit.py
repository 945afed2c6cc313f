"""The C text of a firmware folder, generated from the manifest (the one source of truth) and
the checked model bytes: the model array, the frame contract header, the framer/FFT/TFLM
sources (templates in ``templates/`` with ``@prefix@``/``@PREFIX@`` filled in) and README.md.

Nothing here runs a model or a compiler; :mod:`edgesep.firmware_bridge` does, and passes the
figures in (:class:`FirmwareSpec`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from edgesep.contract import FRAME, MASKS, Artefact, Manifest, TensorSpec
from edgesep.errors import EdgesepError
from edgesep.firmware_bridge.tflite_model import MICRO_OPS, TfliteModel

#: ``--name``: a lower-case C identifier (its upper-case form prefixes the macros).
PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
#: Arena margin over the measured figure, and the granularity it is rounded up to.
ARENA_MARGIN = 0.25
ARENA_ROUND = 1024
#: TfLiteType codes of the dtypes the framer handles.
TFLITE_TYPES = {"float32": 1, "int16": 7, "int8": 9}
C_TYPES = {"float32": "float", "int16": "int16_t", "int8": "int8_t"}
#: Bytes per line of the model array.
BYTES_PER_LINE = 12


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
class FirmwareSpec:
    """Everything the generated folder states, gathered and checked once."""

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
    code_size: dict | None = None
    parity: dict | None = None

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


def firmware_spec(prefix: str, manifest: Manifest, artefact: Artefact, model: bytes,
                  tflite: TfliteModel, arena_measured: int | None) -> FirmwareSpec:
    """Pair the manifest's tensors with the model's order and lay out the states; raise for
    what the framer cannot run (dtypes, an FFT size, state feedback that needs requantising)."""
    spec = FirmwareSpec(check_prefix(prefix), manifest, artefact, model, tflite, arena_measured)
    where = f"{artefact.path.name} ({artefact.key})"
    n_fft = manifest.stft.n_fft
    if n_fft < 4 or n_fft & (n_fft - 1):
        raise EdgesepError(f"{where}: the firmware FFT needs a power-of-two n_fft, got {n_fft}")
    by_name = {t.name: t for t in artefact.inputs}
    out_by_name = {t.name: t for t in artefact.outputs}
    for kind, order, table, target in (("inputs", tflite.inputs, by_name, spec.inputs),
                                       ("outputs", tflite.outputs, out_by_name, spec.outputs)):
        if sorted(t.name for t in order) != sorted(table):
            raise EdgesepError(f"{where}: the model's {kind} {sorted(t.name for t in order)} "
                               f"differ from the manifest's {sorted(table)}")
        for index, tensor in enumerate(order):
            mspec = table[tensor.name]
            if mspec.dtype.name not in TFLITE_TYPES:
                raise EdgesepError(f"{where}: tensor {tensor.name} is {mspec.dtype.name}; the "
                                   f"framer handles {', '.join(TFLITE_TYPES)}")
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
            raise EdgesepError(f"{where}: state {b.name} ({b.dtype}) cannot feed {a.name} "
                               f"({a.dtype}): the framer converts scales, not dtypes")
        spec.states.append(CState(a.name, tin, tout, offset))
        offset += -(-tin.nb_bytes // 4) * 4
    spec.state_bytes = max(offset, 4)
    return spec


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


def render(template: str, prefix: str, **fields: str) -> str:
    """A template of ``templates/`` with ``@prefix@``, ``@PREFIX@`` and ``@FIELD@`` filled."""
    text = resources.files("edgesep.firmware_bridge").joinpath("templates", template).read_text()
    text = text.replace("@prefix@", prefix).replace("@PREFIX@", prefix.upper())
    for key, value in fields.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Za-z_]+@", text)
    if left:
        raise EdgesepError(f"template {template}: unfilled {sorted(set(left))}")
    return text


# --- the files ------------------------------------------------------------------------------


def model_data_files(spec: FirmwareSpec) -> dict[str, str]:
    """``PREFIX_model_data.h/.c``: the .tflite bytes, 16-byte aligned, length and SHA-256."""
    p, m, data = spec.prefix, spec.macro, spec.model
    header = f"""/* {p}_model_data.h: the model ({spec.artefact.path.name}, precision \
{spec.artefact.key}) as a C array.
 * Generated by `edgesep firmware` from the export's manifest.json; do not edit. */
#ifndef {m}_MODEL_DATA_H
#define {m}_MODEL_DATA_H

#ifdef __cplusplus
extern "C" {{
#endif

/* Bytes of the .tflite flatbuffer and their SHA-256 (as manifest.json records it): compare
 * with what was flashed. The array is 16-byte aligned, as TensorFlow Lite Micro wants. */
#define {m}_MODEL_DATA_LEN {len(data)}u
#define {m}_MODEL_SHA256 "{spec.artefact.sha256}"

extern const unsigned char {p}_model_data[{m}_MODEL_DATA_LEN];
extern const unsigned int {p}_model_data_len;

#ifdef __cplusplus
}}
#endif

#endif /* {m}_MODEL_DATA_H */
"""
    lines = []
    for i in range(0, len(data), BYTES_PER_LINE):
        chunk = data[i: i + BYTES_PER_LINE]
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    body = f"""/* {p}_model_data.c: {len(data)} bytes of {spec.artefact.path.name}, SHA-256
 * {spec.artefact.sha256}. Generated by `edgesep firmware`; do not edit. */
#include "{p}_model_data.h"

#if defined(__GNUC__) || defined(__clang__)
#define {m}_ALIGN16 __attribute__((aligned(16)))
#elif defined(__ICCARM__)
#define {m}_ALIGN16 _Pragma("data_alignment=16")
#elif defined(_MSC_VER)
#define {m}_ALIGN16 __declspec(align(16))
#else
#define {m}_ALIGN16
#endif

#if defined(__ICCARM__)
{m}_ALIGN16 const unsigned char {p}_model_data[{m}_MODEL_DATA_LEN] = {{
#else
const unsigned char {p}_model_data[{m}_MODEL_DATA_LEN] {m}_ALIGN16 = {{
#endif
{chr(10).join(lines)}
}};

const unsigned int {p}_model_data_len = {m}_MODEL_DATA_LEN;
"""
    return {f"{p}_model_data.h": header, f"{p}_model_data.c": body}


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


def _window_words(cfg) -> str:
    if cfg.asymmetric:
        return (f"asymmetric (a sqrt-Hann rise over {cfg.n_fft - cfg.synthesis_length // 2} "
                f"samples, a sqrt-Hann fall over the last {cfg.synthesis_length // 2})")
    return f"periodic {cfg.window}"


def _synthesis_words(cfg) -> str:
    if cfg.asymmetric:
        return (f"a periodic Hann of {cfg.synthesis_length} samples scaled to sum to 1 over the "
                "hops, divided by the analysis window there: perfect reconstruction, short delay")
    return "the weighted-overlap-add dual of the analysis window"


def arena_block(spec: FirmwareSpec) -> str:
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


def contract_header(spec: FirmwareSpec) -> str:
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
 *   causal (the frame ends at the newest sample); analysis window: {_window_words(cfg)}
 *   ({p}_analysis_window); X = FFT(window * frame), {cfg.nb_bins} bins.
 *   feature: log1p(|X[k]|) for k < {man.nb_model_bins} (NB_MODEL_BINS), quantised into the
 *   model input 'frame' (round half to even, saturate).
 *   masks: model output 'masks', [bin][source], dequantised, clipped to [0, 1], NaN -> 0; the
 *   Nyquist bin (k = {cfg.n_fft // 2}) reuses the top model bin's mask.
 *   output per source: inverse FFT of mask * X (mixture phase); its newest SYNTHESIS_LENGTH
 *   = {cfg.synthesis_span} samples times the synthesis window ({p}_synthesis_window,
 *   {_synthesis_words(cfg)}), overlap-added.
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
#define {m}_FEATURE {c_string(man.raw.get("feature", "log1p_magnitude"))}
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


def tflm_source(spec: FirmwareSpec) -> str:
    """``PREFIX_tflm.cc``: a resolver with exactly the model's ops, arena, init/invoke."""
    adds = "\n".join(
        f"  if (resolver->{MICRO_OPS[op]}() != kTfLiteOk) {{  // {op}\n    return -2;\n  }}"
        for op in spec.tflite.ops)
    return render("tflm.cc", spec.prefix, NB_OPS=str(len(spec.tflite.ops)), RESOLVER_ADDS=adds)


def source_files(spec: FirmwareSpec) -> dict[str, str]:
    """Every file of the folder but README.md."""
    p = spec.prefix
    files = model_data_files(spec)
    files[f"{p}_contract.h"] = contract_header(spec)
    for name in ("framer.h", "framer.c", "fft.h", "fft.c", "tflm.h"):
        files[f"{p}_{name}"] = render(name, p)
    files[f"{p}_tflm.cc"] = tflm_source(spec)
    return files


def host_files(spec: FirmwareSpec) -> dict[str, str]:
    """The framer for this machine (:mod:`edgesep.runtime.hop_loop`): contract header, framer,
    FFT and ``PREFIX_host.c`` (its model step on an interpreter's own buffers); no model
    array, no TFLM."""
    p = spec.prefix
    files = {f"{p}_contract.h": contract_header(spec)}
    for name in ("framer.h", "framer.c", "fft.h", "fft.c", "host.c"):
        files[f"{p}_{name}"] = render(name, p)
    return files


# --- README.md ------------------------------------------------------------------------------


def _n(value: int | None) -> str:
    return "not measured" if value is None else f"{value:,}"


def memory_table(spec: FirmwareSpec) -> list[tuple[str, str, str]]:
    """Rows ``(what, bytes, how measured)`` of the folder's memory table."""
    code = spec.code_size
    linked = code["linked"] if code else None
    model_obj = code["objects"].get(f"{spec.prefix}_model_data.c") if code else None
    how_code = (f"arm-none-eabi-size, {code['compiler']}, Cortex-M4F -Os, linked with "
                "--gc-sections (framer + FFT + tables + newlib libm)" if code else
                "arm-none-eabi-gcc not found when generated")
    return [
        ("flash: model array", f"{len(spec.model):,}",
         f"{spec.artefact.path.name}" + (f" (object text {model_obj['text']:,})"
                                          if model_obj else "")),
        ("flash: framer code + tables", _n(linked["text"] + linked["data"] if linked else None),
         how_code),
        ("flash: TFLite Micro runtime + kernels", "not measured",
         "depends on the TFLM build (reference or CMSIS-NN kernels) and its flags"),
        ("RAM: TFLM tensor arena", f"{spec.arena_bytes:,}",
         f"measured {spec.arena_measured:,} with the tflite-micro interpreter + "
         f"{round(100 * ARENA_MARGIN)} %"),
        ("RAM: framer (buffers + states)", f"{spec.framer_ram_bytes():,}",
         "sizeof(framer) on a 32-bit target (float32 STFT/overlap-add buffers, model I/O)"),
        ("RAM: of which model states", f"{spec.state_bytes:,}",
         f"{len(spec.states)} state tensors, updated in place"),
        ("RAM: statics of the linked framer (.data + .bss)",
         _n(linked["data"] + linked["bss"] if linked else None),
         "newlib's (the framer keeps its state in the caller's struct)" if linked else how_code),
    ]


def readme(spec: FirmwareSpec, command: str) -> str:
    """``README.md``: drop-in steps, memory table, latency contract, what was proven."""
    p, m, man, cfg = spec.prefix, spec.macro, spec.manifest, spec.manifest.stft
    rows = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in memory_table(spec))
    parity = spec.parity
    if parity:
        lite, ref = parity["litert"], parity["litert_reference"]
        proof = (f"TensorFlow Lite Micro (tflite-micro, reference kernels) ran the model frame by "
                 f"frame over {lite['frames']} frames of `{parity['data']}` audio with its "
                 f"states fed back: against ai-edge-litert's default kernels, "
                 f"{lite['mask_mismatches']} of {lite['mask_elements']:,} mask values differ "
                 f"(largest difference {lite['mask_max_diff']:g} LSB); against ai-edge-litert's "
                 f"reference kernels, {ref['mask_mismatches']} mask and "
                 f"{ref['state_mismatches']} state values differ"
                 f"{' (bit-exact)' if ref['bit_exact'] else ''}.")
    else:
        proof = "TFLite Micro parity was not measured for this folder."
    files = [
        (f"{p}_model_data.h/.c", "the .tflite as a 16-byte aligned `const unsigned char` array, "
                                 f"`{m}_MODEL_DATA_LEN`, `{m}_MODEL_SHA256`"),
        (f"{p}_contract.h", "the frame contract from manifest.json: STFT, window tables, feature, "
                            "every tensor (dtype, shape, scale, zero point), states, latency, ops, "
                            "arena size"),
        (f"{p}_framer.h/.c", "the reference framer: hop in -> features -> model -> masks -> "
                             "overlap-add -> hop out per source (C99, no heap, no VLAs)"),
        (f"{p}_fft.h/.c", "a portable real FFT; `-D" + m + "_USE_CMSIS_DSP` uses CMSIS-DSP's "
                          "`arm_rfft_fast_f32` instead"),
        (f"{p}_tflm.h/.cc", "TensorFlow Lite Micro glue: op resolver with exactly the model's ops, "
                            "static arena, init and one step as the framer's model function"),
        ("firmware.json", "the figures of this README, machine-readable"),
    ]
    file_rows = "\n".join(f"| `{a}` | {b} |" for a, b in files)
    return f"""# `{p}`: the exported separation model, for a device

Generated by `{command}` from `manifest.json` (artefact `{spec.artefact.key}`:
`{spec.artefact.path.name}`, {len(spec.model):,} bytes, SHA-256 `{spec.artefact.sha256}`).
Do not edit these files: regenerate them from the export.

| file | what |
| --- | --- |
{file_rows}

## Drop it into a device build
1. Add `{p}_framer.c`, `{p}_fft.c` and `{p}_model_data.c` (C99) and `{p}_tflm.cc` (C++, built
   with TensorFlow Lite Micro's sources or library, `tensorflow/lite/micro`) to the project; put
   this folder on the include path.
2. Where CMSIS-DSP is available (Cortex-M4F/M7/M33), define `{m}_USE_CMSIS_DSP` and link it: the
   FFT becomes `arm_rfft_fast_f32` (same packed layout and scaling).
3. Run it:
   ```c
   #include "{p}_framer.h"
   #include "{p}_tflm.h"

   static {p}_framer framer;  /* {spec.framer_ram_bytes():,} bytes: keep it static */

   int separation_init(void) {{
       if ({p}_tflm_init() != 0) return -1;      /* -3: raise {m}_TFLM_ARENA_BYTES */
       return {p}_framer_init(&framer, {p}_tflm_model, 0);
   }}

   /* every {cfg.hop} samples ({1000 * cfg.hop / cfg.sample_rate:g} ms at {cfg.sample_rate} Hz) */
   void separation_hop(const float in[{m}_HOP], float out[{m}_NB_SOURCES][{m}_HOP]) {{
       {p}_framer_process(&framer, in, out);     /* out[0]: {man.sources[0]} */
   }}
   ```
   Another runtime (CMSIS-NN directly, an NPU) replaces `{p}_tflm_model` by its own
   `{p}_model_fn`: it gets the model's inputs and output buffers in the contract's order.
4. Check on the device: compare `{m}_MODEL_SHA256` with the flashed model, and read
   `{p}_tflm_arena_used_bytes()` after init before trimming `{m}_TFLM_ARENA_BYTES`. Keep a
   margin: with an arena a little too small, the TFLM build measured here crashed inside
   MEAN's Init (an unchecked failed allocation) instead of failing `AllocateTensors`.

## Memory
| what | bytes | how |
| --- | ---: | --- |
{rows}

Stack: not measured (the framer keeps {len(spec.inputs) + len(spec.outputs)} pointers and a few
scalars on the stack; TFLM's `Invoke` needs its own).

## Latency contract
- Sample rate {cfg.sample_rate} Hz, mono; hop {cfg.hop} samples; frame (FFT)
  {cfg.n_fft} samples; analysis window: {_window_words(cfg)}; synthesis window over the
  newest {cfg.synthesis_span} samples of each frame ({_synthesis_words(cfg)}).
- Algorithmic latency: **{cfg.latency_samples} samples = {cfg.latency_ms:g} ms** (one hop
  of input buffering + an output delay of {cfg.output_delay_samples} samples: output sample
  n is input sample n - {cfg.output_delay_samples}).
- Compute deadline: one hop (framer + model) within {1000 * cfg.hop / cfg.sample_rate:g} ms.
- Sources, in output order: {", ".join(man.sources)}.

## What was checked
- {proof}
- Ops ({len(spec.tflite.ops)}, {spec.tflite.nb_nodes} nodes), all with TensorFlow Lite
  Micro kernels: {", ".join(spec.tflite.ops)}.
- edgesep's tests build this C with `gcc -std=c99 -Wall -Wextra -Werror -pedantic` (and
  `-fsanitize=address,undefined`), drive the framer with the TFLM interpreter and compare its
  output with edgesep's Python streamer (at most 1e-5 apart), and cross-compile it with
  `arm-none-eabi-gcc -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard -Os` (Debian's
  cross compiler: `apt-get install -y gcc-arm-none-eabi`).
"""
