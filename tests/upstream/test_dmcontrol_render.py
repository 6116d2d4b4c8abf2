"""UPSTREAM.md #4: DMControlEnv(from_pixels=True) cannot set the render size:
render_kwargs are forwarded to suite.load as task arguments, and the default
render is 240x320 (DreamerV1-3 and PlaNet use 64x64). Ours builds the suite
env and passes render_kwargs to DMControlWrapper."""
import pytest
from torchrl.envs import DMControlEnv

from latentrl.envs import make_env


def test_dmcontrol_env_render_size():
    with pytest.raises(TypeError, match="render_kwargs"):
        DMControlEnv("cartpole", "swingup", from_pixels=True, render_kwargs={"height": 64, "width": 64})
    default = DMControlEnv("cartpole", "swingup", from_pixels=True, pixels_only=True)
    assert default.reset()["pixels"].shape == (240, 320, 3)
    ours = make_env("dmc:cartpole-swingup", pixels=True, image_size=64)
    assert ours.reset()["pixels"].shape == (3, 64, 64)
