#!/usr/bin/env bash
# Install the QuickPass terminal as a systemd service on a Raspberry Pi, and optionally the acquirer stub.
#
#   sudo systemd/install-pi.sh [--world DIR] [--with-acquirer] [--with-display] [--no-start]
#
# From a checkout: a system user `quickpass` (groups dialout and gpio), the venv /opt/quickpass/.venv with
# `pip install .[pi]` (RPi.GPIO; `.[pi5]`, rpi-lgpio, on a Pi 5; `,acquirer` added with --with-acquirer), the
# test world in /var/lib/quickpass/world (a copy of DIR, or a new one), /etc/quickpass/terminal.toml from
# systemd/terminal.toml.in when it does not exist yet (never overwritten; the reader on /dev/serial0, on a Pi 5
# /dev/ttyAMA0), the units in /etc/systemd/system, enabled; then `pos-terminal doctor`, and a start only if
# doctor passed.
# --with-display: the customer display, Chromium in kiosk mode on the terminal's /display page, as a user unit
# of the desktop session (/etc/systemd/user/pos-display.service, enabled for every user: `systemctl --global`).
# Running it again is safe: it upgrades the venv and the units and keeps the configuration, world and journal.
# QUICKPASS_ROOT=DIR installs into a staging root instead of / (used by the tests; systemctl is then theirs).
# TEST ONLY: everything it installs belongs to a simulated payment world.
set -euo pipefail

usage() { sed -n '4p' "$0" | sed 's/^# *//' >&2; exit 2; }
say() { printf '== %s\n' "$*" >&2; }

world=""
acquirer=0
display=0
start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --world) [ $# -ge 2 ] || usage; world="$(cd "$2" && pwd)"; shift 2 ;;
    --with-acquirer) acquirer=1; shift ;;
    --with-display) display=1; shift ;;
    --no-start) start=0; shift ;;
    -h|--help) usage ;;
    *) echo "install-pi.sh: unknown argument $1" >&2; usage ;;
  esac
done

root="${QUICKPASS_ROOT:-}"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
user=quickpass
opt=/opt/quickpass
venv="$opt/.venv"
etc=/etc/quickpass
state=/var/lib/quickpass
units=/etc/systemd/system
user_units=/etc/systemd/user

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-pi.sh: run it as root: sudo $0 $*" >&2
  exit 1
fi
[ -f "$src/pyproject.toml" ] || { echo "install-pi.sh: $src is not a quickpass checkout" >&2; exit 1; }
if [ "$display" -eq 1 ] && [ ! -x "$root/usr/bin/chromium" ]; then
  echo "install-pi.sh: --with-display needs Chromium: sudo apt install chromium (Raspberry Pi OS desktop)" >&2
  exit 1
fi
if [ -n "$world" ] && [ ! -f "$world/WORLD.json" ]; then
  echo "install-pi.sh: $world is not a test world (no WORLD.json); create one with: pos-card world DIR" >&2
  exit 1
fi

# The model decides the GPIO driver and the header UART: RPi.GPIO cannot drive a Pi 5 (rpi-lgpio, the same
# module over /dev/gpiochip*, can), and on a Pi 5 /dev/serial0 is the debug connector, not GPIO14/15.
model=""
if [ -r "$root/proc/device-tree/model" ]; then
  model="$(tr -d '\0' < "$root/proc/device-tree/model")"
fi
case "$model" in
  "Raspberry Pi 5"*|"Raspberry Pi Compute Module 5"*) pi=1; gpio_extra=pi5; reader_port=/dev/ttyAMA0 ;;
  "Raspberry Pi"*) pi=1; gpio_extra=pi; reader_port=/dev/serial0 ;;
  *) pi=0; gpio_extra=pi; reader_port=/dev/serial0 ;;
esac
if [ "$pi" -eq 1 ]; then
  say "$model: GPIO driver $([ "$gpio_extra" = pi5 ] && echo rpi-lgpio || echo RPi.GPIO), reader on $reader_port"
else
  say "not a Raspberry Pi (${model:-no /proc/device-tree/model}): no GPIO driver; pos-terminal doctor will say so"
fi

# What pip needs before anything is changed: the venv module (Debian's python3-venv), and on 64-bit Raspberry
# Pi OS a compiler and Python's headers, because RPi.GPIO is published as source only (piwheels builds it for
# 32-bit images only).
if [ ! -x "$root$venv/bin/python" ] && ! python3 -c 'import ensurepip' 2>/dev/null; then
  echo "install-pi.sh: python3 cannot make a venv: sudo apt install python3-venv" >&2
  exit 1
fi
headers='import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))'
if [ "$pi" -eq 1 ] && [ "$gpio_extra" = pi ] && [ "$(uname -m)" = aarch64 ] \
    && { ! command -v gcc >/dev/null || ! python3 -c "$headers"; }; then
  echo "install-pi.sh: RPi.GPIO is built from source on 64-bit Raspberry Pi OS: sudo apt install gcc python3-dev" >&2
  exit 1
fi

say "user $user in groups dialout, gpio"
for group in dialout gpio; do
  getent group "$group" >/dev/null || groupadd --system "$group"
done
if getent passwd "$user" >/dev/null; then
  usermod --append --groups dialout,gpio "$user"
else
  useradd --system --user-group --groups dialout,gpio --home-dir "$state" --no-create-home \
    --shell /usr/sbin/nologin --comment "QuickPass POS terminal" "$user"
fi

say "venv $venv"
extras=$gpio_extra
if [ "$acquirer" -eq 1 ]; then extras=$gpio_extra,acquirer; fi
if [ ! -x "$root$venv/bin/python" ]; then
  mkdir -p "$root$opt"
  python3 -m venv "$root$venv"
fi
if [ "$gpio_extra" = pi5 ]; then  # both provide the module RPi.GPIO: a Pi 4's card moved to a Pi 5 has the wrong one
  "$root$venv/bin/pip" uninstall --quiet --yes RPi.GPIO 2>/dev/null || true
fi
"$root$venv/bin/pip" install --quiet --upgrade "${src}[${extras}]"
install -d -m 0755 "$root$opt/docs"
install -m 0644 "$src/docs/raspberry-pi.md" "$root$opt/docs/raspberry-pi.md"

say "state $state"
install -d -m 0700 "$root$state"
if [ ! -e "$root$state/world" ]; then
  if [ -n "$world" ]; then
    cp -a "$world" "$root$state/world"
  else
    "$root$venv/bin/pos-card" world "$root$state/world"
  fi
elif [ -n "$world" ] && [ "$world" != "$root$state/world" ]; then
  say "kept the world already in $state/world (not replaced by $world)"
fi
chown -R "$user:$user" "$root$state"

say "configuration $etc/terminal.toml"
install -d -m 0750 "$root$etc"
chown "root:$user" "$root$etc"
if [ -e "$root$etc/terminal.toml" ]; then
  say "kept the existing $etc/terminal.toml"
else
  "$root$venv/bin/python" - "$src/systemd/terminal.toml.in" "$root$state/world/terminal.toml" \
    "$root$etc/terminal.toml.new" "$state" "$reader_port" <<'PY'
import secrets
import string
import sys
import tomllib

template, world_config, target, state, reader_port = sys.argv[1:]
with open(world_config, "rb") as stream:
    data = tomllib.load(stream)
limits = data.get("limits", {})  # the world's offline floor limits: the acquirer holds the same figures
per_aid = ", ".join(f"{aid} = {limit}" for aid, limit in limits.get("aid_floor_limits", {}).items())
floor = "\n".join(([f"floor_limit = {limits['floor_limit']}"] if "floor_limit" in limits else [])
                  + ([f"aid_floor_limits = {{ {per_aid} }}"] if per_aid else []))
aids = "".join(f"\n[aids.{aid}]\n" + "".join(f"{key} = {value}\n" for key, value in figures.items())
               for aid, figures in data.get("aids", {}).items())  # the AIDs accepted, each with its limits
text = string.Template(open(template).read()).substitute(
    **data["terminal"], host_key=data["host"]["key"], world=f"{state}/world", state=state, floor_limits=floor,
    aids=aids, ecr_secret=secrets.token_urlsafe(32), reader_port=reader_port)
with open(target, "w") as stream:
    stream.write(text)
PY
  chmod 0640 "$root$etc/terminal.toml.new"
  chown "root:$user" "$root$etc/terminal.toml.new"
  mv "$root$etc/terminal.toml.new" "$root$etc/terminal.toml"
fi

if [ "$acquirer" -eq 1 ] && [ ! -f "$root$state/acquirer/config.json" ]; then
  say "acquirer stub instance $state/acquirer"
  runuser -u "$user" -- "$root$venv/bin/acquirer-stub" init --world "$root$state/world" \
    --instance "$root$state/acquirer"
fi

say "units in $units"
install -d -m 0755 "$root$units"
install -m 0644 "$src/systemd/pos-terminal.service" "$root$units/pos-terminal.service"
if [ "$acquirer" -eq 1 ]; then
  install -m 0644 "$src/systemd/acquirer-stub.service" "$root$units/acquirer-stub.service"
fi
systemctl daemon-reload
systemctl enable pos-terminal.service
if [ "$acquirer" -eq 1 ]; then
  systemctl enable acquirer-stub.service
  systemctl restart acquirer-stub.service
fi
if [ "$display" -eq 1 ]; then
  say "customer display: $user_units/pos-display.service (starts with the desktop session)"
  install -d -m 0755 "$root$user_units"
  install -m 0644 "$src/systemd/pos-display.service" "$root$user_units/pos-display.service"
  systemctl --global enable pos-display.service
fi

say "pos-terminal doctor (the service is stopped meanwhile: the reader has one owner)"
systemctl stop pos-terminal.service
doctor=0
runuser -u "$user" -- "$root$venv/bin/pos-terminal" --config "$root$etc/terminal.toml" doctor || doctor=$?
if [ "$doctor" -ne 0 ]; then
  say "pos-terminal doctor failed (above), so the service was NOT started; fix what it says (docs:"
  say "$opt/docs/raspberry-pi.md), then: sudo systemctl start pos-terminal"
  exit 1
fi
if [ "$start" -eq 1 ]; then
  systemctl start pos-terminal.service
  say "started: systemctl status pos-terminal; journalctl -u pos-terminal -f"
fi
say "done"
