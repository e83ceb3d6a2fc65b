"""The training loop's windows: where they sit in images of one or several shapes."""

import numpy as np

from models.fit import window, window_origins


def test_training_windows_sit_on_the_image_rim_as_often_as_configured():
    rng = np.random.default_rng(0)
    n, size, crop = 20000, 128, 64
    ys, xs = window_origins(rng, np.full((n, 2), size), crop, border_share=0.5)
    for pos in (ys, xs):
        assert pos.min() == 0 and pos.max() == size - crop  # every window lies inside
        # a quarter on each rim (plus the 1 in 65 that uniform placement puts there anyway)
        assert abs((pos == 0).mean() - (0.25 + 0.5 / 65)) < 0.01
        assert abs((pos == size - crop).mean() - (0.25 + 0.5 / 65)) < 0.01
        inner = pos[(pos > 0) & (pos < size - crop)]
        assert len(inner) > 0.45 * n and len(np.unique(inner)) == size - crop - 1
    # the two axes are drawn independently: a window sits in a corner when both do
    on_rim = 0.5 + 1 / 65
    corner = ((ys == 0) | (ys == size - crop)) & ((xs == 0) | (xs == size - crop))
    assert abs(corner.mean() - on_rim ** 2) < 0.02
    for pos in window_origins(np.random.default_rng(0), np.full((n, 2), size), crop,
                              border_share=0.0):
        assert abs((pos == 0).mean() - 1 / 65) < 0.005  # 0 = uniform placement


def test_training_windows_fit_images_of_several_shapes():
    shapes = np.array([[128, 48], [48, 304], [64, 64]] * 2000)
    ys, xs = window_origins(np.random.default_rng(0), shapes, 64, border_share=0.5)
    room = np.maximum(shapes - 64, 0)
    assert (ys >= 0).all() and (xs >= 0).all()
    assert (ys <= room[:, 0]).all() and (xs <= room[:, 1]).all()
    # each image's own far rim is reached, and a side shorter than the window starts at 0
    assert (ys[::3] == 64).mean() > 0.2 and (xs[1::3] == 240).mean() > 0.2
    assert (xs[::3] == 0).all() and (ys[1::3] == 0).all()
    win = window(np.random.rand(128, 48, 1).astype(np.float32), None, 10, 0, 64,
                  np.random.default_rng(0))
    assert win.shape == (64, 64, 1)  # the narrow side mirrored out to the window
