"""Upper and lower bounds of what the command line and the runtime accept, in one place, so a
mistyped count is refused before any work instead of running for days or crashing."""

from __future__ import annotations

#: Sample rates edgesep accepts on input (anything else is almost certainly a mistake).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192000
#: Interpreter threads (``--threads``): more only oversubscribes (100000 crashed LiteRT).
MAX_THREADS = 64
#: Steady-state hops ``edgesep bench`` times (``--count``) and warm-up hops (``--warmup``).
MAX_BENCH_COUNT = 1_000_000
MAX_WARMUP = 100_000
#: Model frames (``--frames``, ``--calib-frames``): what a 24 h stream holds at the smallest
#: hop of the packaged configs (64 samples at 16 kHz, 4 ms).
MAX_FRAMES = 24 * 3600 * 16000 // 64
#: Training and fine-tuning steps (``--steps``, ``--prune-steps``).
MAX_STEPS = 10_000_000
#: Clips or files a command reads (``--limit``).
MAX_LIMIT = 1_000_000
#: Largest int8 difference between two mask values (``--parity-lsb``).
MAX_INT8_LSB = 255

# Amounts (float options): each has a floor and a ceiling too; NaN and inf are refused.
#: Seconds of audio an option names (``--start``, ``--duration``, ``--seconds``): a week.
MAX_SECONDS = 7 * 24 * 3600.0
#: Training time (``train --max-minutes``): 30 days.
MAX_MINUTES = 30 * 24 * 60.0
#: Size of a data pack (``pack --max-mb``): 100 GB.
MAX_PACK_MB = 100_000.0
#: An SDR drop allowed by ``validate --max-sdr-drop`` (dB): 100 dB accepts any model already.
MAX_SDR_DROP_DB = 100.0
#: A per-hop p99 allowed by ``validate --max-p99-ms``: 10 s for one hop is no gate.
MAX_P99_MS = 10_000.0
#: Share of the hop the separator may use (``validate --hop-budget``): 100 times real time.
MAX_HOP_BUDGET = 100.0
#: Fraction of channels pruning keeps at least and removes at most (``pipeline --prune``).
MIN_PRUNE, MAX_PRUNE = 0.05, 0.95
