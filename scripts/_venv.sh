# Sourced by the scripts: make .venv hold this checkout's package with the given extras.
# Reinstalls only when pyproject.toml changed since the last install.
ensure_venv() {
  local extras="$1" stamp=".venv/.installed-${1:-base}"
  if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
    return
  fi
  echo "scripts: preparing .venv (pip install -e '.${extras:+[$extras]}')" >&2
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c 'import bem' || { echo "scripts: installing bem failed" >&2; exit 1; }
  touch "$stamp"
}
