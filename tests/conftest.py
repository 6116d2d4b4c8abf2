import os

# Headless MuJoCo rendering (dm_control pixels); Debian's libEGL is in the base image.
os.environ.setdefault("MUJOCO_GL", "egl")

import torchrl  # noqa: E402,F401  (torchrl before dm_control, or EGL/OSMesa segfaults)
