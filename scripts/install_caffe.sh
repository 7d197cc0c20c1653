#!/usr/bin/env bash
# Build real BVLC Caffe (CPU only) with pycaffe from the PyPI sdist brocolli-caffe and install
# `caffe` into the active venv (.venv). It is a second engine and the oracle of the engine
# (tests/test_pycaffe_oracle.py, on every CI run) and of bench/engine.py; facs itself never
# imports it.
#
# Cost: a few hundred MB of Debian -dev packages (boost, protobuf, glog, openblas, hdf5, lmdb,
# gtest), a 6 MB sdist, about 7 min of compiling on 2 idle cores, once: the build tree lives
# in facs' cache (~/.cache/facs/caffe-VERSION-pythonX.Y, or $FACS_CACHE; $CAFFE_BUILD moves
# it), outside any clone, so a fresh clone or a re-run only reinstalls the built module
# (seconds). Delete that folder to rebuild from scratch.
#
# The sdist's own setup.py wants conda and Python <= 3.9, so this script runs its CMake
# directly against Debian's libraries: a small "prefix" of symlinks stands in for the conda
# prefix the CMakeLists expects, LMDB support is switched on (the sdist leaves it out), and
# pycaffe's caffe_pb2.py is regenerated with the venv's protoc so it matches protobuf 7.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then source .venv/bin/activate; fi
VERSION="${CAFFE_VERSION:-9.0.2}"
PYVER="python$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
PYTAG="$(python -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
BUILD="${CAFFE_BUILD:-${FACS_CACHE:-${HOME}/.cache/facs}/caffe-${VERSION}-${PYVER}}"
JOBS="${JOBS:-$(nproc)}"
mkdir -p "${BUILD}"
BUILD="$(cd "${BUILD}" && pwd)"
START=$(date +%s)

DEBS=(cmake g++ make protobuf-compiler libprotobuf-dev libgoogle-glog-dev libgflags-dev
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-regex-dev
  libboost-python-dev libopenblas-dev libhdf5-dev liblmdb-dev libgtest-dev)
missing=()
for d in "${DEBS[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if ((${#missing[@]})); then
  echo "install_caffe: apt-get install ${missing[*]}"
  SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >"${BUILD}/apt.log" 2>&1 || { tail -20 "${BUILD}/apt.log"; exit 1; }
fi

SRC="${BUILD}/brocolli-caffe-${VERSION}"
if [[ ! -d "${SRC}" ]]; then
  echo "install_caffe: fetching the brocolli-caffe ${VERSION} sdist (PyPI)"
  python -m pip download -q --no-deps --no-binary :all: "brocolli-caffe==${VERSION}" -d "${BUILD}" \
    2>&1 | grep -v "^WARNING: Location" || true
  tar -xzf "${BUILD}/brocolli-caffe-${VERSION}.tar.gz" -C "${BUILD}"
fi

# A stand-in for the conda prefix the CMakeLists hard-codes (ANACONDA_HOME).
PREFIX="${BUILD}/prefix"
ARCH_LIB="/usr/lib/$(gcc -print-multiarch)"
mkdir -p "${PREFIX}/include" "${PREFIX}/lib/${PYVER}/site-packages/numpy/core"
ln -sfn "$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
  "${PREFIX}/include/${PYVER}"
ln -sfn "$(python -c 'import numpy; print(numpy.get_include())')" \
  "${PREFIX}/lib/${PYVER}/site-packages/numpy/core/include"
ln -sfn "${ARCH_LIB}/libboost_python${PYTAG}.so" "${PREFIX}/lib/libboost_python.so"
for h in hdf5 hdf5_hl; do ln -sfn "${ARCH_LIB}/hdf5/serial/lib${h}.so" "${PREFIX}/lib/lib${h}.so"; done

SO="$(find "${BUILD}/build" -name '_caffe*.so' -type f 2>/dev/null | head -1 || true)"
if [[ -n "${SO}" && -f "${BUILD}/built.stamp" ]]; then
  echo "install_caffe: reusing the build in ${BUILD}"
else
echo "install_caffe: configuring (CPU_ONLY, OpenBLAS, LMDB) in ${BUILD}/build"
cmake -S "${SRC}" -B "${BUILD}/build" -DCMAKE_BUILD_TYPE=Release \
  -DANACONDA_HOME="${PREFIX}" -DPYTHON_VERSION="${PYVER}" -Dpython_version=3 \
  -DCPU_ONLY=ON -DUSE_LMDB=ON -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DBUILD_python_layer=OFF \
  -DCMAKE_CXX_FLAGS="-DUSE_LMDB -I/usr/include/hdf5/serial -Wno-deprecated-declarations" \
  -DCMAKE_SHARED_LINKER_FLAGS="-L${PREFIX}/lib -Wl,--no-as-needed -llmdb -Wl,-rpath,${PREFIX}/lib" \
  >"${BUILD}/cmake.log" 2>&1 || { tail -30 "${BUILD}/cmake.log"; exit 1; }
echo "install_caffe: compiling with ${JOBS} jobs (log: ${BUILD}/build.log)"
cmake --build "${BUILD}/build" --target pycaffe -j "${JOBS}" >"${BUILD}/build.log" 2>&1 \
  || { grep -m 20 -B2 -A6 "error" "${BUILD}/build.log" || tail -40 "${BUILD}/build.log"; exit 1; }
date -u +%FT%TZ >"${BUILD}/built.stamp"
fi

SITE="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "install_caffe: installing caffe into ${SITE}"
rm -rf "${SITE}/caffe"
cp -r "${SRC}/python/caffe" "${SITE}/caffe"
rm -f "${SITE}/caffe/_caffe.so"
cp "$(find "${BUILD}/build" -name '_caffe*.so' -type f | head -1)" "${SITE}/caffe/_caffe.so"
mkdir -p "${SITE}/caffe/proto"
touch "${SITE}/caffe/proto/__init__.py"
python -m grpc_tools.protoc -I"${SRC}/src/caffe/proto" --python_out="${SITE}/caffe/proto" \
  "${SRC}/src/caffe/proto/caffe.proto"
# pycaffe's own Python needs these (caffe.io imports skimage).
python -m pip install -q --disable-pip-version-check "scikit-image>=0.22" "six>=1.16" 2>&1 \
  | grep -v "^WARNING: Location" || true  # the pycaffe extra
python -c "import caffe; print('install_caffe: import caffe works, version', caffe.__version__)"
echo "install_caffe: done in $(($(date +%s) - START)) s"
