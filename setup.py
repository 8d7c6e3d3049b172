"""Builds mmgen and its compiled torch extension ``mmgen._C``.

    pip install --no-build-isolation -e .      # build isolation would fetch a second torch

Environment switches (read in this file):
  MMGEN_CUDA=0|1     1: build the CUDA kernels in csrc/cuda/ (fails when no CUDA toolchain);
                     0: CPU only. Unset: CUDA when torch has CUDA and nvcc is found.
  MMGEN_CUDA_ARCH    compute capabilities for the CUDA build (default "8.0;9.0").
  MMGEN_DEBUG=1      -O0 -g instead of -O3.
  MAX_JOBS           parallel compile jobs (read by torch's ninja build).
"""

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch
from setuptools import find_packages, setup
from torch.utils import cpp_extension

ROOT = Path(__file__).parent.resolve()
# setuptools warns on every editable install that a folder named like the package may shadow the
# installed one: here that folder is the package itself, so the warning is only noise
warnings.filterwarnings("ignore", message="Editable installation")
sys.path.insert(0, str(ROOT))
from mmgen.ops.buildinfo import source_hash  # noqa: E402  (mmgen/ is importable without torch)


def cuda_toolchain() -> str | None:
    """Why CUDA cannot be built here, or None when it can."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    home = cpp_extension.CUDA_HOME
    if home is None or not (Path(home) / "bin" / "nvcc").exists():
        return "nvcc not found (set CUDA_HOME, e.g. CUDA_HOME=/usr/local/cuda-13.0)"
    # torch guesses CUDA_HOME from the nvcc on PATH: a wrapper script like /usr/local/bin/nvcc
    # makes it /usr/local, which lacks the CUDA headers and libcudart, so the link would fail
    if not (Path(home) / "include" / "cuda_runtime.h").exists():
        return f"CUDA_HOME={home} has bin/nvcc but no include/cuda_runtime.h (set CUDA_HOME)"
    return None


def want_cuda() -> bool:
    switch = os.environ.get("MMGEN_CUDA", "").strip()
    if switch not in ("", "0", "1"):
        sys.exit(f"MMGEN_CUDA must be 0 or 1, got {switch!r}")
    missing = cuda_toolchain()
    if switch == "1" and missing:
        sys.exit(f"MMGEN_CUDA=1 but the CUDA kernels cannot be built: {missing}")
    if switch == "" and missing and torch.version.cuda is not None:
        print(f"note: building without the CUDA kernels: {missing}", file=sys.stderr)
    return switch == "1" or (switch == "" and missing is None)


def write_build_info(with_cuda: bool, arch: str) -> Path:
    """A generated header that bakes what this build was made from into the library."""
    info = {
        "torch_version": torch.__version__,
        "cuda": with_cuda,
        "cuda_version": torch.version.cuda if with_cuda else None,
        "cuda_arch": arch if with_cuda else None,
        "debug": os.environ.get("MMGEN_DEBUG") == "1",
        "source_hash": source_hash(ROOT),  # no build time: the header would change every build
    }
    out = ROOT / "build" / "generated"
    (out / "mmgen").mkdir(parents=True, exist_ok=True)
    header = out / "mmgen" / "build_info.h"
    text = f'#pragma once\nconstexpr const char* kBuildInfo = R"json({json.dumps(info)})json";\n'
    if not header.exists() or header.read_text() != text:
        header.write_text(text)
    return out


def extension():
    with_cuda = want_cuda()
    arch = os.environ.get("MMGEN_CUDA_ARCH", "8.0;9.0")
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp"))
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cpu").glob("*.cpp"))
    opt = ["-O0", "-g"] if os.environ.get("MMGEN_DEBUG") == "1" else ["-O3"]
    include_dirs = [str(ROOT / "csrc" / "include"), str(write_build_info(with_cuda, arch))]
    # torch 2.13+ headers need C++20 (with C++17 the CUDA build fails on at::symint::sizes)
    cxx = ["-std=c++20", *opt, "-fopenmp", "-DMMGEN_WITH_CUDA=" + ("1" if with_cuda else "0")]
    kwargs = {"extra_link_args": ["-fopenmp"]}
    if not with_cuda:
        return cpp_extension.CppExtension(
            "mmgen._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx},
            **kwargs,
        )
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
    # pip's CUDA wheels keep headers such as cusparse.h (needed by ATen/cuda) beside torch
    nvidia = Path(torch.__file__).parent.parent / "nvidia"
    include_dirs += [str(p) for p in sorted(nvidia.glob("cu*/include"))]
    nvcc = [*opt, "-std=c++20", "--expt-relaxed-constexpr", "-DMMGEN_WITH_CUDA=1"]
    return cpp_extension.CUDAExtension(
        "mmgen._C", sources, include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs,
    )  # fmt: skip


def data_packages(folder: str, package: str) -> list[str]:
    """``package`` and one package per subfolder: setuptools ships a folder's files only when
    the folder is a listed package (and warns about every unlisted one)."""
    root = ROOT / folder
    subfolders = sorted(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__")
    return [package, *(f"{package}.{'.'.join(p.relative_to(root).parts)}" for p in subfolders)]


# templates/ and specs/ sit at the top of the repository and ship inside the package
DATA_PACKAGES = [
    *data_packages("templates", "mmgen.templates"),
    *data_packages("specs", "mmgen.specs"),
]

if shutil.which("ninja") is None:
    print("note: ninja not found; the build falls back to a slow serial compile", file=sys.stderr)
setup(
    packages=[*find_packages(include=["mmgen", "mmgen.*"]), *DATA_PACKAGES],
    package_data={package: ["*.jinja", "*.yaml"] for package in DATA_PACKAGES},
    package_dir={"mmgen.templates": "templates", "mmgen.specs": "specs"},
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
