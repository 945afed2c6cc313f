"""Streaming graph -> float32 ONNX (tf2onnx, opset 17; 19 fails with this stack), checked by
onnx. The runtime's one stepper runs it.

Tensor names are the contract's (``frame``, ``masks``, the states of
:func:`edgesep.contract.state_input_name` and their ``_out`` outputs).

No int8 ONNX is offered: onnxruntime's static QDQ int8 (per-channel weights, after
``quant_pre_process``) lost 4.1 dB of SDR and ran 4x slower than this float32 model
(``benchmarks/results/export_table.md`` as recorded at commit ecb0d8f); the int8 TFLite export
is the quantised model to ship.
"""

from __future__ import annotations

from pathlib import Path

from edgesep.files import write_bytes_atomic

OPSET = 17


def convert(smodel, path: Path) -> Path:
    """Write the float32 ONNX streaming model to ``path`` (batch 1), checked by onnx."""
    import onnx
    import tf2onnx

    from edgesep.export.tflite import serving_function

    serve, specs = serving_function(smodel, concrete=False)
    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=OPSET)
    graph = model_proto.graph
    _rename(model_proto, {t.name: t.name.split(":")[0] for t in [*graph.input, *graph.output]})
    onnx.checker.check_model(model_proto)
    Path(path).write_bytes(model_proto.SerializeToString())
    return Path(path)


def embed_metadata(path: Path, name: str, value: str) -> Path:
    """Set ``metadata_props[name]`` of the ONNX model at ``path`` to ``value`` (rewritten in
    place, checked by onnx)."""
    import onnx

    model_proto = onnx.load_model_from_string(Path(path).read_bytes())
    onnx.helper.set_model_props(
        model_proto, {**{p.key: p.value for p in model_proto.metadata_props}, name: value})
    onnx.checker.check_model(model_proto)
    write_bytes_atomic(path, model_proto.SerializeToString())
    return Path(path)


def _rename(model_proto, rename: dict) -> None:
    """Give graph inputs and outputs their contract names (tf2onnx may append ``:0``)."""
    for old, new in rename.items():
        if old == new:
            continue
        for node in model_proto.graph.node:
            node.output[:] = [new if o == old else o for o in node.output]
            node.input[:] = [new if i == old else i for i in node.input]
        for tensor in [*model_proto.graph.input, *model_proto.graph.output]:
            if tensor.name == old:
                tensor.name = new
