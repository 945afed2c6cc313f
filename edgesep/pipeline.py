"""The main job: data -> train -> export (+ pruned export) -> streaming check -> validate ->
report, on the built-in synthetic data by default.

``init="pretrained:NAME"`` starts from a packaged model instead (:mod:`edgesep.pretrained`):
its config and Keras weights, by default on the data it was trained on and with no training
step (``steps=0``), so the report scores that model itself; ``steps=N`` fine-tunes it.

Each stage records its outputs' SHA-256 in ``OUT/stages/<stage>.json`` once it has finished.
Re-running skips a stage whose record exists, whose outputs are intact, whose inputs (the
training's ``init``) are the same and whose upstream stage did not change; an interrupted
training resumes from its last checkpoint. A failed stage raises :class:`EdgesepError` naming
the stage, and earlier stages' outputs stay.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from edgesep.config import Config, load_config
from edgesep.errors import EdgesepError
from edgesep.files import sha256_bytes, sha256_file, write_json_atomic

log = logging.getLogger("edgesep.pipeline")

STAGES = ("data", "train", "export", "stream_check", "validate", "firmware", "report")
#: Short training on two CPU cores: small batches of short patches.
DEMO_TRAIN = {"steps": 300, "batch_size": 8, "patch_frames": 64, "checkpoint_every": 50,
              "validate_every": 100}
NB_TEST_CLIPS = 3


def digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (their relative names and SHA-256s)."""
    if not path.is_dir():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return sha256_bytes("".join(f"{f.relative_to(path)}:{sha256_file(f)}\n"
                                for f in files).encode())


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
        same; record them after."""
        record_path = self.out / "stages" / f"{name}.json"
        if record_path.exists():
            record = json.loads(record_path.read_text())
            intact = all(
                (self.out / rel).exists() and digest(self.out / rel) == sha
                for rel, sha in record["outputs"].items()
            )
            if (intact and record.get("upstream") == self._upstream
                    and record.get("inputs") == inputs):
                log.info("[%s] up to date, skipped", name)
                self._upstream = record["digest"]
                return record["summary"]
            log.info("[%s] outputs or inputs changed, or upstream re-ran: running again", name)
        log.info("[%s] running", name)
        started = time.monotonic()
        try:
            summary = fn()
        except EdgesepError as exc:
            raise EdgesepError(f"pipeline stage '{name}' failed: {exc}") from None
        except Exception as exc:  # an internal error: keep the traceback in the log file
            (self.out / "pipeline-error.log").write_text(traceback.format_exc())
            raise EdgesepError(
                f"pipeline stage '{name}' failed: {type(exc).__name__}: {exc} "
                f"(traceback in {self.out / 'pipeline-error.log'})"
            ) from None
        checksums = {str(p.relative_to(self.out)): digest(p) for p in outputs}
        record = {"stage": name, "outputs": checksums, "upstream": self._upstream,
                  "summary": summary}
        if inputs is not None:
            record["inputs"] = inputs
        record["digest"] = sha256_bytes(json.dumps(record, sort_keys=True).encode())
        write_json_atomic(record_path, record)
        self._upstream = record["digest"]
        log.info("[%s] done in %.0f s", name, time.monotonic() - started)
        return summary

    # --- data ---------------------------------------------------------------------------
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

    def run(self) -> Path:
        """Run every stage; returns the path of ``report.html``."""
        from edgesep.files import check_writable_dir

        check_writable_dir(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results["data"] = self.stage("data", self._data, [self.out / "data.json"])
        self.results["train"] = self.stage(
            "train", self._train, [self.run_dir / "model.weights.h5", self.run_dir / "config.json"],
            inputs=self.init_record,
        )
        self.results["export"] = self.stage(
            "export", self._export, [self.export_dir, self.pruned_dir],
            inputs={"prune": self.prune, "prune_steps": self.prune_steps},
        )
        self.results["stream_check"] = self.stage(
            "stream_check", self._stream_check, [self.out / "checks" / "streaming.json"]
        )
        self.results["validate"] = self.stage(
            "validate", self._validate, [self.out / "validate"]
        )
        self.results["firmware"] = self.stage(
            "firmware", self._firmware, [self.out / "firmware"]
        )
        self.results["report"] = self.stage(
            "report", self._report, [self.out / "report.md", self.out / "report.html"]
        )
        return self.out / "report.html"

    def _data(self) -> dict:
        summary = {"spec": self.data}
        for split in ("train", "val", "test"):
            clips = self.clips(split, NB_TEST_CLIPS if split == "test" else None)
            seconds = round(sum(c.duration for c in clips), 1)
            summary[split] = {"clips": len(clips), "seconds": seconds}
        write_json_atomic(self.out / "data.json", summary)
        return summary

    def _train(self) -> dict:
        import shutil

        from edgesep.train import read_init, train

        resume = any((self.run_dir / "checkpoints").glob("ckpt-*"))
        started = (read_init(self.run_dir) or {}).get("sha256")
        if resume and started != (self.init_record or {}).get("sha256"):
            log.info("[train] %s started from other weights: training afresh", self.run_dir)
            shutil.rmtree(self.run_dir)
            resume = False
        if resume:
            log.info("[train] resuming from the last checkpoint")
        train_data = self.clips("train")
        if self.cfg.train.dynamic_mixing:
            from edgesep.data import load_training_data

            train_data = load_training_data(self.data, self.cfg.stft.sample_rate,
                                            seed=self.cfg.train.seed, dynamic_mixing=True)
        if self.init:
            log.info("[train] from %s (%s), %d more steps", self.init, self.init_weights,
                     self.steps)
        metrics = train(self.cfg, train_data, self.clips("val"), self.run_dir,
                        resume=resume, progress=self.progress,
                        steps=0 if self.steps == 0 else None, init_weights=self.init_weights)
        summary = {k: metrics[k] for k in ("steps", "final_train_loss", "best_val_loss",
                                           "device")}
        return {**summary, "init": self.init}

    def _export(self) -> dict:
        from edgesep.export import export_run

        common = {"calib_data": self.data, "calib_frames": 1000, "force": True,
                  "progress": self.progress}
        export_run(self.run_dir, self.export_dir, int8=True, onnx=True, **common)
        export_run(self.run_dir, self.pruned_dir, int8=True, prune=self.prune, structured=True,
                   prune_steps=self.prune_steps, **common)
        return {"exports": [str(self.export_dir), str(self.pruned_dir)]}

    def _stream_check(self) -> dict:
        from edgesep.runtime.stream import STREAM_TOLERANCE, open_streamer, streaming_difference

        clip = self.clips("test", NB_TEST_CLIPS)[0]
        results = {}
        for export in (self.export_dir, self.pruned_dir):
            for precision in ("float32", "int8"):
                diff, finite = streaming_difference(open_streamer(export, precision),
                                                    clip.mixture)
                results[f"{export.name}/{precision}"] = diff if finite else float("inf")
                log.info("[stream_check] %s/%s: streamed vs offline max abs %.1e", export.name,
                         precision, results[f"{export.name}/{precision}"])
        passed = all(d <= STREAM_TOLERANCE for d in results.values())
        if not passed:
            raise EdgesepError(f"streamed output differs from offline: {results}")
        write_json_atomic(self.out / "checks" / "streaming.json",
                          {"clip": clip.name, "max_abs_diff": results,
                           "tolerance": STREAM_TOLERANCE, "passed": passed})
        return {"max_abs_diff": results}

    def _validate(self) -> dict:
        from edgesep import validate as gate
        from edgesep.runtime.bench import benchmark

        clips = self.clips("test", NB_TEST_CLIPS)
        out = self.out / "validate"
        summary: dict = {"gates": {}, "scores": {}, "bench": {}}
        jobs = [(self.export_dir, "float32", "litert", "desktop"),
                (self.export_dir, "float32", "onnxruntime", "desktop"),
                (self.pruned_dir, "int8", "litert", "desktop")]
        jobs += [(self.export_dir, "int8", "litert", t) for t in gate.targets.TARGETS
                 if gate.targets.check_here(gate.targets.TARGETS[t]) is None]
        summary["targets"] = {job[3]: {"how": f"this machine, {len(clips)} clips",
                                       "gate": "-".join([job[0].name, *job[1:]])} for job in jobs
            if job[0] == self.export_dir and job[1:3] == ("int8", "litert")}
        for export, precision, backend, target in jobs:
            stem = f"{export.name}-{precision}-{backend}-{target}"
            report = gate.validate(
                export, self.run_dir, clips, target=target, precision=precision, backend=backend,
                max_sdr_drop=0.5,
                progress=lambda msg, stem=stem: log.info("[validate] %s: %s", stem, msg))
            _record_gate(report, stem, out, summary)
            # strict JSON: an undefined (NaN) speech score becomes null, as in the report
            summary["scores"][f"{export.name}/{precision}/{backend}"] = report.to_dict()["scores"]
        self._emulated_targets(clips[:1], out, summary)
        for export, precision, backend in ((self.export_dir, "float32", "litert"),
                                           (self.export_dir, "int8", "litert"),
                                           (self.export_dir, "float32", "onnxruntime"),
                                           (self.pruned_dir, "int8", "litert")):
            log.info("[validate] benchmark %s/%s (%s): 1000 hops", export.name, precision,
                     backend)
            result = benchmark(export, precision, backend, threads=1, warmup=50, count=1000)
            write_json_atomic(out / f"bench-{export.name}-{precision}-{backend}.json", result)
            summary["bench"][f"{export.name}/{precision}/{backend}"] = result
        return summary

    def _emulated_targets(self, clips: list, out: Path, summary: dict) -> None:
        """The int8 export on each Raspberry Pi this machine is not, under qemu-user (one
        clip: emulation is slow), when ``edgesep target setup`` has provisioned it."""
        from edgesep import validate as gate
        from edgesep.targets import TARGETS, check_here
        from edgesep.targets.provision import toolchain

        tools = toolchain(require=False)
        for name, profile in TARGETS.items():
            if name in summary["targets"] or not profile.emulated or check_here(profile) is None:
                continue
            if tools.missing():
                summary["targets"][name] = {"how": "skipped: run `edgesep target setup "
                                                   "--counter` and re-run the pipeline"}
                continue
            stem = f"{self.export_dir.name}-int8-litert-{name}"
            report = gate.validate(
                self.export_dir, self.run_dir, clips, target=name, precision="int8",
                max_sdr_drop=0.5, latency=tools.has_counter,
                progress=lambda msg, stem=stem: log.info("[validate] %s: %s", stem, msg))
            _record_gate(report, stem, out, summary)
            summary["targets"][name] = {"how": f"emulated (qemu-user), {len(clips)} clip",
                                        "gate": stem}

    def _firmware(self) -> dict:
        """The int8 export as C for a device (edgesep firmware), checked on TensorFlow Lite
        Micro; without the [firmware] extra the stage says so and the report shows why."""
        import importlib.util

        from edgesep.firmware_bridge import build_firmware
        from edgesep.firmware_bridge.emit import memory_table

        out = self.out / "firmware"
        if importlib.util.find_spec("tflite_micro") is None:
            write_json_atomic(out / "firmware.json", {
                "skipped": "TensorFlow Lite Micro is not installed: pip install "
                           "'edgesep[firmware]' (the tflite-micro package)"})
            return {"skipped": True}
        result = build_firmware(self.export_dir, out, precision="int8", name="edgesep",
                                force=True, data=self.data, frames=500)
        return {"memory": [list(row) for row in memory_table(result.spec)],
                "parity": result.summary["parity"], "ops": result.summary["ops"]}

    def _report(self) -> dict:
        from edgesep.report import write_report

        log.info("[report] separating a test clip (float32, int8), plotting, writing")
        return write_report(self)


def _record_gate(report, stem: str, out: Path, summary: dict) -> None:
    """Write a validate report as JSON, JUnit and Markdown, and note its verdict."""
    from edgesep import validate as gate

    gate.write_json(report, out / f"{stem}.json")
    gate.write_junit(report, out / f"{stem}.xml")
    gate.write_markdown(report, out / f"{stem}.md")
    failed = [c.name for c in report.checks if not c.passed]
    summary["gates"][stem] = {"passed": report.passed, "failed": failed}
    log.info("[validate] %s: %s", stem, "pass" if report.passed else "FAIL: " + ", ".join(failed))
