"""`python -m activations.build_native`: build (or check) the fused CPU kernels ahead of any trial.

`make install` and the Docker image run it, so that trials only load the kernels. Never an error: where
they cannot be built every activation runs its eager path, and this says so.
"""

from __future__ import annotations

from activations import _native

if __name__ == "__main__":
    if _native.ops() is None:
        print("actstudy: the fused CPU kernels could not be built (see the warning); the eager paths will be used")
    else:
        print(f"actstudy: fused CPU kernels ready ({_native.load_seconds():.1f} s)")
