# Sourced by the scripts: makes sure .venv exists and matches pyproject.toml.
# The stamp holds a hash of pyproject.toml and the interpreter version; a mismatch reinstalls.
ensure_venv() {
    local venv="$root/.venv"
    local python="${KABUTO_PYTHON:-python3}"
    local want have=""
    want="$(cat "$root/pyproject.toml" <("$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
    [ -f "$venv/.kabuto-stamp" ] && have="$(cat "$venv/.kabuto-stamp")"
    if [ "$want" != "$have" ] || [ ! -x "$venv/bin/python" ]; then
        echo "setting up $venv from pyproject.toml ..." >&2
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test,bench]" >&2
        echo "$want" > "$venv/.kabuto-stamp"
    fi
    VENV_PY="$venv/bin/python"
}
