from __future__ import annotations

import numpy as np
import pytest

from srforensics.degradations.base import ProtocolError
from srforensics.degradations.protocol import available_protocols, load_protocol
from srforensics.seeding import degradation_rng

BASE = """\
name: t
scale: 4
variants: 3
steps:
  - op: gaussian_blur
    sigma: {uniform: [0.5, 1.5]}
  - op: downscale
    scale: 4
  - op: jpeg
    quality: {choice: [50, 70, 90]}
"""


def _write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_protocols_load():
    names = available_protocols()
    assert {"faces", "bicubic-x4"} <= set(names)
    faces = load_protocol("faces")
    assert faces.scale == 4 and faces.variants >= 1 and faces.needs_face
    assert [s.name for s in faces.steps] == ["gaussian_blur", "downscale", "gaussian_noise", "jpeg"]
    assert load_protocol("bicubic-x4").variants == 1


def test_hash_ignores_formatting_and_comments(tmp_path):
    a = load_protocol(_write(tmp_path, BASE, "a.yaml"))
    reformatted = "# a comment\n" + BASE.replace(
        "sigma: {uniform: [0.5, 1.5]}", "sigma:\n      uniform:\n        - 0.5\n        - 1.5"
    )
    b = load_protocol(_write(tmp_path, reformatted, "b.yaml"))
    assert a.sha256 == b.sha256
    c = load_protocol(_write(tmp_path, BASE.replace("0.5, 1.5", "0.5, 1.6"), "c.yaml"))
    assert c.sha256 != a.sha256


def test_sampling_is_seeded_and_apply_is_pure(tmp_path):
    p = load_protocol(_write(tmp_path, BASE))
    hr = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    params = p.sample(degradation_rng(0, "rec", 1))
    assert params == p.sample(degradation_rng(0, "rec", 1))
    assert params != p.sample(degradation_rng(0, "rec", 2))
    assert 0.5 <= params[0]["sigma"] <= 1.5 and params[2]["quality"] in (50, 70, 90)
    lr1, lr2 = p.apply(hr, params), p.apply(hr.copy(), params)
    assert lr1.shape == (16, 16, 3)
    np.testing.assert_array_equal(lr1, lr2)
    np.testing.assert_array_equal(np.round(lr1 * 255), lr1 * 255)  # 8-bit levels


def test_uniform_int_covers_both_ends(tmp_path):
    p = load_protocol(
        _write(tmp_path, BASE.replace("{choice: [50, 70, 90]}", "{uniform: [40, 42]}"))
    )
    rng = np.random.default_rng(0)
    qs = {p.sample(rng)[2]["quality"] for _ in range(200)}
    assert qs == {40, 41, 42}


@pytest.mark.parametrize(
    "text, message",
    [
        (
            BASE.replace("gaussian_blur", "gausian_blur"),
            r"steps\[0\].*unknown degradation operator 'gausian_blur'; did you mean 'gaussian_blur'",
        ),
        (
            BASE.replace("sigma:", "sigmaa:"),
            r"steps\[0\] \(gaussian_blur\): unknown field\(s\) sigmaa",
        ),
        (
            BASE.replace("quality: {choice: [50, 70, 90]}", "quality: 101"),
            r"steps\[2\] \(jpeg\).quality: 101 is above the maximum 100",
        ),
        (
            BASE.replace("quality: {choice: [50, 70, 90]}", "quality: high"),
            r"steps\[2\] \(jpeg\).quality: expected int",
        ),
        (
            BASE.replace("{uniform: [0.5, 1.5]}", "{gaussian: [0.5, 1.5]}"),
            r"sigma: a distribution is one of",
        ),
        (
            BASE.replace("scale: 4\nvariants", "scale: 2\nvariants"),
            r"reduce by x4, but the protocol's scale is 2",
        ),
        (BASE + "colour: red\n", r"unknown field\(s\) colour"),
        (BASE.replace("name: t\n", ""), r"missing required field 'name'"),
        ("name: t\nscale: 4\nsteps: [\n", r"invalid YAML \(line"),
        (
            BASE.replace(
                "  - op: jpeg\n    quality: {choice: [50, 70, 90]}\n",
                "  - op: mod_crop\n    multiple: 4\n",
            ),
            r"is an HR step; list it under 'hr'",
        ),
    ],
)
def test_validation_names_file_step_and_field(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ProtocolError, match=message) as err:
        load_protocol(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_protocol_name_suggests():
    with pytest.raises(ProtocolError, match="did you mean 'faces'"):
        load_protocol("face")


def test_yaml_cannot_run_code(tmp_path):
    evil = "!!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ProtocolError, match="invalid YAML"):
        load_protocol(_write(tmp_path, evil))


def test_even_blur_kernel_is_refused(tmp_path):
    text = BASE.replace("sigma: {uniform: [0.5, 1.5]}", "sigma: 1.0\n    kernel_size: 20")
    with pytest.raises(
        ProtocolError, match=r"steps\[0\] \(gaussian_blur\).kernel_size: must be odd, got 20"
    ):
        load_protocol(_write(tmp_path, text))


def test_step_probability_is_drawn_and_recorded(tmp_path):
    text = BASE.replace(
        "    sigma: {uniform: [0.5, 1.5]}\n", "    sigma: {uniform: [0.5, 1.5]}\n    p: 0.3\n"
    )
    p = load_protocol(_write(tmp_path, text))
    assert p.steps[0].p == 0.3 and p.resolved()["steps"][0]["p"] == 0.3
    hr = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    skipped = 0
    for v in range(400):
        params = p.sample(degradation_rng(0, "r", v))
        if params[0] == {"applied": False}:
            skipped += 1
            assert p.apply(hr, params).shape == (8, 8, 3)
        else:
            assert "kernel" in params[0]
    assert skipped / 400 == pytest.approx(0.7, abs=0.07)
    with pytest.raises(
        ProtocolError, match=r"steps\[0\].p: the probability of a step must be in \(0, 1\]"
    ):
        load_protocol(_write(tmp_path, text.replace("p: 0.3", "p: 1.5"), "bad.yaml"))


def test_include_resolves_and_hashes_like_the_written_out_protocol(tmp_path):
    base = _write(tmp_path, BASE, "base.yaml")
    child = _write(tmp_path, "include: base.yaml\nname: t\nvariants: 5\n", "child.yaml")
    full = _write(tmp_path, BASE.replace("variants: 3", "variants: 5"), "full.yaml")
    c, f = load_protocol(child), load_protocol(full)
    assert c.variants == 5 and [s.name for s in c.steps] == ["gaussian_blur", "downscale", "jpeg"]
    assert c.sha256 == f.sha256
    assert load_protocol(base).sha256 != c.sha256
    # Shipped protocols include each other by name.
    x8 = load_protocol("faces-x8")
    assert x8.scale == 8 and [s.name for s in x8.hr_steps] == ["face_align"]


def test_include_errors(tmp_path):
    _write(tmp_path, "include: b.yaml\nname: a\n", "a.yaml")
    _write(tmp_path, "include: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(ProtocolError, match="include cycle"):
        load_protocol(tmp_path / "a.yaml")
    with pytest.raises(ProtocolError, match="unknown protocol 'nowhere.yaml'"):
        load_protocol(_write(tmp_path, "include: nowhere.yaml\nname: c\n", "c.yaml"))


def test_resolved_form_parses_back_to_the_same_protocol():
    from srforensics.degradations.protocol import parse_protocol

    for name in available_protocols():
        p = load_protocol(name)
        assert parse_protocol(p.resolved()).sha256 == p.sha256


def test_lr_size_must_match_the_scale(tmp_path):
    text = BASE.replace("  - op: jpeg\n", "  - op: resize\n    factor: 0.5\n  - op: jpeg\n")
    p = load_protocol(_write(tmp_path, text))
    hr = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="x4 needs 8x8"):
        p.apply(hr, p.sample(np.random.default_rng(0)))


# -- the standard set ------------------------------------------------------------------
STANDARD = {
    "bicubic-x2",
    "bicubic-x3",
    "bicubic-x4",
    "bd-x3",
    "dn-x3",
    "realistic-x4",
    "faces",
    "faces-x8",
    "cctv",
    "plates",
    "plates-x8",
}


def test_the_standard_set_is_shipped_and_cites_its_sources():
    assert STANDARD <= set(available_protocols())
    for name in STANDARD:
        p = load_protocol(name)
        assert p.references and p.description, name


def _fixture_hr(multiple: int) -> np.ndarray:
    from skimage import data

    from srforensics.images import quantize

    return quantize(data.coffee()[100:160, 200:262] / 255.0)  # 60 x 62: mod-crop trims it


def test_bd_x3_equals_the_rdn_formula():
    # RDN's Prepare_TestData_HR_LR.m, BD: G = fspecial('gaussian', 7, 1.6);
    # imfilter(HR, G, 'replicate'); then imresize(..., 1/3, 'nearest') = pixels 2, 5, 8, ... (1-based).
    from scipy.ndimage import correlate

    p = load_protocol("bd-x3")
    hr, _ = p.prepare(_fixture_hr(3))
    assert hr.shape == (60, 60, 3)
    lr = p.apply(hr, p.sample(degradation_rng(0, "x", 0)))
    x = np.arange(7) - 3.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.6**2))
    g /= g.sum()
    blurred = np.stack(
        [correlate(hr[..., c].astype(np.float64), g, mode="nearest") for c in range(3)], axis=2
    )
    expected = np.clip(np.round(blurred[1::3, 1::3] * 255), 0, 255) / 255
    np.testing.assert_array_equal(np.round(lr * 255), np.round(expected * 255))


def test_dn_x3_equals_the_rdn_formula():
    # RDN's DN: uint8(imresize(HR, 1/3, 'bicubic')) + 30 * randn, then uint8 (round, clip).
    from srforensics.resize import imresize

    p = load_protocol("dn-x3")
    hr, _ = p.prepare(_fixture_hr(3))
    params = p.sample(degradation_rng(0, "x", 0))
    lr = p.apply(hr, params)
    down = np.clip(np.round(imresize(hr, size=(20, 20)) * 255), 0, 255)
    noise = np.random.default_rng(params[2]["seed"]).standard_normal(down.shape) * 30.0
    expected = np.clip(np.round(down + noise), 0, 255)
    # Noise is added on the [0, 1] scale inside the operator: allow one 8-bit level of rounding.
    assert np.abs(np.round(lr * 255) - expected).max() <= 1
    assert (np.round(lr * 255) == expected).mean() > 0.99
    assert np.std(np.round(lr * 255) - down) == pytest.approx(30, rel=0.1)


def _lr_hashes(names_and_variants):
    from skimage import data

    from srforensics.images import pixel_sha256

    img = (data.astronaut()[::2, ::2] / 255.0).astype(np.float32)
    out = []
    for name, rid, v in names_and_variants:
        p = load_protocol(name)
        hr, _ = p.prepare(img)
        out.append(pixel_sha256(p.apply(hr, p.sample(degradation_rng(0, rid, v)))))
    return out


def test_same_seed_record_variant_is_bit_identical_across_processes_and_order():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = [
        (n, rid, v) for n in ("realistic-x4", "cctv", "faces") for rid in ("a", "b") for v in (0, 1)
    ]
    serial = _lr_hashes(jobs)
    # Fresh interpreters ('spawn'): nothing is shared with this process but the code.
    with ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        parallel = list(pool.map(_lr_hashes, [[j] for j in reversed(jobs)]))
    assert [h[0] for h in reversed(parallel)] == serial
    by_job = dict(zip(jobs, serial, strict=True))
    for n in ("realistic-x4", "cctv", "faces"):
        assert by_job[(n, "a", 0)] != by_job[(n, "a", 1)]  # different variants differ
        assert by_job[(n, "a", 0)] != by_job[(n, "b", 0)]  # different records differ


def test_a_protocol_names_the_slow_imports_of_its_steps():
    """Helper processes import them before they start (the fork server does, once), with
    the modules of the protocol's operators."""
    import importlib

    from srforensics.run.config import AuditConfig
    from srforensics.run.executors.processes import _protocol_imports

    faces = load_protocol("faces").imports()
    assert faces[0] == "facenet_pytorch"
    assert load_protocol("bicubic-x4").imports() == ()
    x8 = load_protocol("faces-x8")
    operators = {type(s).__module__ for s in (*x8.hr_steps, *x8.steps)}
    assert {"srforensics.faces.align", "srforensics.degradations.ops"} <= operators
    got = _protocol_imports(AuditConfig.from_options(protocol="faces-x8"))
    assert len(got) == len(set(got)) and set(got) == operators | set(faces)
    assert all(importlib.import_module(m) for m in got)
    assert (
        _protocol_imports(AuditConfig.from_options(protocol="no-such-protocol")) == ()
    )  # the driver says why


def test_the_face_steps_imports_hold_what_it_uses():
    """scikit-image's transform loads lazily (importing the package loads nothing), so the
    face step names the modules that hold what it calls: a fork server that imports them has
    them loaded. Fails when scikit-image moves them, so the names are kept true."""
    import importlib
    import sys

    import skimage.transform

    names = load_protocol("faces").imports()
    for name in names:
        importlib.import_module(name)  # a name that does not import would be skipped silently
    for attr in ("SimilarityTransform", "AffineTransform", "warp"):
        assert getattr(skimage.transform, attr).__module__ in names, attr
    assert all(n in sys.modules for n in names)
