"""Building blocks: a convolution block that owns its time padding (causal or 'same'),
a pooled ASPP branch, and :class:`GraphBuilder`, which wires blocks into the offline graph or
the one-frame streaming graph (:class:`~edgesep.models.graph.Mode`) from the very same layer
objects.

Tensors are ``[shape=(nb_batch, nb_frames, nb_bins, nb_channels)]`` throughout: time first, as
in the STFT, frequency second.

Streaming (kws_streaming's ``Stream`` idea): a causal :class:`ConvBlock` runs its cell with
'valid' padding in time. In ``Mode.OFFLINE`` it zero-pads ``(kernel_t - 1) * dilation_t``
frames at the front; in ``Mode.STREAM`` it is called on one new frame plus its state (the last
``state_frames`` input frames), convolves their concatenation and returns the new state as
well. Both modes run the same weights on the same numbers, so the outputs agree to float
rounding. (One layer object serves both graphs, so a block tells the modes apart by its call:
``block(x)`` offline, ``block([frame, state])`` streaming.)
"""

from __future__ import annotations

import keras
from keras import ops

from edgesep.contract import state_input_name
from edgesep.errors import EdgesepError
from edgesep.models.graph import Mode

#: How a depthwise convolution runs: ``"native"`` (the backend's depthwise op: TensorFlow's
#: kernel, and the DEPTHWISE_CONV_2D of every export) or ``"shifts"`` (a sum of shifted
#: multiply-adds, one per kernel tap: the same numbers, and far faster under XLA on CPU, whose
#: depthwise convolution is slow). ``"auto"``: shifts on JAX, native on TensorFlow.
DEPTHWISE_FORMS = ("auto", "native", "shifts")
depthwise_form = "auto"


def set_depthwise_form(form: str) -> None:
    """Choose :data:`depthwise_form` for layers called from now on (benchmarks compare them)."""
    global depthwise_form
    if form not in DEPTHWISE_FORMS:
        raise EdgesepError(f"depthwise form must be one of {', '.join(DEPTHWISE_FORMS)}, "
                           f"got {form!r}")
    depthwise_form = form


def _use_shifts() -> bool:
    if depthwise_form == "auto":
        return keras.backend.backend() == "jax"
    return depthwise_form == "shifts"


def shifted_depthwise(x, kernel, strides=(1, 1), dilation_rate=(1, 1)):
    """'valid' depthwise convolution (channel multiplier 1) of ``x [shape=(nb_batch, nb_frames,
    nb_bins, nb_channels)]`` by ``kernel [shape=(kernel_t, kernel_f, nb_channels, 1)]`` as a sum
    of strided slices times one kernel tap each: ``DepthwiseConv2D``'s numbers, in ops every
    backend runs fast."""
    kt, kf = kernel.shape[0], kernel.shape[1]
    (st, sf), (dt, df) = strides, dilation_rate
    y = None
    for i in range(kt):
        for j in range(kf):
            # tap (i, j) sees the input from i*d on, up to (kernel - 1 - i)*d before its end:
            # negative ends, so no length arithmetic (the time axis may be unknown)
            end_t, end_f = (kt - 1 - i) * dt, (kf - 1 - j) * df
            tap = x[:, i * dt : -end_t or None : st, j * df : -end_f or None : sf, :]
            tap = tap * kernel[i, j, :, 0]
            y = tap if y is None else y + tap
    return y


def same_padding(size, kernel: int, dilation: int, stride: int):
    """TensorFlow's 'same' padding ``(before, after)`` for one axis (``size`` may be a tensor)."""
    extent = (kernel - 1) * dilation + 1
    if isinstance(size, int):
        out = -(-size // stride)
        total = max((out - 1) * stride + extent - size, 0)
    else:
        out = (size + stride - 1) // stride
        total = ops.maximum((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="edgesep")
class ConvBlock(keras.layers.Layer):
    """Convolution cell (+ optional BatchNorm, activation) that owns its time padding.

    Args:
        filters: output channels.
        kernel_size: ``(kernel_t, kernel_f)``.
        strides: ``(stride_t, stride_f)``; a causal block takes ``stride_t == 1``.
        dilation_rate: ``(dilation_t, dilation_f)``.
        separable: depthwise-separable cell (``DepthwiseConv2D`` + 1x1 ``Conv2D``).
        causal: pad only past frames in time (streamable); otherwise 'same' in time.
        norm: ``"batch"`` (per-channel, folds into an affine at inference) or ``"none"``.
        activation: Keras activation name applied last, or ``None``.

    Frequency is always zero-padded 'same', so ``nb_bins_out = ceil(nb_bins / stride_f)``.

    ``block(x)`` -> ``y``; ``block([frame, s])`` -> ``y`` and ``block.next_state(frame, s)``
    the state of the next call, with ``s``
    ``[shape=(nb_batch, state_frames, nb_bins, nb_channels_in)]`` (streaming, causal only).
    """

    def __init__(
        self,
        filters: int,
        kernel_size=(3, 3),
        strides=(1, 1),
        dilation_rate=(1, 1),
        separable: bool = True,
        causal: bool = True,
        norm: str = "batch",
        activation: str | None = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        self.dilation_rate = tuple(int(d) for d in dilation_rate)
        self.separable = bool(separable)
        self.causal = bool(causal)
        self.norm = norm
        self.activation = activation
        if causal and self.strides[0] != 1:
            raise EdgesepError("a causal block cannot stride along time (every frame once)")
        if norm not in ("batch", "none"):
            raise EdgesepError(f"norm must be 'batch' or 'none', got {norm!r}")
        # A separable cell is DepthwiseConv2D + 1x1 Conv2D. TensorFlow's CPU depthwise kernel
        # takes equal strides only, so with unequal ones (1, 2) the depthwise runs at stride 1
        # and its output is decimated before the pointwise convolution.
        self.decimate = (1, 1)
        self.depthwise = None
        if self.separable and self.kernel_size != (1, 1):
            equal = self.strides[0] == self.strides[1]
            self.decimate = (1, 1) if equal else self.strides
            self.depthwise = keras.layers.DepthwiseConv2D(
                self.kernel_size,
                strides=self.strides if equal else (1, 1),
                dilation_rate=self.dilation_rate,
                padding="valid",
                use_bias=False,
                name="depthwise",
            )
            cell_args = dict(kernel_size=(1, 1))
        else:
            cell_args = dict(
                kernel_size=self.kernel_size, strides=self.strides, dilation_rate=self.dilation_rate
            )
        self.cell = keras.layers.Conv2D(
            self.filters, padding="valid", use_bias=norm == "none", name="cell", **cell_args
        )
        # momentum 0.9 (Keras: 0.99): the running statistics must settle within the few
        # hundred steps of a short CPU training, or inference masks stay near 0.5
        self.bn = (keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn")
                   if norm == "batch" else None)
        self.act = keras.layers.Activation(activation) if activation else None

    @property
    def state_frames(self) -> int:
        """Past input frames a streaming call needs: ``(kernel_t - 1) * dilation_t``."""
        return (self.kernel_size[0] - 1) * self.dilation_rate[0]

    def _pad(self, x, pad_time):
        fb, fa = same_padding(
            x.shape[2], self.kernel_size[1], self.dilation_rate[1], self.strides[1]
        )
        return ops.pad(x, [[0, 0], list(pad_time), [fb, fa], [0, 0]])

    def _convolve(self, x, one_frame: bool = False):
        if self.depthwise is not None:
            if one_frame and self.decimate != (1, 1) and self.dilation_rate == (1, 1):
                # One output frame (streaming): striding time like frequency gives that same
                # frame, so the depthwise strides directly. Half the MACs, and no stride-2
                # STRIDED_SLICE, which TFLite's XNNPACK delegate does not take.
                stride = self.decimate[1]
                if not self.depthwise.built:  # a streaming graph built on new layers
                    self.depthwise.build((None, None, *x.shape[2:]))
                x = ops.depthwise_conv(x, self.depthwise.kernel, strides=(stride, stride),
                                       padding="valid")
                return self.cell(x)
            if _use_shifts():
                if not self.depthwise.built:  # time may be a traced, symbolic dimension
                    self.depthwise.build((None, None, *x.shape[2:]))
                x = shifted_depthwise(x, self.depthwise.kernel, self.depthwise.strides,
                                      self.depthwise.dilation_rate)
            else:
                x = self.depthwise(x)
            if self.decimate != (1, 1):
                x = x[:, :: self.decimate[0], :: self.decimate[1]]
        return self.cell(x)

    def _finish(self, y, training):
        if self.bn is not None:
            y = self.bn(y, training=training)
        return self.act(y) if self.act is not None else y

    def call(self, inputs, training=None):
        state = None
        if isinstance(inputs, (list, tuple)):
            inputs, state = inputs
        if state is None:
            if self.causal:
                pad_time = (self.state_frames, 0)
            else:
                size = inputs.shape[1]
                if size is None and self.strides[0] > 1:
                    size = ops.shape(inputs)[1]
                elif size is None:
                    size = 0  # stride 1: the padding does not depend on the length
                pad_time = same_padding(
                    size, self.kernel_size[0], self.dilation_rate[0], self.strides[0]
                )
            return self._finish(self._convolve(self._pad(inputs, pad_time)), training)
        if not self.causal:
            raise EdgesepError(f"{self.name}: a non-causal block cannot stream")
        x = ops.concatenate([state, inputs], axis=1)
        one_frame = inputs.shape[1] == 1
        return self._finish(self._convolve(self._pad(x, (0, 0)), one_frame), training)

    def next_state(self, frame, state):
        """The streaming state after ``frame``: the last :attr:`state_frames` frames of
        ``state`` followed by ``frame`` (ops on the graph's tensors, outside the layer)."""
        return ops.concatenate([state, frame], axis=1)[:, -self.state_frames :]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "dilation_rate": self.dilation_rate,
            "separable": self.separable,
            "causal": self.causal,
            "norm": self.norm,
            "activation": self.activation,
        }


#: The most inputs of a CONCATENATION that TFLite's XNNPACK delegate takes (measured: 5
#: delegated, 6 not).
XNNPACK_MAX_CONCAT = 5


def concat_tree(xs: list, axis: int = -1):
    """``concatenate(xs, axis)`` as a tree of concatenations of at most
    :data:`XNNPACK_MAX_CONCAT` inputs (the same numbers, and the delegate runs every one)."""
    while len(xs) > XNNPACK_MAX_CONCAT:
        xs = [xs[i : i + XNNPACK_MAX_CONCAT] for i in range(0, len(xs), XNNPACK_MAX_CONCAT)]
        xs = [ops.concatenate(g, axis) if len(g) > 1 else g[0] for g in xs]
    return ops.concatenate(xs, axis)


def repeat(x, axis: int, factor: int):
    """Nearest-neighbour upsampling of ``[shape=(nb_batch, nb_frames, nb_bins, nb_channels)]``
    by ``factor`` along ``axis`` 1 (time) or 2 (frequency), as concatenations and reshapes:
    ``[f, c] -> [f, (c, c)] -> [2f, c]`` per factor 2 (3, 5 likewise, larger primes in one
    step). The same copies as ``UpSampling2D``/``resize_images``, in ops that XLA
    differentiates (it has no ResizeNearestNeighborGrad) and TFLite's XNNPACK delegate runs
    (it does not take RESIZE_NEAREST_NEIGHBOR: every op it leaves out splits the streaming
    graph into another delegated partition)."""
    for p in _prime_factors(factor):
        dims = [-1] + [x.shape[i] if x.shape[i] is not None else ops.shape(x)[i]
                       for i in (1, 2, 3)]
        dims[axis] = dims[axis] * p
        x = ops.reshape(concat_tree([x] * p, axis=axis + 1), dims)
    return x


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@keras.saving.register_keras_serializable(package="edgesep")
class PooledBranch(keras.layers.Layer):
    """ASPP image-pooling branch: average, 1x1 block, broadcast back.

    ``axes="freq"`` averages each frame over frequency only (causal, per frame);
    ``axes="global"`` averages over time and frequency (the paper's non-causal variant).
    ``[shape=(nb_batch, nb_frames, nb_bins, nb_channels)]`` -> same with ``filters`` channels.
    """

    def __init__(self, filters: int, axes: str = "freq", norm: str = "batch", **kwargs):
        super().__init__(**kwargs)
        if axes not in ("freq", "global"):
            raise EdgesepError(f"pooling axes must be 'freq' or 'global', got {axes!r}")
        self.filters, self.axes, self.norm = int(filters), axes, norm
        self.block = ConvBlock(filters, (1, 1), norm=norm, name="proj")

    def call(self, inputs, training=None):
        axis = [2] if self.axes == "freq" else [1, 2]
        pooled = self.block(ops.mean(inputs, axis=axis, keepdims=True), training=training)
        if inputs.shape[2] is not None and (self.axes == "freq" or inputs.shape[1] is not None):
            # Broadcast back by nearest-neighbour upsampling (:func:`repeat`, as the
            # decoders upsample): a copy, so the same numbers and no weights. Not by adding
            # ``zeros_like(inputs)`` (the converter gives that zero constant a quantisation
            # scale of 0, and TFLite's int16x8 ADD then aborts in Prepare), and not by TILE,
            # which TensorFlow Lite Micro has no kernel for.
            if self.axes == "global":
                pooled = repeat(pooled, 1, int(inputs.shape[1]))
            return repeat(pooled, 2, int(inputs.shape[2]))
        return pooled + ops.zeros_like(inputs[..., :1])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "axes": self.axes,
                "norm": self.norm}


@keras.saving.register_keras_serializable(package="edgesep")
class NearestUpsample(keras.layers.Layer):
    """``UpSampling2D(size)`` (nearest neighbour, ``size = (time, frequency)``) by
    :func:`repeat`: the same numbers, and XLA and XNNPACK take it."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)

    def call(self, inputs):
        return repeat(repeat(inputs, 2, self.size[1]), 1, self.size[0])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class GraphBuilder:
    """Keras primitives for :func:`edgesep.models.graph.network`: wires named layers into a
    graph in a :class:`~edgesep.models.graph.Mode`, creating or reusing layers.

    With ``model=None`` it creates each layer on first use; with a built offline ``model`` it
    takes the layer of the same name from it (so a streaming graph shares its weights).
    In ``Mode.STREAM`` each causal block with a time kernel gets a state input (created here,
    in call order, named by :func:`edgesep.contract.state_input_name`) and returns the next
    state (``state_outputs``, same order).
    """

    def __init__(self, model=None, mode: Mode = Mode.OFFLINE, batch_size: int | None = None):
        self.model = model
        self.mode = Mode(mode)
        self.batch_size = batch_size
        self.state_inputs: list = []
        self.state_outputs: list = []
        self.state_names: list = []

    def layer(self, name: str, factory):
        if self.model is not None:
            return self.model.get_layer(name)
        return factory(name)

    def conv(self, name: str, x, filters: int, kernel_size, **kwargs):
        """Apply the :class:`ConvBlock` ``name``; in ``Mode.STREAM`` thread its state."""
        block = self.layer(name, lambda n: ConvBlock(filters, kernel_size, name=n, **kwargs))
        if self.mode is Mode.OFFLINE or block.state_frames == 0:
            return block(x)
        i = len(self.state_inputs)
        state = keras.Input(
            shape=(block.state_frames, x.shape[2], x.shape[3]),
            batch_size=self.batch_size,
            name=state_input_name(i, name),
        )
        y, new_state = block([x, state]), block.next_state(x, state)
        self.state_inputs.append(state)
        self.state_outputs.append(new_state)
        self.state_names.append(state_input_name(i, name))
        return y

    def pool(self, name: str, x, filters: int, axes: str, norm: str):
        """Apply the :class:`PooledBranch` ``name`` (stateless in both modes)."""
        return self.layer(name, lambda n: PooledBranch(filters, axes, norm=norm, name=n))(x)

    def concat(self, name: str, xs: list):
        if self.mode is Mode.STREAM and len(xs) > XNNPACK_MAX_CONCAT:
            return concat_tree(list(xs))
        return self.layer(name, lambda n: keras.layers.Concatenate(name=n))(list(xs))

    def add(self, name: str, xs: list):
        return self.layer(name, lambda n: keras.layers.Add(name=n))(list(xs))

    def upsample(self, name: str, x, size):
        return self.layer(name, lambda n: NearestUpsample(size, name=n))(x)

    def head(self, name: str, x, nb_sources: int, stride_f: int):
        """Mask head: transposed conv ``(1, stride_f)`` back to full frequency, sigmoid."""
        return self.layer(name, lambda n: keras.layers.Conv2DTranspose(
            nb_sources, (1, stride_f), strides=(1, stride_f), activation="sigmoid", name=n))(x)
