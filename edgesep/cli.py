"""The ``edgesep`` command line: parse, call the library, print. TensorFlow is imported
inside the commands that need it, so ``--help`` stays fast and the runtime side works
without it."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator

import click

from edgesep import __version__
from edgesep import limits as lim
from edgesep.errors import EdgesepError


class UserError(click.ClickException):
    """A user mistake: one line ``Error: ...`` and exit code 2 (1 is kept for failed gates)."""

    exit_code = 2


def user_errors(func):
    """Decorate a command so :class:`EdgesepError` becomes :class:`UserError`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EdgesepError as exc:
            raise UserError(str(exc)) from None
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in TRAIN_MODULES:
                raise
            raise UserError(f"this command needs {exc.name}: pip install 'edgesep[train]' "
                            "(the [runtime] extra runs exported models only)") from None

    return wrapper


#: Modules of the ``[train]`` extra: a command that needs them says so in one line.
TRAIN_MODULES = {"tensorflow", "keras", "jax", "tf2onnx", "onnx", "matplotlib"}


@contextlib.contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """A click usage error (unknown option, missing argument, bad value) as :class:`UserError`:
    one line ``Error: ...`` and exit 2, without click's ``Usage:`` and ``Try ...`` lines. A
    group called without its command still prints its help."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as exc:
        message = " ".join(exc.format_message().split())
        if exc.ctx is not None:
            message += f" (see: {exc.ctx.command_path} --help)"
        raise UserError(message) from None


class EdgesepGroup(click.Group):
    """The top command group; every usage error below it is one ``Error:`` line."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context):
        with one_line_usage_errors():
            return super().invoke(ctx)


@click.group(cls=EdgesepGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgesep")
@click.option("-v", "--verbose", is_flag=True,
              help="Show debug messages and the libraries' own output (TensorFlow start-up "
              "lines, warnings).")
def cli(verbose: bool) -> None:
    """edgesep: train, compress, export, stream and validate a voice-separation model
    for hearing devices (coupled U-Net + ASPP)."""
    from edgesep import console

    console.set_verbose(verbose)
    console.quiet_environment()
    console.quiet_logging()


class Amount(click.ParamType):
    """A finite float within ``[min, max]`` (``min_open``/``max_open``: that bound excluded):
    every amount has a floor and a ceiling, as every count does (see :mod:`edgesep.limits`);
    ``nan``, ``inf`` or a value outside names the range, e.g. ``0<x<=43200``."""

    name = "number"

    def __init__(self, min: float, max: float, min_open: bool = False,
                 max_open: bool = False) -> None:
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def range(self) -> str:
        return (f"{self.min:g}{'<' if self.min_open else '<='}x"
                f"{'<' if self.max_open else '<='}{self.max:g}")

    def convert(self, value, param, ctx):
        import math

        number = click.FLOAT.convert(value, param, ctx)
        above = number > self.min if self.min_open else number >= self.min
        below = number < self.max if self.max_open else number <= self.max
        if not (math.isfinite(number) and above and below):
            self.fail(f"{value} is not in the range {self.range()}.", param, ctx)
        return number


class Count(click.IntRange):
    """An integer within ``[min, max]`` (both given: every count has a ceiling, see
    :mod:`edgesep.limits`); a value outside names the bound it crosses, e.g. ``x<=64``."""

    def __init__(self, min: int, max: int) -> None:
        super().__init__(min, max)

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if number < self.min:
            self.fail(f"{number} is not in the range x>={self.min}.", param, ctx)
        if number > self.max:
            self.fail(f"{number} is not in the range x<={self.max}.", param, ctx)
        return number


def data_paths(spec: str | None) -> list[str]:
    """The file or folder a ``--data`` spec reads (``mir1k:PATH``, ``mixtures:PATH``,
    ``speechnoise:PATH``, ``pack:FILE``), none for ``synthetic``: what an output must not
    touch."""
    kind, _, arg = (spec or "").partition(":")
    return ([os.path.expanduser(arg)] if kind in ("mir1k", "mixtures", "speechnoise", "pack")
            and arg else [])


def config_paths(name: str | None) -> list[str]:
    """The TOML file of ``--config`` when it names one (a packaged name reads no path)."""
    return [name] if name and os.path.isfile(name) else []


def check_report_paths(paths: dict[str, str | None], inputs: list) -> None:
    """Every report file option given (``{option: path}``): checked by
    :func:`edgesep.files.check_output_file`, and no two on one file."""
    from edgesep.files import check_output_file

    seen: dict = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = os.path.realpath(check_output_file(path, inputs, f"{option} report"))
        if key in seen:
            raise EdgesepError(f"{path}: given to both {seen[key]} and {option}, one would "
                               "overwrite the other")
        seen[key] = option


class ExportDir(click.ParamType):
    """An export folder, or ``pretrained:NAME`` for a packaged model (its folder, checked
    against its SHA256SUMS; an unknown name is one ``Error:`` line listing the known ones)."""

    name = "directory"

    def __init__(self) -> None:
        self._path = click.Path(exists=True, file_okay=False)

    def convert(self, value, param, ctx):
        from edgesep.pretrained import PREFIX, resolve

        if isinstance(value, str) and value.startswith(PREFIX):
            try:
                return str(resolve(value))
            except EdgesepError as exc:
                raise UserError(str(exc)) from None
        return self._path.convert(value, param, ctx)


EXPORT_DIR = ExportDir()

DATA_OPTION = click.option(
    "--data",
    "data_spec",
    default=None,
    help="Data: synthetic (built-in), mir1k:PATH, mixtures:PATH, speechnoise:PATH or "
    "pack:FILE (edgesep pack). "
    "Default: the config's.",
)


@cli.command()
@click.option(
    "--config",
    "config_name",
    default="edge",
    show_default=True,
    help="Packaged config name (edge, paper, unet, ...) or a TOML path.",
)
@DATA_OPTION
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory to create (or continue with --resume).",
)
@click.option("--steps", type=Count(1, lim.MAX_STEPS), default=None,
              help="Override the config's step count.")
@click.option("--resume", is_flag=True, help="Continue from the run's latest checkpoint.")
@click.option("--limit", type=Count(1, lim.MAX_LIMIT), default=None,
              help="Use at most N clips per split.")
@click.option("--max-minutes", type=Amount(0, lim.MAX_MINUTES, min_open=True), default=None,
              help="Stop (with a checkpoint; --resume goes on) after this much training time.")
@click.option("--backend", type=click.Choice(["tensorflow", "jax"]), default=None,
              help="Keras backend to train on (default: $KERAS_BACKEND, else tensorflow); "
              "jax uses a GPU when one is visible. Checkpoints resume on either.")
@click.option("--init", "init_run", type=click.Path(file_okay=False), default=None,
              help="Start from this run's best weights (same network and framing) instead of "
              "random ones, with a fresh optimiser: a new phase of a run, e.g. a decay.")
@click.option("--lr-decay-steps", type=Count(0, lim.MAX_STEPS), default=None,
              help="Override the config's cosine learning-rate decay (to 10 %) over N steps; "
              "0: constant. Recorded in the run's config, so --resume needs it again.")
@user_errors
def train(config_name, data_spec, out_dir, steps, resume, limit, max_minutes, backend,
          init_run, lr_decay_steps):
    """Train a separation model; checkpoints resume after a kill, on either backend.

    Example: edgesep train --config edge --data mir1k:../shared/data/mir1k --out runs/edge1

    On a GPU machine with no network: edgesep train --backend jax --data pack:speech.pack
    --out runs/s1 --max-minutes 9 --resume (see `edgesep pack`).
    """
    from pathlib import Path

    from edgesep.files import check_output_dir

    check_output_dir(out_dir, [*data_paths(data_spec), *config_paths(config_name),
                               *([init_run] if init_run else [])], "run directory")
    if backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != backend:
            raise UserError(f"--backend {backend}: Keras is already loaded on another backend")
        os.environ["KERAS_BACKEND"] = backend

    from dataclasses import replace

    from edgesep.config import load_config
    from edgesep.data import load_clips, load_training_data
    from edgesep.runs import initial_weights
    from edgesep.train import train as run_training

    cfg = load_config(config_name)
    if lr_decay_steps is not None:
        cfg = replace(cfg, train=replace(cfg.train, lr_decay_steps=lr_decay_steps))
    init_weights = None if init_run is None else initial_weights(init_run, cfg)
    spec = data_spec or cfg.train.data
    rate, seed = cfg.stft.sample_rate, cfg.train.seed
    train_clips = load_training_data(spec, rate, limit=limit, seed=seed,
                                     dynamic_mixing=cfg.train.dynamic_mixing)
    val_clips = load_clips(spec, "val", sample_rate=rate, limit=limit, seed=seed)
    if cfg.train.dynamic_mixing:
        what = f"dynamic mixing of {train_clips.describe()}"
    else:
        what = f"{len(train_clips)} train clips"
    click.echo(f"{cfg.name}: {what} / {len(val_clips)} val clips from {spec}")
    max_seconds = None if max_minutes is None else 60 * max_minutes
    metrics = run_training(
        cfg, train_clips, val_clips, Path(out_dir), resume=resume, steps=steps,
        max_seconds=max_seconds, data_spec=spec, init_weights=init_weights,
    )
    click.echo(f"done: step {metrics['steps']}, best val loss {metrics['best_val_loss']}")


@cli.command()
@click.argument("run", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--oracle",
    "oracles",
    type=click.Choice(["irm", "mixture"]),
    multiple=True,
    help="Score an oracle: irm (ideal ratio mask, mixture phase) or mixture (no separation). "
    "Repeat for several rows.",
)
@DATA_OPTION
@click.option(
    "--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True
)
@click.option("--limit", type=Count(1, lim.MAX_LIMIT), default=None,
              help="Score at most N clips.")
@click.option(
    "--config",
    "config_name",
    default="edge",
    show_default=True,
    help="Config whose STFT (and default data) is used when no RUN is given.",
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write per-clip scores.")
@user_errors
def evaluate(run, oracles, data_spec, split, limit, config_name, csv_path):
    """Score a trained RUN (and/or oracles) with BSS Eval (GNSDR/GSIR/GSAR, length-weighted).

    With a RUN, the table shows it beside the IRM oracle and the unprocessed mixture. On speech
    data (mixtures:PATH) the speech is also scored with SI-SDR, SI-SDRi, PESQ-WB, STOI and ESTOI
    (needs the [speech] extra: pesq, pystoi).

    \b
    Example: edgesep evaluate runs/edge1 --data mir1k:/data/MIR-1K --split test --csv clips.csv
    Example: edgesep evaluate --oracle irm --oracle mixture --data mir1k:/data/MIR-1K
    """
    check_report_paths({"--csv": csv_path},
                       [run, *data_paths(data_spec), *config_paths(config_name)])
    from edgesep.config import load_config
    from edgesep.data import load_clips
    from edgesep.evaluate import (
        evaluate_oracle,
        evaluate_separator,
        format_speech_table,
        format_tables,
        write_csv,
    )

    if not oracles and not run:
        raise EdgesepError("nothing to evaluate: give a RUN and/or --oracle irm|mixture")
    if run:
        from edgesep.inference import keras_separator
        from edgesep.runs import load_run

        model, cfg = load_run(run)
        oracles = oracles or ("irm", "mixture")
    else:
        cfg = load_config(config_name)
    spec = data_spec or cfg.train.data
    clips = load_clips(
        spec, split, sample_rate=cfg.stft.sample_rate, limit=limit, seed=cfg.train.seed
    )
    seconds = sum(c.duration for c in clips)
    click.echo(
        f"{len(clips)} {split} clips from {spec} ({seconds:.0f} s); "
        f"BSS Eval (mir_eval), compute_permutation=False"
    )
    evaluations = []
    if run:
        separate = keras_separator(model, cfg)
        evaluations.append(evaluate_separator(clips, separate, method=f"{cfg.name} ({run})"))
    evaluations += [evaluate_oracle(clips, o, cfg.stft) for o in oracles]
    title = f"{spec} {split}, {len(clips)} clips"
    click.echo(format_tables(evaluations, title=title))
    speech = format_speech_table(evaluations, title=title)
    if speech:
        click.echo(f"\n{speech}\n(SI-SDR/SI-SDRi dB; means weighted by clip length, each over "
                   "the clips where it is defined)")
    for note in dict.fromkeys(n for e in evaluations for n in e.notes):
        click.echo(f"note: {note}")
    if csv_path:
        click.echo(f"per-clip scores: {write_csv(csv_path, evaluations)}")


@cli.command()
@click.option("--data", "data_spec", required=True,
              help="Data to pack: synthetic[:N], mir1k:PATH or mixtures:PATH.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The pack file to write (train on it with --data pack:FILE).")
@click.option("--max-mb", type=Amount(0, lim.MAX_PACK_MB, min_open=True), required=True,
              help="Refuse a pack over this size (1 MB = 10^6 bytes).")
@click.option("--limit", type=Count(1, lim.MAX_LIMIT), default=None,
              help="Pack at most N speech files (mixtures) or clips per split.")
@click.option("--sample-rate", type=Count(lim.MIN_SAMPLE_RATE, lim.MAX_SAMPLE_RATE),
              default=16000, show_default=True,
              help="Sample rate of the packed audio (the config's).")
@click.option("--force", is_flag=True, help="Replace an existing pack.")
@user_errors
def pack(data_spec, out_path, max_mb, limit, sample_rate, force):
    """Pack a data spec's audio into one file (zip of 16-bit FLAC + index.json) for a machine
    with no network; train or evaluate on it with --data pack:FILE.

    Example: edgesep pack --data mixtures:../shared/data --out data.pack --max-mb 60 --limit 20
    """
    from pathlib import Path

    from edgesep.files import check_output_file

    check_output_file(out_path, data_paths(data_spec), "pack")
    from edgesep.data.pack import pack_counts, write_pack

    index = write_pack(data_spec, Path(out_path), int(max_mb * 1e6), sample_rate=sample_rate,
                       limit=limit, force=force)
    counts = pack_counts(index)
    splits = ", ".join(
        f"{split} " + "/".join(f"{n} {role}" for role, n in c.items() if role != "seconds")
        for split, c in counts["splits"].items())
    nbytes = Path(out_path).stat().st_size
    click.echo(f"{out_path}: {nbytes} bytes ({nbytes / 1e6:.1f} MB); {splits}; "
               f"{counts['seconds']:.0f} s of audio at {sample_rate} Hz")


# --- streaming runtime: stream, bench (no TensorFlow unless --backend keras) ---------------

PRECISION_OPTION = click.option(
    "--precision", default=None,
    help="Artefact of the manifest to run: int8, float32, float16, int16x8 "
    "(default: int8 if exported, else float32).",
)
BACKEND_OPTION = click.option(
    "--backend", default="litert", show_default=True,
    type=click.Choice(["litert", "tflite-runtime", "onnxruntime", "tflm", "keras"]),
    help="Inference runtime (tflm: TensorFlow Lite Micro's kernels, the [firmware] extra; "
    "keras: the reference model of the manifest's source run).",
)
THREADS_OPTION = click.option(
    "--threads", type=Count(1, lim.MAX_THREADS), default=1, show_default=True,
    help="CPU threads for the interpreter.",
)
HOP_LOOP_OPTION = click.option(
    "--hop-loop", type=click.Choice(["python", "c"]), default="python", show_default=True,
    help="The DSP around the model: numpy, or the C framer `edgesep firmware` emits, compiled "
    "here with gcc (cached) and run with litert/tflite-runtime on the model's own buffers.",
)
REQUIRE_SIGNATURE_OPTION = click.option(
    "--require-signature", "public_key", default=None, metavar="PUB.pem",
    help="Refuse the export unless its manifest.sig is a valid signature by this Ed25519 "
    "public key (PEM; `edgesep export --sign` writes it).",
)


def require_signature(export_dir, public_key: str | None) -> None:
    """With ``--require-signature``: check the export's signature now, and its manifest again
    at every read for the rest of the command (:func:`edgesep.contract.require_signature`)."""
    if public_key is not None:
        from edgesep.contract import require_signature as signed

        click.get_current_context().with_resource(signed(export_dir, public_key))


@cli.command()
@click.argument("model_dir", type=EXPORT_DIR)
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("-i", "--input", "more_inputs", multiple=True, type=click.Path(),
              help="An input file or folder (same as a positional INPUT; repeatable).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False),
              help="Output folder (files laid out by --filename-format).")
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "ogg"]), default="wav",
              show_default=True, help="Output audio format.")
@click.option("--filename-format", "template", default="{name}/{source}.{ext}",
              show_default=True,
              help="Output path under --output; fields {name} (input name without extension), "
              "{filename} (with it), {foldername}, {source}, {ext}.")
@click.option("--start", type=Amount(0, lim.MAX_SECONDS), default=0.0, show_default=True,
              help="Separate from this time of each input (seconds).")
@click.option("--duration", type=Amount(0, lim.MAX_SECONDS, min_open=True), default=None,
              help="Separate at most this many seconds of each input.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@PRECISION_OPTION
@BACKEND_OPTION
@THREADS_OPTION
@HOP_LOOP_OPTION
@click.option("--strict", is_flag=True, help="Refuse inputs at another sample rate.")
@click.option("--live", is_flag=True, help="Separate a sound device's input in real time.")
@click.option("--list-devices", is_flag=True, help="With --live: list the sound devices.")
@click.option("--device", default=None, help="Sound device (index or name) for --live.")
@click.option("--source", default=None, help="Source played back with --live (default: first).")
@click.option("--seconds", type=Amount(0, lim.MAX_SECONDS, min_open=True), default=None,
              help="With --live: stop after this long (default: Ctrl-C).")
@REQUIRE_SIGNATURE_OPTION
@user_errors
def stream(model_dir, inputs, more_inputs, out_dir, fmt, template, start, duration, overwrite,
           precision, backend, threads, hop_loop, strict, live, list_devices, device, source,
           seconds, public_key):
    """Separate audio files (or folders of them) frame by frame with an exported model, as a
    device would: OUTPUT/<name>/<source>.<format>, like Spleeter.

    Existing outputs are kept unless --overwrite; two inputs that would write the same file
    (clip.flac and clip.ogg) are refused before any work; one edgesep stream per output
    folder at a time.

    \b
    Example:
      edgesep stream build/edge1 song.wav talks/ -o separated/
      -> separated/song/vocals.wav, separated/song/accompaniment.wav, ...
      edgesep stream build/edge1 a.flac a.ogg -o sep/ --filename-format '{filename}/{source}.{ext}'
      edgesep stream build/edge1 --live --list-devices
      edgesep stream build/edge1 --live --device 2
      edgesep stream pretrained:speech-edge noisy.wav -o out/   (a packaged model)
      edgesep stream pretrained:speech-hearing noisy.wav -o out/ --hop-loop c
    """
    require_signature(model_dir, public_key)
    from edgesep import console
    from edgesep.runtime import stream_files as sfiles

    if live:
        from edgesep.runtime import live as live_audio

        if list_devices:
            click.echo(live_audio.list_devices())
            return
        live_audio.sounddevice_module()  # say what to install before loading anything
        from edgesep.runtime.stream import open_streamer

        streamer = open_streamer(model_dir, precision, backend, threads, hop_loop=hop_loop)
        dev = int(device) if device is not None and device.isdigit() else device
        click.echo("live: Ctrl-C stops", err=True)
        cb = live_audio.run_live(streamer, dev, source, seconds=seconds,
                                 say=lambda msg: click.echo(f"live: {msg}", err=True))
        click.echo(f"live: {cb.counts}; {streamer.latency.line()}", err=True)
        return
    if list_devices:
        raise EdgesepError("--list-devices goes with --live")
    inputs = (*inputs, *more_inputs)
    if not inputs or not out_dir:
        raise EdgesepError("give input files or folders and -o OUTPUT (or --live)")
    from edgesep.files import check_output_dir

    check_output_dir(out_dir, [model_dir, *(p for p in inputs if os.path.isdir(p))],
                     replaced=False)  # written into file by file: -o . beside the inputs is fine
    files = sfiles.expand_inputs(inputs)
    from edgesep.contract import load_manifest

    manifest = load_manifest(model_dir)
    sources = manifest.sources
    sfiles.plan_outputs(files, out_dir, sources, fmt, template, overwrite)  # fail before work
    sfiles.check_inputs(files, manifest.stft.sample_rate, strict, start, duration)
    from edgesep.runtime.stream import open_streamer

    streamer = open_streamer(model_dir, precision, backend, threads, hop_loop=hop_loop)
    nonfinite = 0
    with sfiles.OutputLock(out_dir):
        plan = sfiles.plan_outputs(files, out_dir, sources, fmt, template, overwrite)
        for path, outputs in plan:
            with console.progress(desc=path.name, unit="sample", leave=False,
                                  unit_scale=True, every=None) as bar:

                def begin(summary, bar=bar):
                    for note in summary["notices"]:
                        click.echo(f"notice: {note}", err=True)
                    bar.reset(total=summary["samples"])

                summary = sfiles.stream_file(streamer, path, paths=outputs, fmt=fmt,
                                             strict=strict, progress=bar.update, on_start=begin,
                                             overwrite=overwrite, start=start, duration=duration)
            nonfinite += summary["nonfinite_samples"]
            click.echo(f"{path} -> {', '.join(str(p) for p in outputs.values())}")
    extra = f", {nonfinite} NaN/inf samples zeroed" if nonfinite else ""
    click.echo(f"latency (DSP + model, {backend}, {hop_loop} hop loop): "
               f"{streamer.latency.line()}{extra}")


@cli.command()
@click.argument("model_dir", type=EXPORT_DIR)
@PRECISION_OPTION
@BACKEND_OPTION
@THREADS_OPTION
@HOP_LOOP_OPTION
@click.option("--warmup", type=Count(0, lim.MAX_WARMUP), default=50, show_default=True,
              help="Warm-up hops (not in the steady-state numbers).")
@click.option("--count", type=Count(1, lim.MAX_BENCH_COUNT), default=1000, show_default=True,
              help="Steady-state hops timed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the numbers.")
@user_errors
def bench(model_dir, precision, backend, threads, hop_loop, warmup, count, json_path):
    """Time one hop like TFLite's benchmark_model: init, first inference, warm-up and
    steady-state µs (model alone, and model + DSP), peak memory.

    \b
    Example:
      edgesep bench build/edge1 --precision int8 --threads 1 --count 2000 --json bench.json
      edgesep bench pretrained:speech-hearing --hop-loop c
    """
    check_report_paths({"--json": json_path}, [model_dir])
    from edgesep.runtime.bench import benchmark, format_benchmark

    results = benchmark(model_dir, precision, backend, threads, warmup, count, hop_loop)
    click.echo(format_benchmark(results))
    if json_path:
        from edgesep.files import write_json_atomic

        write_json_atomic(json_path, results)


@cli.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def info(target: str, as_json: bool) -> None:
    """Parameters, MACs, receptive field and latency of a model.

    TARGET is a packaged config name (edge, paper, ...), a TOML file, a run directory
    (its config.json), an export directory (its manifest.json, read without TensorFlow) or
    pretrained:NAME (a packaged model).

    Example: edgesep info edge
    """
    import json

    from edgesep.config import load_config, read_saved_config
    from edgesep.contract import MANIFEST_NAME, load_manifest, manifest_summary
    from edgesep.pretrained import resolve

    path = resolve(target)
    if (path / MANIFEST_NAME).exists():
        figures = manifest_summary(load_manifest(path))
    else:
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise EdgesepError(f"{path}: neither a run (config.json) nor an export "
                                   "(manifest.json) directory")
            cfg = read_saved_config(path / "config.json")
        else:
            cfg = load_config(target)
        from edgesep.models.info import model_info

        figures = model_info(cfg)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    click.echo("\n".join(info_lines(figures)))


def info_lines(figures: dict, indent: str = "") -> list[str]:
    """``edgesep info``'s lines: ``key  value`` at the top, a nested dict as indented
    ``key: value`` lines, a list as ``a, b``, ``None`` as ``-``."""

    def text(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, list | tuple):
            return ", ".join(text(v) for v in value) or "-"
        if isinstance(value, dict):  # inside a list
            return " ".join(f"{k}={text(v)}" for k, v in value.items()) or "-"
        return str(value)

    lines = []
    for key, value in figures.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}" + (":" if indent else ""))
            lines += info_lines(value, indent + "  ")
        elif indent:
            lines.append(f"{indent}{key}: {text(value)}")
        else:
            lines.append(f"{key:30s} {text(value)}")
    return lines


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Export directory to create (models + manifest.json).")
@click.option("--int8", is_flag=True, help="Full-integer int8 TFLite (int8 I/O, states too).")
@click.option("--fp16", is_flag=True, help="float16-weight TFLite.")
@click.option("--int16x8", is_flag=True, help="int16 activations / int8 weights TFLite.")
@click.option("--dynamic", is_flag=True, help="Dynamic-range (int8 weights) TFLite.")
@click.option("--onnx", is_flag=True, help="ONNX float32 (no int8 ONNX: see the README).")
@click.option("--prune", type=Amount(0, 1, min_open=True, max_open=True), default=None,
              help="Prune this fraction of the separable kernels' weights (e.g. 0.5).")
@click.option("--structured", is_flag=True,
              help="With --prune: remove that fraction of every block's channels instead.")
@click.option("--prune-steps", type=Count(0, lim.MAX_STEPS), default=100, show_default=True,
              help="Fine-tuning steps after pruning.")
@click.option("--channel-multiple", type=click.IntRange(1, 64), default=8, show_default=True,
              help="With --structured: round kept channel counts to multiples of this "
              "(int8 kernels work on tiles of 8 channels).")
@click.option("--calib-data", default=None,
              help="Calibration/check data (synthetic, mir1k:PATH, mixtures:PATH, "
              "speechnoise:PATH). Default: the run's training data.")
@click.option("--calib-frames", type=Count(1, lim.MAX_FRAMES), default=2000, show_default=True,
              help="Frames of real audio for int8 calibration (at most what a 24 h stream "
              "holds at a 4 ms hop).")
@click.option("--force", is_flag=True, help="Replace an existing export directory.")
@click.option("--sign", "sign_key", default=None, metavar="KEY.pem",
              help="Sign the manifest with this Ed25519 private key (PEM): writes manifest.sig, "
              "which stream/validate/firmware --require-signature check.")
@user_errors
def export(run_dir, out_dir, int8, fp16, int16x8, dynamic, onnx, prune, structured, prune_steps,
           channel_multiple, calib_data, calib_frames, force, sign_key):
    """Prune, quantise and export a trained run as streaming TFLite/ONNX models + manifest.

    Example: edgesep export runs/edge1 --int8 --onnx --out build/edge1
    """
    from edgesep.files import check_output_dir

    check_output_dir(out_dir, [run_dir, *data_paths(calib_data)], "export folder")
    from edgesep.contract import load_manifest
    from edgesep.export import export_run
    from edgesep.export.accuracy import accuracy_table

    path = export_run(run_dir, out_dir, int8=int8, fp16=fp16, int16x8=int16x8, dynamic=dynamic,
                      onnx=onnx, prune=prune, structured=structured, calib_data=calib_data,
                      calib_frames=calib_frames, force=force, prune_steps=prune_steps,
                      channel_multiple=channel_multiple, sign=sign_key)
    click.echo(accuracy_table(load_manifest(path)))
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("export_dir", type=EXPORT_DIR)
@click.option("--reference", required=True, type=EXPORT_DIR,
              help="The run directory (Keras model) or another export (its float32 model; "
              "pretrained:NAME for a packaged one).")
@DATA_OPTION
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="val",
              show_default=True)
@click.option("--limit", type=Count(1, lim.MAX_LIMIT), default=None,
              help="Validate on at most N clips.")
@click.option("--max-sdr-drop", type=Amount(0, lim.MAX_SDR_DROP_DB), default=0.3, show_default=True,
              help="Largest allowed SDR drop (dB) of the export against the reference.")
@click.option("--max-p99-ms", type=Amount(0, lim.MAX_P99_MS), default=None,
              help="Largest allowed per-hop p99 on the target (ms), of the separator's own CPU "
              "time like the hop-budget checks (another process's use of the CPU cannot fail "
              "it); wall-clock p99 and deadline misses are reported beside the load, not "
              "gated.")
@click.option("--target", type=click.Choice(["desktop", "rpi4", "rpi5"]), default="desktop",
              show_default=True, help="Where the export runs. On the board itself latency is "
              "timed; elsewhere a Pi target runs emulated (`edgesep target setup`): accuracy "
              "on its outputs, parity with this machine, latency estimated from counted "
              "instructions.")
@click.option("--parity-lsb", type=Count(0, lim.MAX_INT8_LSB), default=0, show_default=True,
              help="Largest int8 mask difference allowed between an emulated target and this "
              "machine.")
@click.option("--hop-budget", type=Amount(0, lim.MAX_HOP_BUDGET, min_open=True), default=None,
              help="Share of the hop the separator's own CPU time may use (p99 per hop and "
              "real-time factor), overriding the target's (e.g. 0.8 on a slow CI runner; "
              "above 1 accepts slower than real time).")
@click.option("--no-latency", is_flag=True,
              help="Gate accuracy and streaming only (e.g. for a target this machine is not).")
@PRECISION_OPTION
@BACKEND_OPTION
@HOP_LOOP_OPTION
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON report.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False),
              help="Write a JUnit XML report (one test case per check).")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False),
              help="Write a Markdown report.")
@REQUIRE_SIGNATURE_OPTION
@user_errors
def validate(export_dir, reference, data_spec, split, limit, max_sdr_drop, max_p99_ms, target,
             parity_lsb, hop_budget, no_latency, precision, backend, hop_loop, json_path,
             junit_path, md_path, public_key):
    """Gate an export on accuracy drop and latency: exit 0 pass, 1 regression, 2 usage error,
    3 internal error.

    \b
    Example: edgesep validate build/edge1 --reference runs/edge1 --data mir1k:/data/MIR-1K \\
                 --max-sdr-drop 0.3 --target rpi5 --json report.json --junit junit.xml
    """
    require_signature(export_dir, public_key)
    check_report_paths({"--json": json_path, "--junit": junit_path, "--markdown": md_path},
                       [export_dir, reference, *data_paths(data_spec)])
    from edgesep import validate as gate
    from edgesep.contract import load_manifest
    from edgesep.data import load_clips

    if data_spec is not None and not data_spec.strip():
        raise EdgesepError("--data is empty: give synthetic, mir1k:PATH, mixtures:PATH or "
                          "speechnoise:PATH")
    manifest = load_manifest(export_dir)
    gate.check_reference(reference, manifest)  # before the clips are loaded
    spec = data_spec or manifest.config.get("train", {}).get("data", "synthetic")
    clips = load_clips(spec, split, sample_rate=manifest.stft.sample_rate, limit=limit)
    click.echo(f"validating on {len(clips)} {split} clips from {spec}", err=True)
    report = gate.validate(export_dir, reference, clips, target=target, precision=precision,
                           backend=backend, max_sdr_drop=max_sdr_drop, max_p99_ms=max_p99_ms,
                           hop_budget=hop_budget, latency=not no_latency,
                           parity_lsb=parity_lsb, hop_loop=hop_loop,
                           progress=lambda msg: click.echo(f"validate: {msg}", err=True))
    click.echo(gate.markdown(report))
    if json_path:
        gate.write_json(report, json_path)
    if junit_path:
        gate.write_junit(report, junit_path)
    if md_path:
        gate.write_markdown(report, md_path)
    if not report.passed:
        failed = ", ".join(c.name for c in report.checks if not c.passed)
        click.echo(f"FAIL: {failed}", err=True)
        raise SystemExit(1)


@cli.command()
@click.option("--out", "out_dir", default="runs/demo", show_default=True,
              type=click.Path(file_okay=False), help="Directory for every stage's outputs.")
@click.option("--data", "data_spec", default=None,
              help="synthetic (built-in), mir1k:PATH, mixtures:PATH or speechnoise:PATH. "
              "Default: synthetic, or with --init the data the model was trained on.")
@click.option("--config", "config_name", default=None,
              help="Streaming config (name or TOML path). Default: edge, or with --init the "
              "model's own.")
@click.option("--init", "init", default=None, metavar="pretrained:NAME",
              help="Start from a packaged model's weights (edgesep pretrained list) instead of "
              "random ones.")
@click.option("--steps", type=Count(0, lim.MAX_STEPS), default=None,
              help="Training steps (default: a few minutes on two CPU cores; with --init 0: "
              "the model as packaged).")
@click.option("--prune", type=Amount(lim.MIN_PRUNE, lim.MAX_PRUNE), default=0.3, show_default=True,
              help="Fraction of channels removed in the pruned export (kept counts rounded to "
              "multiples of 8).")
@click.option("--prune-steps", type=Count(0, lim.MAX_STEPS), default=50, show_default=True,
              help="Fine-tuning steps of the pruned export, distilled from the unpruned model "
              "(the recorded speech-edge prune took 1000).")
@user_errors
def pipeline(out_dir, data_spec, config_name, init, steps, prune, prune_steps):
    """The whole chain: data, train, prune/quantize/export, streaming check, validate, report.

    Re-running skips stages whose outputs are intact and resumes an interrupted training.
    The last line is the verdict on the validation gates and the report's path; exit 0 when
    every gate passed, 1 when one failed (the report says why), 2 for a usage error or a
    failed stage.

    Example: edgesep pipeline --out runs/demo
             edgesep pipeline --init pretrained:speech-edge --out runs/speech
    """
    from edgesep.files import check_output_dir

    check_output_dir(out_dir, [*data_paths(data_spec), *config_paths(config_name)])
    from edgesep.pipeline import Pipeline

    pipe = Pipeline(out_dir, data=data_spec, config=config_name, steps=steps,
                    prune=prune, prune_steps=prune_steps, init=init)
    report = pipe.run()
    click.echo(f"report: {report} (and {report.with_suffix('.md')})")
    click.echo(pipe.verdict.line(report))
    if not pipe.verdict.passed:
        raise SystemExit(1)


@cli.command()
@click.argument("export_dir", type=EXPORT_DIR)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to create with the C sources, contract header and README.")
@click.option("--precision", default="int8", show_default=True,
              help="TFLite artefact of the manifest to convert (int8, float32, int16x8, ...).")
@click.option("--name", "prefix", default="edgesep", show_default=True,
              help="Prefix of the file names, C functions and macros (a C identifier).")
@click.option("--data", "data_spec", default="synthetic", show_default=True,
              help="Audio for the TFLite Micro vs ai-edge-litert check: synthetic, "
              "mir1k:PATH, mixtures:PATH or speechnoise:PATH.")
@click.option("--frames", type=Count(0, lim.MAX_FRAMES), default=500, show_default=True,
              help="Frames of that audio run through both interpreters (0: no check; at most "
              "what a 24 h stream holds at a 4 ms hop).")
@click.option("--force", is_flag=True, help="Replace an existing --out folder.")
@click.option("--target", "targets", multiple=True,
              type=click.Choice(["host", "cortex-m4f", "cortex-m55"]),
              help="Also build the folder into a whole program for this target (TFLite Micro "
              "built from $EDGESEP_VENDOR, default ../shared/vendor) and run it over --data: "
              "natively, or under qemu-arm for the Cortex-M cores; compared with LiteRT and "
              "the Python streamer, flash and RAM measured, instructions per hop counted "
              "after `edgesep target setup --counter`. Repeatable.")
@REQUIRE_SIGNATURE_OPTION
@user_errors
def firmware(export_dir, out_dir, precision, prefix, data_spec, frames, force, targets,
             public_key):
    """Turn an export into a C99 folder a device build compiles: model array, frame contract,
    reference framer, TensorFlow Lite Micro glue, README with the memory table.

    Needs the [firmware] extra (tflite-micro); arm-none-eabi-gcc on the PATH adds the
    Cortex-M4F code size.

    Example: edgesep firmware build/edge1 --out build/edge1-fw --name edge1
    """
    require_signature(export_dir, public_key)
    from edgesep.files import check_output_dir

    check_output_dir(out_dir, [export_dir, *data_paths(data_spec)], "firmware folder")
    from edgesep.firmware_bridge.tflm_library import check_tools, get_target, vendor_archive

    for name in targets:  # every tool and the sources there before any work
        check_tools(get_target(name))
        vendor_archive()
    from edgesep.firmware import build_firmware
    from edgesep.firmware_bridge.emit import memory_table

    result = build_firmware(export_dir, out_dir, precision=precision, name=prefix,
                            force=force, data=data_spec, frames=frames)
    s = result.summary
    click.echo(f"ops ({s['nodes']} nodes): {', '.join(s['ops'])}")
    parity = s["parity"]
    if parity:
        lite, ref = parity["litert"], parity["litert_reference"]
        click.echo(f"TFLite Micro vs ai-edge-litert over {lite['frames']} frames of "
                   f"{parity['data']}: {lite['mask_mismatches']}/{lite['mask_elements']} mask "
                   f"values differ (max {lite['mask_max_diff']:g} LSB); vs its reference "
                   f"kernels: {'bit-exact' if ref['bit_exact'] else 'differs'}")
    for what, nb_bytes, _how in memory_table(result.spec):
        click.echo(f"{what:40s} {nb_bytes:>12s}")
    click.echo(f"wrote {result.out_dir}")
    from edgesep.firmware import DEFAULT_PARITY_FRAMES, run_on_target, target_run_lines

    for name in targets:
        run = run_on_target(result, export_dir, name, precision=precision, data=data_spec,
                            hops=frames or DEFAULT_PARITY_FRAMES,
                            say=lambda message: click.echo(message, err=True))
        for line in target_run_lines(run):
            click.echo(line)


@cli.group()
def pretrained() -> None:
    """Models packaged with edgesep; use one as pretrained:NAME wherever an export folder goes.

    \b
    Example: edgesep pretrained list
             edgesep stream pretrained:speech-edge noisy.wav -o out/
    """


@pretrained.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@user_errors
def pretrained_list(as_json: bool) -> None:
    """The packaged models: what each separates, its framing, files and validation SI-SDRi
    (its MODEL_CARD.md has the rest)."""
    import json

    from edgesep.pretrained import describe

    rows = describe()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        files = ", ".join(f"{k} {b / 1024:.0f} KiB" for k, b in row["artefacts"].items())
        scores = ", ".join(f"{k} {v:.2f} dB" for k, v in row["val_si_sdri_db"].items())
        click.echo(f"pretrained:{row['name']}  {row['description']}\n"
                   f"  {row['sample_rate']} Hz, {row['latency_ms']:g} ms algorithmic latency, "
                   f"sources {', '.join(row['sources'])}; {files}\n"
                   f"  validation SI-SDRi {scores}\n  {row['path']}")


@cli.group()
def target() -> None:
    """Raspberry Pi-class targets run under emulation here (qemu-user, aarch64 kernels).

    \b
    Example: edgesep target setup --counter && edgesep validate build/edge1 \\
                 --reference runs/edge1 --target rpi5
    """


@target.command("setup")
@click.option("--counter", is_flag=True,
              help="Also build qemu with the instruction-count plugin (minutes; needs Debian's "
              "libglib2.0-dev flex bison ninja-build pkg-config python3-venv), for latency "
              "estimates on the targets.")
@click.option("--tflite-runtime", is_flag=True,
              help="Also the aarch64 wheels of tflite-runtime with numpy < 2 (for "
              "--backend tflite-runtime on a target).")
@user_errors
def target_setup(counter: bool, tflite_runtime: bool) -> None:
    """Provision qemu-user >= 8, an arm64 Python and the runtime's aarch64 wheels into
    $EDGESEP_TARGET_CACHE (default ~/.cache/edgesep/targets); resumes after an interruption.

    \b
    Example: edgesep target setup --counter
    """
    from edgesep.targets.provision import setup

    setup(counter=counter, tflite_runtime=tflite_runtime,
          say=lambda message: click.echo(message, err=True))


@target.command("list")
@user_errors
def target_list() -> None:
    """The targets, their CPUs and how each is run here."""
    from edgesep.targets import TARGETS, check_here
    from edgesep.targets.provision import toolchain

    tools = toolchain(require=False)
    missing = tools.missing()
    for profile in TARGETS.values():
        if check_here(profile) is None:
            how = "this machine"
        elif profile.emulated:
            how = (f"emulated (qemu -cpu {profile.qemu_cpu}); "
                   + ("ready" if not missing else "run `edgesep target setup`")
                   + ("; instruction counter ready" if tools.has_counter else ""))
        else:
            how = "not available here"
        click.echo(f"{profile.describe()}: {how}")


#: Signals that stop a command the way Ctrl-C does (see :func:`stop_on_signals`).
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class Stopped(SystemExit):
    """A stop signal arrived: exit ``128 + signum`` (143 for SIGTERM, 129 for SIGHUP), as a
    shell reports a process the signal killed."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Stopped` in the main thread, so every ``finally``
    and ``with`` block runs on the way out: temporary files, output locks and half-built
    folders are removed. Further stop signals are ignored during that clean-up; a signal the
    parent set to be ignored (``nohup``) stays ignored."""
    import signal

    def stop(signum: int, frame) -> None:
        for name in STOP_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise Stopped(signum)

    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)


def main() -> None:
    """Run the CLI; an unexpected exception is a bug: its traceback, then exit 3 (so CI tells
    it from a regression, 1, and a usage error, 2). SIGTERM and SIGHUP stop it cleanly (see
    :func:`stop_on_signals`)."""
    stop_on_signals()
    try:
        cli(prog_name="edgesep")
    except Stopped as exc:
        import signal

        with contextlib.suppress(OSError, ValueError):  # stderr may be gone with the terminal
            click.echo(f"edgesep: stopped by {signal.Signals(exc.signum).name}", err=True)
        raise
    except Exception:  # noqa: BLE001 - the last line of defence
        import traceback

        traceback.print_exc()
        click.echo("Error: internal error (a bug in edgesep: please report the traceback above)",
                   err=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
