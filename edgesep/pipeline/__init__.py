"""The main job: data -> train -> export (+ pruned export) -> streaming check -> validate ->
firmware -> report, on the built-in synthetic data by default.

``init="pretrained:NAME"`` starts from a packaged model instead (:mod:`edgesep.pretrained`):
its config and Keras weights, by default on the data it was trained on and with no training
step (``steps=0``), so the report scores that model itself; ``steps=N`` fine-tunes it.

Each stage records its outputs' SHA-256 in ``OUT/stages/<stage>.json`` once it has finished.
Re-running skips a stage whose record exists, whose outputs are intact, whose inputs (the
training's ``init``) are the same and whose upstream stage did not change; an interrupted
training resumes from its last checkpoint. A failed stage raises :class:`EdgesepError` naming
the stage, and earlier stages' outputs stay.

After the run, :attr:`Pipeline.verdict` holds the validation gates' results
(:mod:`edgesep.pipeline.verdict`): ``edgesep pipeline`` prints its line and exits 1 when a gate
failed. The stages' work is in :mod:`edgesep.pipeline.stages`, the records in
:mod:`edgesep.pipeline.bookkeeping`; :class:`Pipeline` orders the stages and keeps the records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property, partial
from pathlib import Path

from edgesep.config import Config, load_config
from edgesep.errors import EdgesepError
from edgesep.files import sha256_file
from edgesep.pipeline import stages
from edgesep.pipeline.bookkeeping import digest, run_stage
from edgesep.pipeline.stages import NB_TEST_CLIPS
from edgesep.pipeline.stages import record_gate as _record_gate
from edgesep.pipeline.verdict import Verdict, load_reports, verdict

__all__ = ["DEMO_TRAIN", "NB_TEST_CLIPS", "STAGES", "Pipeline", "Verdict", "_record_gate",
           "digest", "verdict"]

log = logging.getLogger("edgesep.pipeline")

STAGES = ("data", "train", "export", "stream_check", "validate", "firmware", "report")
#: Short training on two CPU cores: small batches of short patches.
DEMO_TRAIN = {"steps": 300, "batch_size": 8, "patch_frames": 64, "checkpoint_every": 50,
              "validate_every": 100}


class Pipeline:
    """Runs the stages into ``out_dir``; see the module docstring."""

    def __init__(
        self,
        out_dir: str | Path,
        data: str | None = None,
        config: str | Path | None = None,
        steps: int | None = None,
        prune: float = 0.3,
        progress: bool = True,
        init: str | None = None,
        prune_steps: int = 50,
    ) -> None:
        self.out = Path(out_dir)
        self.init = init
        self.init_weights: Path | None = None
        if init is None:
            if steps == 0:
                raise EdgesepError("--steps 0 needs --init pretrained:NAME (a model to start "
                                   "from)")
            data, config = data or "synthetic", config or "edge"
        else:
            data, config = self._pretrained(init, data, config)
            steps = 0 if steps is None else steps
        self.data = data
        self.config_name = config
        self.steps = steps
        self.prune, self.prune_steps = prune, prune_steps
        self.progress = progress
        self.run_dir = self.out / "run"
        self.export_dir = self.out / "export"
        self.pruned_dir = self.out / "export-pruned"
        self.results: dict[str, dict] = {}
        self.verdict: Verdict | None = None
        self._upstream = ""

    def _pretrained(self, init: str, data: str | None,
                    config: str | Path | None) -> tuple[str, str]:
        """Check ``--init pretrained:NAME`` against ``--data``/``--config``; returns both."""
        from edgesep import pretrained

        name = pretrained.parse(init)
        self.init_weights = pretrained.weights(name)
        card = pretrained.card(name)
        if config is not None and str(config) != card["config"]:
            raise EdgesepError(f"--config {config} conflicts with --init {init}, trained with "
                               f"config {card['config']!r}: leave --config out")
        if data is None:
            data = card["train_config"]["data"]
            folder = Path(data.partition(":")[2]).expanduser()
            if not folder.is_dir():
                raise EdgesepError(f"{init} was trained on {data}, not found here: pass "
                                   f"--data {data.partition(':')[0]}:PATH")
        return data, card["config"]

    # --- stage bookkeeping -------------------------------------------------------------
    def stage(self, name: str, fn: Callable[[], dict], outputs: list[Path],
              inputs: dict | None = None) -> dict:
        """Run ``fn`` unless its record says its outputs are intact and its ``inputs`` the
        same; record them after (:func:`edgesep.pipeline.bookkeeping.run_stage`)."""
        summary, self._upstream = run_stage(self.out, name, fn, outputs, inputs,
                                            self._upstream)
        return summary

    # --- what the stages share -----------------------------------------------------------
    @cached_property
    def cfg(self) -> Config:
        """The config trained: the demo's short training of ``config``, or with ``init`` the
        packaged model's config (as trained when ``steps`` is 0)."""
        if self.init_weights is None:
            cfg = load_config(self.config_name)
        else:
            from edgesep.contract import load_manifest

            cfg = Config.from_dict(load_manifest(self.init_weights.parent).config, self.init)
            if self.steps == 0:
                return replace(cfg, train=replace(cfg.train, data=self.data))
        train = {**DEMO_TRAIN, "data": self.data, "seed": cfg.train.seed}
        if self.steps is not None:
            train["steps"] = self.steps
        train["lr_decay_steps"] = train["steps"]
        return replace(cfg, train=replace(cfg.train, **train))

    @cached_property
    def init_record(self) -> dict | None:
        """What training starts from (in the train stage's record): None for random weights."""
        if self.init_weights is None:
            return None
        return {"init": self.init, "sha256": sha256_file(self.init_weights)}

    def clips(self, split: str, limit: int | None = None):
        from edgesep.data import load_clips

        key = f"_clips_{split}_{limit}"
        if key not in self.__dict__:
            self.__dict__[key] = load_clips(
                self.data, split, sample_rate=self.cfg.stft.sample_rate, limit=limit
            )
        return self.__dict__[key]

    # --- the order ---------------------------------------------------------------------
    def plan(self) -> list[tuple[str, Callable, list[Path], dict | None]]:
        """``(name, stage function, outputs, inputs)`` per stage, in :data:`STAGES` order."""
        out = self.out
        return [
            ("data", stages.stage_data, [out / "data.json"], None),
            ("train", stages.stage_train,
             [self.run_dir / "model.weights.h5", self.run_dir / "config.json"],
             self.init_record),
            ("export", stages.stage_export, [self.export_dir, self.pruned_dir],
             {"prune": self.prune, "prune_steps": self.prune_steps}),
            ("stream_check", stages.stage_stream_check, [out / "checks" / "streaming.json"],
             None),
            ("validate", stages.stage_validate, [out / "validate"], None),
            ("firmware", stages.stage_firmware, [out / "firmware"], None),
            ("report", stages.stage_report, [out / "report.md", out / "report.html"], None),
        ]

    def gate_verdict(self) -> Verdict:
        """The validation gates' verdict, from the validate stage's reports."""
        gates = self.results["validate"]["gates"]
        return verdict(load_reports(self.out / "validate", gates))

    def run(self) -> Path:
        """Run every stage; returns the path of ``report.html``. :attr:`verdict` holds the
        gates' results after."""
        from edgesep.files import check_writable_dir

        check_writable_dir(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        for name, fn, outputs, inputs in self.plan():
            self.results[name] = self.stage(name, partial(fn, self), outputs, inputs=inputs)
        self.verdict = self.gate_verdict()
        return self.out / "report.html"
