"""DTLN's pretrained TFLite pair (Westhausen & Meyer 2020, MIT), run as its README frames it:
the one DTLN runner of the benchmarks (``peer_dtln.py`` times it, ``speech_peer.py`` scores it).

16 kHz, 512-sample block, 128 shift; rfft magnitude -> model 1 (mask, states) -> masked complex
spectrum -> irfft -> model 2 (block, states) -> overlap-add. The models are read from a folder
outside the repository (``../shared/peers/dtln``): measured, never shipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE, BLOCK, SHIFT = 16000, 512, 128


class Dtln:
    """DTLN's two-stage TFLite pair run hop by hop, with numpy FFTs and overlap-add."""

    def __init__(self, folder: Path, quantized: bool) -> None:
        from ai_edge_litert.interpreter import Interpreter

        suffix = "quant_" if quantized else ""
        self.paths = [folder / f"model_{suffix}{k}.tflite" for k in (1, 2)]
        self.models = [Interpreter(model_path=str(p), num_threads=1) for p in self.paths]
        for m in self.models:
            m.allocate_tensors()
        self.details = [(m.get_input_details(), m.get_output_details()) for m in self.models]
        self.name = "DTLN quantized" if quantized else "DTLN float32"
        rng = np.random.default_rng(0)
        self._magnitude = rng.random((1, 1, BLOCK // 2 + 1), dtype=np.float32)
        self._block = (0.1 * rng.standard_normal((1, 1, BLOCK))).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self.states = [np.zeros(ins[1]["shape"], np.float32) for ins, _ in self.details]
        self.in_buffer = np.zeros(BLOCK, np.float32)
        self.out_buffer = np.zeros(BLOCK, np.float32)

    def _run(self, k: int, x: np.ndarray) -> np.ndarray:
        model, (ins, outs) = self.models[k], self.details[k]
        model.set_tensor(ins[0]["index"], x)
        model.set_tensor(ins[1]["index"], self.states[k])
        model.invoke()
        self.states[k] = model.get_tensor(outs[1]["index"])
        return model.get_tensor(outs[0]["index"])

    def model_step(self) -> None:
        """The two model calls of a hop alone (fixed inputs, no FFTs), as for edgesep."""
        self._run(0, self._magnitude)
        self._run(1, self._block)

    def process_chunk(self, chunk: np.ndarray) -> np.ndarray:
        """One shift of input -> one shift of output (the whole hop)."""
        self.in_buffer[:-SHIFT] = self.in_buffer[SHIFT:]
        self.in_buffer[-SHIFT:] = chunk
        spec = np.fft.rfft(self.in_buffer)
        mask = self._run(0, np.abs(spec).reshape(1, 1, -1).astype(np.float32))
        block = np.fft.irfft(spec * mask.reshape(-1)).astype(np.float32)
        out = self._run(1, block.reshape(1, 1, -1)).reshape(-1)
        self.out_buffer[:-SHIFT] = self.out_buffer[SHIFT:]
        self.out_buffer[-SHIFT:] = 0.0
        self.out_buffer += out
        return self.out_buffer[:SHIFT].copy()

    def separate(self, audio: np.ndarray) -> np.ndarray:
        """Enhanced speech of a whole clip ``[shape=(nb_samples,)]`` at 16 kHz, streamed hop by
        hop from zero states and aligned with the input: the output of a hop is complete
        ``BLOCK - SHIFT`` samples late, so that delay is removed (the tail is flushed with
        zeros)."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        n, delay = len(audio), BLOCK - SHIFT
        nb = -(-(n + delay) // SHIFT)
        padded = np.zeros(nb * SHIFT, np.float32)
        padded[:n] = audio
        self.reset()
        out = np.concatenate([self.process_chunk(c) for c in padded.reshape(nb, SHIFT)])
        return out[delay : delay + n]

    def parameters(self) -> int:
        """Weights in the two flatbuffers: constant tensors (inputs of an op that no op makes
        and that are not graph inputs)."""
        total = 0
        for m in self.models:
            ops = m._get_ops_details()
            made = {int(t) for op in ops for t in op["outputs"]}
            graph_in = {d["index"] for d in m.get_input_details()}
            used = {int(t) for op in ops for t in op["inputs"] if int(t) >= 0}
            shapes = {d["index"]: d["shape"] for d in m.get_tensor_details()}
            total += sum(int(np.prod(shapes[t])) for t in used - made - graph_in)
        return total
