"""The Python API (``edgesep.Separator``) on the session's real export (conftest
``tiny_export``): the three-line form equals the streamer, another rate is resampled with
soxr (or refused with ``strict``), the streaming form equals the whole-file form, and
``from edgesep import Separator`` imports no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soxr

from edgesep.errors import EdgesepError


def test_import_separator_without_tensorflow():
    code = ("import sys\nfrom edgesep import Separator, SeparatorStream\nimport edgesep\n"
            "assert edgesep.Separator is Separator\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    import edgesep

    with pytest.raises(AttributeError):
        edgesep.separate  # noqa: B018 - not an API name


@pytest.fixture(scope="module")
def speech(data_spec) -> np.ndarray:
    from edgesep.data import load_clips

    return load_clips(data_spec, "test", sample_rate=16000, limit=1)[0].mixture[: 3 * 16000]


@pytest.mark.slow
def test_three_lines_equal_the_streamer(tiny_export, speech):
    import edgesep
    from edgesep.runtime import open_streamer, separate_file

    sep = edgesep.Separator.from_export(tiny_export, precision="int8")
    out = sep.separate(speech, 16000)
    assert sep.precision == "int8" and sep.sources == ("vocals", "accompaniment")
    assert sep.sample_rate == 16000 and sep.latency_ms == 16.0  # 256-sample window
    want = separate_file(open_streamer(tiny_export, "int8"), speech)
    for src in sep.sources:
        assert out[src].dtype == np.float32 and out[src].shape == speech.shape
        np.testing.assert_array_equal(out[src], want[src])
    # stereo: channels averaged
    stereo = np.stack([speech, speech], axis=1)
    np.testing.assert_array_equal(sep.separate(stereo, 16000)["vocals"], out["vocals"])


@pytest.mark.slow
def test_other_rate_is_resampled_with_soxr_or_refused(tiny_export, speech):
    from edgesep import Separator
    from edgesep.runtime import open_streamer, separate_file

    audio44 = soxr.resample(speech, 16000, 44100).astype(np.float32)
    sep = Separator.from_export(tiny_export, precision="float32")
    out = sep.separate(audio44, 44100)
    inner = separate_file(open_streamer(tiny_export, "float32"),
                          soxr.resample(audio44, 44100, 16000).astype(np.float32))
    for src in sep.sources:
        assert out[src].shape == audio44.shape  # the caller's rate and length
        want = soxr.resample(inner[src], 16000, 44100)[: len(audio44)]
        np.testing.assert_allclose(out[src], want, atol=1e-6)
    # not processed as if it were 16 kHz: a 44.1 kHz array taken at 16 kHz gives other output
    wrong = sep.separate(audio44, 16000)["vocals"]
    assert np.max(np.abs(wrong - out["vocals"])) > 1e-3
    with pytest.raises(EdgesepError, match="44100 Hz, the model runs at 16000 Hz.*strict"):
        sep.separate(audio44, 44100, strict=True)
    for bad, match in ((np.zeros(0), "not empty"), (np.full(10, np.nan), "NaN"),
                       (np.zeros((2, 2, 2)), "shape")):
        with pytest.raises(EdgesepError, match=match):
            sep.separate(bad, 16000)
    with pytest.raises(EdgesepError, match="sample_rate"):
        sep.separate(speech, 1000)
    with pytest.raises(EdgesepError, match="sample_rate"):
        sep.separate(speech, "fast")


@pytest.mark.slow
def test_stream_form_equals_the_whole_file(tiny_export, speech):
    from edgesep import Separator

    sep = Separator.from_export(tiny_export)
    whole = sep.separate(speech, sep.sample_rate)
    stream = sep.stream()
    assert stream.hop == 64 and stream.delay == 192
    nb = len(speech) // stream.hop
    pieces = [stream.process(speech[i * stream.hop : (i + 1) * stream.hop]) for i in range(nb)]
    tail = stream.flush()
    for src in sep.sources:
        got = np.concatenate([p[src] for p in pieces] + [tail[src]])[stream.delay :]
        n = nb * stream.hop
        # the whole-file form zero-pads the end the same way: equal up to the last hop
        np.testing.assert_allclose(got[: n - stream.hop], whole[src][: n - stream.hop],
                                   atol=1e-6)
    assert stream.latency.count == nb + len(tail["vocals"]) // stream.hop
    # each stream has its own state: a second stream does not disturb the first
    other = sep.stream()
    a = stream.process(speech[: stream.hop])["vocals"]
    other.process(speech[: stream.hop])
    stream.reset()
    assert np.isfinite(a).all()
    with pytest.raises(EdgesepError, match="chunk of 64 samples"):
        stream.process(speech[:10])
