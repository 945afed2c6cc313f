"""The C framer: one streaming STFT -> model -> overlap-add loop in C99, for a device and for
this machine.

Layers, bottom up: :mod:`edgesep.framer` (this package) imports neither
:mod:`edgesep.runtime` nor :mod:`edgesep.firmware_bridge`; both of those build on it and never
import each other; :mod:`edgesep.firmware` (the ``edgesep firmware`` command) is the one place
that uses the two together (``tests/test_layers.py`` pins it).

- :mod:`~edgesep.framer.sources`: the C text (frame contract header from the manifest,
  framer/FFT/host templates in ``templates/``);
- :mod:`~edgesep.framer.toolchain`: the compilers (strict host gcc, Cortex-M4F sizes);
- :mod:`~edgesep.framer.cache`: the private, hash-checked cache of built host libraries;
- :mod:`~edgesep.framer.host`: a built framer driven through ctypes.

The flatbuffer facts the contract header needs come from :mod:`edgesep.tflite_model`.
"""
