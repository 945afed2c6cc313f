"""A model's cost and delay in one dict: what `edgesep info` prints and manifests record.
Computed from the config alone (:mod:`edgesep.models.cost`): no TensorFlow."""

from __future__ import annotations

from edgesep.models.cost import model_cost


def model_info(cfg) -> dict:
    """Parameters, multiply-accumulates, receptive field and algorithmic latency of a config.

    The algorithmic latency is the synthesis window's length (``n_fft`` for a symmetric
    window, ``synthesis_length`` for the asymmetric pair): see :mod:`edgesep.dsp`.

    ``macs_per_frame`` is set for a causal config (streaming cost of one hop),
    ``macs_per_patch`` for a non-causal one (one ``train.patch_frames`` patch).
    """
    mc = cfg.model
    cost = model_cost(cfg)
    rf, macs = cost.receptive_field_frames, cost.macs
    hop_ms = 1000.0 * cfg.stft.hop / cfg.stft.sample_rate
    info = {
        "config": cfg.name,
        "kind": mc.kind,
        "causal": mc.causal,
        "stacks": mc.stacks,
        "nb_model_bins": cfg.nb_model_bins,
        "parameters": cost.parameters,
        "macs_per_frame": macs if mc.causal else None,
        "macs_per_patch": None if mc.causal else macs,
        "patch_frames": None if mc.causal else cfg.train.patch_frames,
        "receptive_field_frames": rf,
        # n_fft samples for the first frame, then one hop per further frame
        "receptive_field_ms": round(
            1000.0 * cfg.stft.n_fft / cfg.stft.sample_rate + (rf - 1) * hop_ms, 3
        ),
        "hop_ms": hop_ms,
        "window": cfg.stft.window,
        # the analysis window spans the frame; the synthesis window its newest samples
        "analysis_window_samples": cfg.stft.n_fft,
        "synthesis_window_samples": cfg.stft.synthesis_span,
        "output_delay_samples": cfg.stft.output_delay_samples,
        "algorithmic_latency_samples": cfg.stft.latency_samples,
        "algorithmic_latency_ms": cfg.stft.latency_ms,
    }
    if mc.causal:
        info["macs_per_second"] = round(macs * cfg.stft.sample_rate / cfg.stft.hop)
    return info
