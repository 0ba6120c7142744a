"""Hypothesis strategies for random weight spaces (needs the ``test`` extra: hypothesis)."""

from __future__ import annotations

from hypothesis import strategies as st

from weightspace.space.spec import NetworkSpec


@st.composite
def network_specs(
    draw: st.DrawFn,
    min_layers: int = 1,
    max_layers: int = 6,
    min_width: int = 1,
    max_width: int = 9,
    conv_dims: tuple[int, ...] = (0, 1, 2, 3),
    max_kernel: int = 5,
) -> NetworkSpec:
    """A random MLP, or a 1D/2D/3D CNN whose convs end in global pooling and a dense layer.

    ``conv_dims`` lists the allowed kernel dimensionalities, 0 meaning an MLP. A CNN has at least
    one conv and exactly one final dense layer, so at least two layers.
    """
    dim = draw(st.sampled_from(conv_dims))
    low = max(min_layers, 2) if dim else min_layers
    num_layers = draw(st.integers(low, max(low, max_layers)))
    widths = tuple(
        draw(
            st.lists(
                st.integers(min_width, max_width), min_size=num_layers + 1, max_size=num_layers + 1
            )
        )
    )
    if not dim:
        return NetworkSpec(widths)
    kernel = st.tuples(*[st.integers(1, max_kernel)] * dim)
    kernels = tuple(draw(kernel) for _ in range(num_layers - 1)) + ((),)
    return NetworkSpec(widths, kernels)
