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
