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
