import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightspace import WeightSpaceFeatures
from weightspace.data.inr import init_sirens, render
from weightspace.functional import forward, precompose_affine, random_similarities
from weightspace.testing import random_features
from weightspace.testing.strategies import network_specs


@settings(max_examples=15, deadline=None, derandomize=True)
@given(spec=network_specs(conv_dims=(0,)), batch=st.integers(1, 3))
def test_precomposed_network_computes_f_of_the_moved_inputs(spec, batch):
    g = torch.Generator().manual_seed(0)
    x = random_features(spec, batch_size=batch, generator=g)
    n0 = spec.widths[0]
    matrix = torch.randn(batch, n0, n0, generator=g, dtype=torch.float64)
    offset = torch.randn(batch, n0, generator=g, dtype=torch.float64)
    inputs = torch.randn(7, n0, generator=g, dtype=torch.float64)
    moved = torch.einsum("bij,nj->bni", matrix, inputs) + offset[:, None]
    got = forward(precompose_affine(x, matrix, offset), inputs, "tanh")
    torch.testing.assert_close(got, forward(x, moved, "tanh"))
    # Control: the same map applied after the first layer's bias is another function.
    wrong = WeightSpaceFeatures(
        [torch.einsum("bcij,bjk->bcik", x.weights[0], matrix), *x.weights[1:]], x.biases
    )
    assert (forward(wrong, inputs, "tanh") - forward(x, moved, "tanh")).abs().max() > 1e-6


def test_a_shift_by_one_pixel_moves_the_rendered_image_by_one_pixel():
    torch.manual_seed(0)
    x = WeightSpaceFeatures.from_tensors([t.unsqueeze(1).double() for t in init_sirens(2)])
    step = 2 / 27  # one pixel of a 28-pixel side in [-1, 1] coordinates
    moved = precompose_affine(x, torch.eye(2), torch.tensor([0.0, step]))
    a, b = render(x, 28, 28), render(moved, 28, 28)
    torch.testing.assert_close(b[..., :-1], a[..., 1:])


def test_random_similarities_stay_in_range_and_identity_when_off():
    g = torch.Generator().manual_seed(0)
    m, t = random_similarities(500, max_degrees=10, max_scale=1.1, max_shift=0.2, generator=g)
    det = torch.linalg.det(m.double()).sqrt()  # the zoom factor
    assert det.min() >= 1 / 1.1 - 1e-6 and det.max() <= 1.1 + 1e-6
    angle = torch.rad2deg(torch.atan2(m[:, 1, 0], m[:, 0, 0]))
    assert angle.abs().max() <= 10 + 1e-4 and angle.abs().max() > 8
    assert t.abs().max() <= 0.2 and t.abs().max() > 0.15
    m0, t0 = random_similarities(3)
    torch.testing.assert_close(m0, torch.eye(2).expand(3, 2, 2))
    assert not t0.any()


def test_bad_input_names_what_is_wrong():
    x = WeightSpaceFeatures.from_tensors([t.unsqueeze(1) for t in init_sirens(2)])
    with pytest.raises(ValueError, match=r"expected \(2, 2, 2\) or \(2, 2\)"):
        precompose_affine(x, torch.eye(3), torch.zeros(2))
    from weightspace.data.zoo import ZOO_SPEC

    cnn = random_features(ZOO_SPEC, batch_size=1)
    with pytest.raises(ValueError, match=r"first layer of .* is a convolution"):
        precompose_affine(cnn, torch.eye(1), torch.zeros(1))
    with pytest.raises(ValueError, match="max_scale must be a number >= 1"):
        random_similarities(2, max_scale=0.5)


def test_mirror_axis_flips_half_the_rendered_images_exactly():
    torch.manual_seed(0)
    x = WeightSpaceFeatures.from_tensors([t.unsqueeze(1).double() for t in init_sirens(64)])
    g = torch.Generator().manual_seed(1)
    m, t = random_similarities(64, mirror_axis=1, generator=g)
    flipped = torch.linalg.det(m.double()) < 0
    assert 16 < int(flipped.sum()) < 48  # a fair coin per network
    a, b = render(x, 28, 28), render(precompose_affine(x, m, t), 28, 28)
    torch.testing.assert_close(b[flipped], a[flipped].flip(-1))  # left to right
    torch.testing.assert_close(b[~flipped], a[~flipped])
    # Control: axis 0 mirrors rows, which is not a left-right mirror of these images.
    m0, t0 = random_similarities(64, mirror_axis=0, generator=torch.Generator().manual_seed(1))
    up = render(precompose_affine(x, m0, t0), 28, 28)
    torch.testing.assert_close(up[flipped], a[flipped].flip(-2))
    assert (up[flipped] - a[flipped].flip(-1)).abs().max() > 0.1
    # The coin comes after the other draws: the moves without a mirror are unchanged by it.
    kw = {"max_degrees": 10.0, "max_scale": 1.1, "max_shift": 0.1}
    plain, _ = random_similarities(8, **kw, generator=torch.Generator().manual_seed(2))
    mirrored, _ = random_similarities(
        8, **kw, mirror_axis=1, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(mirrored.abs(), plain.abs())
    with pytest.raises(ValueError, match="mirror_axis must be None, 0 or 1, got 2"):
        random_similarities(2, mirror_axis=2)
