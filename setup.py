"""Map the top-level code folders into the `nrm_plugins` package.

DESIGN.md §2 keeps `readers/`, `hw/` and `gwyddion_module/` beside the core, but they import as
`nrm_plugins.readers`, `nrm_plugins.hw` and `nrm_plugins.gwyddion_module`, in an editable install and
in a wheel alike.  Sub-packages are found automatically, so a new reader folder needs no edit here.
"""
import glob

from setuptools import Extension, find_packages, setup

FOLDERS = {
    "nrm_plugins": "nrm_plugins",
    "nrm_plugins.readers": "readers",
    "nrm_plugins.hw": "hw",
    "nrm_plugins.gwyddion_module": "gwyddion_module",
}

packages, package_dir = [], {}
for package, folder in FOLDERS.items():
    package_dir[package] = folder
    packages.append(package)
    for sub in find_packages(folder):
        packages.append(f"{package}.{sub}")
        package_dir[f"{package}.{sub}"] = f"{folder}/" + sub.replace(".", "/")

# compiled kernels of the pipeline (nrm_plugins/native.py loads them with ctypes); optional: without a C
# compiler the build goes on and the numpy implementations are used
kernels = Extension(
    "nrm_plugins._nrmk",
    sources=sorted(glob.glob("nrm_plugins/_native/*.c")),
    depends=["nrm_plugins/_native/kernels.h"],
    extra_compile_args=["-O3", "-std=c99", "-fno-math-errno", "-fno-strict-aliasing"],
    optional=True,
)

setup(
    ext_modules=[kernels],
    include_package_data=False,  # package_data lists the data files (MANIFEST.in only adds the C sources to the sdist)
    packages=packages,
    package_dir=package_dir,
    package_data={package: ["*.toml", "*.mplstyle", "*.html", "*.txt", "*.sh", "*.py"] for package in packages},
)
