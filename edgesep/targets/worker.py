"""What runs on a target: stream clips through an export and keep what parity needs.

The same function runs in-process on the desktop and, under qemu-user, on an emulated Raspberry
Pi (``python -m edgesep.targets.worker``), so the two outputs differ only by the kernels and the
libraries of each ISA. Commands (files are ``.npz``, read without pickles):

- ``separate EXPORT PRECISION BACKEND IN OUT``: ``IN`` holds ``clip_<i>`` mixtures; ``OUT``
  gets ``clip_<i>/<source>`` estimates and ``clip_<i>/masks``, the model's raw masks output of
  every hop (int8 values for an int8 model).
- ``hops EXPORT PRECISION BACKEND IN NB_HOPS [LIBRARY]``: stream ``NB_HOPS`` hops of
  ``clip_0`` (looped) and exit; run twice under the instruction counter, the difference is the
  cost of the hops. With ``LIBRARY`` (the C framer built for the target,
  :func:`edgesep.framer.cache.build_library`), the C hop loop streams instead of numpy.
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


def compare_outputs(here: list[dict], there: list[dict], sources: tuple[str, ...]) -> dict:
    """Parity of two lists of :func:`stream_clip` outputs: hops, hops whose raw masks differ,
    the largest mask difference (LSB for an integer model) and the largest audio difference."""
    hops = differing = 0
    mask_max = audio_max = 0.0
    for a, b in zip(here, there, strict=True):
        if a["masks"].shape != b["masks"].shape:
            raise EdgesepError(f"the target returned masks {b['masks'].shape}, expected "
                               f"{a['masks'].shape}")
        delta = np.abs(a["masks"].astype(np.float64) - b["masks"].astype(np.float64))
        hops += len(delta)
        differing += int(delta.reshape(len(delta), -1).any(axis=1).sum())
        mask_max = max(mask_max, float(delta.max(initial=0.0)))
        audio_max = max(audio_max, *(float(np.max(np.abs(a[s] - b[s]), initial=0.0))
                                     for s in sources))
    return {"frames": hops, "frames_differing": differing, "max_mask_difference": mask_max,
            "max_audio_difference": audio_max}


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
    command, export, precision, backend, inputs, last, *library = argv
    if len(library) > 1:
        raise EdgesepError(f"worker: unexpected arguments {library[1:]}")
    if library and command != "hops":
        raise EdgesepError(f"worker {command}: a C framer library goes with hops only")
    streamer = open_streamer(export, precision, backend, hop_loop="c" if library else "python",
                             library=Path(library[0]) if library else None)
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
