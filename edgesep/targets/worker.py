"""What runs on a target: stream clips through an export and keep what parity needs.

The same function runs in-process on the desktop and, under qemu-user, on an emulated Raspberry
Pi (``python -m edgesep.targets.worker``), so the two outputs differ only by the kernels and the
libraries of each ISA. Commands (files are ``.npz``, read without pickles):

- ``separate EXPORT PRECISION BACKEND IN OUT``: ``IN`` holds ``clip_<i>`` mixtures; ``OUT``
  gets ``clip_<i>/<source>`` estimates and ``clip_<i>/masks``, the model's raw masks output of
  every hop (int8 values for an int8 model).
- ``hops EXPORT PRECISION BACKEND IN NB_HOPS``: stream ``NB_HOPS`` hops of ``clip_0`` (looped)
  and exit; run twice under the instruction counter, the difference is the cost of the hops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.runtime.stream import Streamer, open_streamer, separate_file


def stream_clip(streamer: Streamer, mixture: np.ndarray) -> dict[str, np.ndarray]:
    """``{source: estimate, "masks": raw masks per hop}`` of one mixture."""
    stepper = streamer.stepper
    masks: list[np.ndarray] = []
    name = stepper.masks_spec.name
    recording, stepper.record = stepper.record, True
    try:
        out = separate_file(streamer, mixture,
                            on_hop=lambda: masks.append(np.array(stepper.last_outputs[name])))
    finally:
        stepper.record = recording
    out["masks"] = np.stack(masks)
    return out


def stream_hops(streamer: Streamer, mixture: np.ndarray, nb_hops: int) -> None:
    """Push ``nb_hops`` hops of ``mixture`` (looped) through the streamer."""
    hop = streamer.hop
    nb = max(1, len(mixture) // hop)
    chunks = np.asarray(mixture[: nb * hop], np.float32).reshape(nb, hop)
    streamer.reset()
    for i in range(nb_hops):
        streamer.process_chunk(chunks[i % nb])


def read_clips(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"clip_{i}"] for i in range(len(data.files))]


def main(argv: list[str]) -> int:
    command, export, precision, backend, inputs, last = argv
    streamer = open_streamer(export, precision, backend)
    clips = read_clips(Path(inputs))
    if command == "separate":
        arrays = {}
        for i, mixture in enumerate(clips):
            for key, value in stream_clip(streamer, mixture).items():
                arrays[f"clip_{i}/{key}"] = value
        np.savez(last, **arrays)
    elif command == "hops":
        stream_hops(streamer, clips[0], int(last))
    else:
        raise EdgesepError(f"unknown worker command {command!r}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except EdgesepError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
