#!/usr/bin/env bash
# `make install` and `make uninstall`: Postwacht as a service on this Debian 12 MTA, as
# root, from the source tree this script belongs to.
#
#   deploy/install.sh install   [--prefix DIR] [--bindir DIR] [--sysconfdir DIR] [--unitdir DIR]
#   deploy/install.sh uninstall [the same options, with the values install had]
#
# install, as often as you like (again later: upgrades in place):
#   PREFIX/.venv         a virtual environment with postwacht from this tree, not
#                        editable, runtime dependencies only (PREFIX: /opt/postwacht)
#   BINDIR/postwacht     a link to its command (BINDIR: /usr/local/bin)
#   postwacht            a system user and group, when missing
#   /var/lib/postwacht   the state directory (records): postwacht:postwacht 0750
#   SYSCONFDIR           root:postwacht 0750 (SYSCONFDIR: /etc/postwacht), and in it
#                        policy.yaml, from policies/example.yaml in monitor mode, when
#                        there is none (root:postwacht 0640)
#   /etc/postfix/postwacht_header_checks and postwacht_smtp_header_checks, when missing
#   UNITDIR/postwacht.service, postwacht-release.service (both enabled, neither
#                        started) and postwacht-web.service (UNITDIR: /etc/systemd/system)
# Nothing an administrator wrote is replaced: not the policy, not Postfix's tables, not a
# unit file changed since an earlier install (a later one keeps it and says so).
#
# uninstall stops what of it is running, disables and removes the units, the link,
# PREFIX and the user and group. It keeps the policy and the records, and Postfix's
# tables while main.cf still names them.
set -Eeuo pipefail
umask 022  # the service user reads the virtual environment and the units

ACTION=${1:-}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PREFIX=/opt/postwacht
BINDIR=/usr/local/bin
SYSCONFDIR=/etc/postwacht
UNITDIR=/etc/systemd/system
# Fixed by the units (StateDirectory=postwacht) and by Postfix.
STATEDIR=/var/lib/postwacht
POSTFIXDIR=/etc/postfix
SERVICE_USER=postwacht
PYTHON=/usr/bin/python3
UNITS=(postwacht.service postwacht-release.service postwacht-web.service)
ENABLED=(postwacht.service postwacht-release.service)
# deploy/postfix file -> the name main.cf gives it
TABLES=(header_checks:postwacht_header_checks smtp_header_checks:postwacht_smtp_header_checks)

die() {
    printf 'make %s: %s\n' "${ACTION:-install}" "$*" >&2
    exit 1
}
trap 'die "failed (line $LINENO): $BASH_COMMAND"' ERR
say() { printf '%s\n' "$*"; }
systemd_running() { [ -d /run/systemd/system ]; }
exists() { [ -e "$1" ] || [ -L "$1" ]; }

usage() {
    say "usage: $0 install|uninstall [--prefix DIR] [--bindir DIR] [--sysconfdir DIR] [--unitdir DIR]" >&2
    exit 2
}

parse_options() {
    while [ $# -gt 0 ]; do
        [ $# -ge 2 ] || usage
        case $1 in
            --prefix) PREFIX=$2 ;;
            --bindir) BINDIR=$2 ;;
            --sysconfdir) SYSCONFDIR=$2 ;;
            --unitdir) UNITDIR=$2 ;;
            *) usage ;;
        esac
        shift 2
    done
    local dir
    for dir in "$PREFIX" "$BINDIR" "$SYSCONFDIR" "$UNITDIR"; do
        case $dir in
            /) die "refusing / as a directory to install into or remove from" ;;
            /*) ;;
            *) die "$dir: expected an absolute path" ;;
        esac
    done
    PREFIX=$(realpath -m "$PREFIX") BINDIR=$(realpath -m "$BINDIR")
    SYSCONFDIR=$(realpath -m "$SYSCONFDIR") UNITDIR=$(realpath -m "$UNITDIR")
    for dir in "$PREFIX" "$BINDIR" "$SYSCONFDIR" "$UNITDIR"; do
        [ "$dir" != / ] || die "refusing / as a directory to install into or remove from"
    done
    # Both are Postwacht's alone: install takes their owner and mode, uninstall removes
    # the first. A shared directory (/opt, /etc, another program's) is never taken.
    for dir in "$PREFIX" "$SYSCONFDIR"; do
        [ "${dir##*/}" = postwacht ] \
            || die "$dir: the directory must be Postwacht's own, named postwacht (as /opt/postwacht)"
    done
    VENV=$PREFIX/.venv
    LINK=$BINDIR/postwacht
    POLICY=$SYSCONFDIR/policy.yaml
    case $SRC/ in
        "$PREFIX"/*) die "the source tree $SRC lies in $PREFIX, which make uninstall removes: move the tree elsewhere" ;;
    esac
}

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (it adds a system user and writes to /etc, /opt and /var/lib)"
}

# ---------------------------------------------------------------------------- install

preflight() {
    if [ ! -f "$SRC/pyproject.toml" ] || [ ! -d "$SRC/milter/postwacht" ]; then
        die "$SRC is not Postwacht's source tree"
    fi
    "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "$PYTHON must be Python 3.11 or newer with venv and ensurepip (apt-get install python3-venv)"
    if exists "$LINK" && [ "$(readlink "$LINK")" != "$VENV/bin/postwacht" ]; then
        die "$LINK exists and is not a link to $VENV/bin/postwacht: move it away first"
    fi
    command -v useradd >/dev/null || die "useradd is missing (Debian's passwd package)"
}

add_user() {
    if getent passwd "$SERVICE_USER" >/dev/null; then
        say "user $SERVICE_USER: exists, kept"
        return
    fi
    local own_group=(--user-group)
    if getent group "$SERVICE_USER" >/dev/null; then
        own_group=(--gid "$SERVICE_USER")
    fi
    useradd --system "${own_group[@]}" --home-dir "$STATEDIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "Postwacht mail policy filter" "$SERVICE_USER" \
        || die "could not add the system user $SERVICE_USER"
    say "user $SERVICE_USER: added (system user, no login)"
}

install_package() {
    if [ ! -x "$VENV/bin/python" ]; then
        install -d -m 0755 "$PREFIX"
        "$PYTHON" -m venv "$VENV" || die "could not make the virtual environment $VENV"
    fi
    # pip builds a package in the directory it is given: a copy of what the build reads
    # keeps root's build files out of the source tree.
    local stage
    stage=$(mktemp -d)
    tar -C "$SRC" --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md milter \
        | tar -C "$stage" -xf -
    if ! "$VENV/bin/pip" install --quiet --upgrade "$stage"; then
        rm -rf "$stage"
        die "pip could not install Postwacht into $VENV (its output is above)"
    fi
    rm -rf "$stage"
    install -d -m 0755 "$BINDIR"
    ln -sfn "$VENV/bin/postwacht" "$LINK"
    VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("postwacht"))')
    say "postwacht $VERSION: installed in $VENV, command $LINK"
}

# After make uninstall the kept directories still carry the removed user's and group's
# numbers (or those of an account that took them since): what was theirs belongs to the
# new ones. The state directory is the service's alone: whoever owned it before (root,
# after a start by hand) hands over all that was theirs, as systemd's StateDirectory=
# does. In the configuration directory, files keep their owner (root) and hand over the
# group they had in common with the directory, unless that was root's.
make_directories() {
    local before=""
    if [ -d "$STATEDIR" ]; then before=$(stat -c '%u %g' "$STATEDIR"); fi
    install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$STATEDIR"
    if [ -n "$before" ] && [ "$before" != "$(stat -c '%u %g' "$STATEDIR")" ]; then
        # only what belonged to accounts that are gone (an earlier install's)
        if ! getent passwd "${before% *}" >/dev/null; then
            find "$STATEDIR" -xdev -uid "${before% *}" -exec chown -h "$SERVICE_USER" {} +
        fi
        if ! getent group "${before#* }" >/dev/null; then
            find "$STATEDIR" -xdev -gid "${before#* }" -exec chgrp -h "$SERVICE_USER" {} +
        fi
        say "state $STATEDIR: now user $SERVICE_USER's (it was uid/gid ${before/ //})"
    fi
    before=""
    if [ -d "$SYSCONFDIR" ]; then before=$(stat -c %g "$SYSCONFDIR"); fi
    install -d -o root -g "$SERVICE_USER" -m 0750 "$SYSCONFDIR"
    if [ -n "$before" ] && [ "$before" != 0 ] && [ "$before" != "$(stat -c %g "$SYSCONFDIR")" ] \
            && ! getent group "$before" >/dev/null; then
        find "$SYSCONFDIR" -xdev -gid "$before" -exec chgrp -h "$SERVICE_USER" {} +
        say "configuration $SYSCONFDIR: handed over to group $SERVICE_USER (it was gid $before)"
    fi
}

install_policy() {
    NEW_POLICY=no
    if exists "$POLICY"; then
        say "policy $POLICY: exists, kept as it is"
    else
        local draft
        draft=$(mktemp "$SYSCONFDIR/.policy.yaml.XXXXXX")
        # The example holds ordinary external mail that a real organisation sends every
        # day (it is secure by default): a first install only logs and counts.
        sed 's/^# mode: monitor /mode: monitor   /' "$SRC/policies/example.yaml" >"$draft"
        if ! grep -q '^mode: monitor' "$draft"; then
            rm -f "$draft"
            die "policies/example.yaml has no '# mode: monitor' line to turn on"
        fi
        chown "root:$SERVICE_USER" "$draft"
        chmod 0640 "$draft"
        mv -T "$draft" "$POLICY"
        NEW_POLICY=yes
        say "policy $POLICY: the example policy, in monitor mode"
    fi
    runuser -u "$SERVICE_USER" -- test -r "$POLICY" \
        || say "WARNING: user $SERVICE_USER cannot read $POLICY: the daemon will not start (root:$SERVICE_USER 0640 works)"
}

install_tables() {
    if [ ! -d "$POSTFIXDIR" ]; then
        say "Postfix tables: not installed, $POSTFIXDIR is missing (run make install again once Postfix is installed)"
        return
    fi
    local pair target
    for pair in "${TABLES[@]}"; do
        target=$POSTFIXDIR/${pair#*:}
        if exists "$target"; then
            say "Postfix table $target: exists, kept"
        else
            install -m 0644 -o root -g root "$SRC/deploy/postfix/${pair%%:*}" "$target"
            echo "$target" >>"$PREFIX/tables-installed"
            say "Postfix table $target: installed"
        fi
    done
}

# A unit is replaced when it is missing or still the one the last install wrote (a copy
# of which PREFIX/units keeps); one changed here since is kept.
install_units() {
    install -d -m 0755 "$UNITDIR" "$PREFIX/units"
    local unit rendered target shipped places=(
        -e "s|/opt/postwacht/.venv/|$VENV/|g" -e "s|/etc/postwacht/|$SYSCONFDIR/|g")
    case $SYSCONFDIR in
        /etc/postwacht) ;;
        /etc/*) places+=(-e "s|^ConfigurationDirectory=postwacht\$|ConfigurationDirectory=${SYSCONFDIR#/etc/}|") ;;
        *) places+=(-e '/^ConfigurationDirectory/d') ;;
    esac
    rendered=$(mktemp)
    for unit in "${UNITS[@]}"; do
        target=$UNITDIR/$unit
        shipped=$PREFIX/units/$unit
        sed "${places[@]}" "$SRC/deploy/systemd/$unit" >"$rendered"
        if exists "$target" && ! cmp -s "$rendered" "$target" \
                && ! { [ -f "$shipped" ] && cmp -s "$shipped" "$target"; }; then
            say "unit $target: KEPT, it differs from what make install wrote (changed here?)"
            say "    this version's unit: $shipped"
            say "    compare them, and keep local changes in a drop-in, which make install"
            say "    leaves alone: systemctl edit ${unit%.service}"
        elif exists "$target" && cmp -s "$rendered" "$target"; then
            say "unit $target: up to date"
        else
            install -m 0644 "$rendered" "$target"
            say "unit $target: installed"
        fi
        install -m 0644 "$rendered" "$shipped"
    done
    rm -f "$rendered"
    if systemd_running; then
        systemctl daemon-reload || die "systemctl daemon-reload failed"
    fi
    if command -v systemctl >/dev/null; then
        systemctl enable "${ENABLED[@]}" || die "systemctl enable ${ENABLED[*]} failed"
    else
        say "WARNING: no systemctl: ${ENABLED[*]} are not enabled"
    fi
}

check_policy() {
    local checked
    # as the daemon's user, who must be able to read it
    if checked=$(cd / && runuser -u "$SERVICE_USER" -- "$LINK" check "$POLICY" 2>&1); then
        say "$checked"
    elif [ "$NEW_POLICY" = yes ]; then
        say "$checked" >&2
        die "the installed command does not pass its own example policy"
    else
        say "$checked"
        say "WARNING: $POLICY does not pass postwacht check: fix it before starting the daemon"
    fi
}

report_install() {
    say ""
    say "Postwacht $VERSION is installed:"
    say "  $VENV  the program; $LINK  the command"
    say "  $POLICY  the policy; $STATEDIR  records and state (user $SERVICE_USER)"
    say "  $UNITDIR/{postwacht,postwacht-release,postwacht-web}.service"
    say "  (postwacht and postwacht-release enabled; nothing started)"
    if [ "$NEW_POLICY" = yes ]; then
        say ""
        say "The policy is the example's, in MONITOR mode: the filter logs and counts what it"
        say "would do and holds or refuses nothing. Edit it for your organisation; once the log"
        say "and \`postwacht report retired\` show what enforcing would catch, enforce it: remove"
        say "the line 'mode: monitor' near the top of $POLICY and run"
        say "\`postwacht check $POLICY\`; the running daemon reloads the file by itself."
    fi
    say ""
    say "Next:"
    say "  systemctl start postwacht postwacht-release   (postwacht-web when wanted: systemctl enable --now postwacht-web)"
    say "  attach Postfix with the lines of deploy/postfix/main.cf (postconf -e ...; postfix reload)"
    say "  postwacht doctor   checks the whole set-up"
    if systemd_running && systemctl is-active --quiet postwacht.service; then
        say "The daemon runs: restart it now, so that it runs the installed version as a"
        say "whole (files it reads later, like the notice templates, are the new ones):"
        say "  systemctl restart postwacht postwacht-release"
    fi
}

do_install() {
    require_root
    preflight
    add_user
    install_package
    make_directories
    install_policy
    install_tables
    install_units
    check_policy
    report_install
}

# -------------------------------------------------------------------------- uninstall

remove_units() {
    local unit
    if systemd_running; then
        for unit in postwacht-web.service postwacht-release.service postwacht.service; do
            if exists "$UNITDIR/$unit"; then
                systemctl stop "$unit" || die "could not stop $unit"
            fi
        done
    fi
    # userdel would refuse at the end, after the program is gone
    if getent passwd "$SERVICE_USER" >/dev/null && command -v pgrep >/dev/null \
            && pgrep -u "$SERVICE_USER" >/dev/null; then
        die "processes of user $SERVICE_USER still run (pgrep -a -u $SERVICE_USER): stop them first"
    fi
    for unit in "${UNITS[@]}"; do
        if exists "$UNITDIR/$unit" && command -v systemctl >/dev/null; then
            systemctl disable --quiet "$unit" || die "systemctl disable $unit failed"
        fi
        # what systemctl did not remove (no systemctl, or a link made by hand)
        find "$UNITDIR" -mindepth 2 -maxdepth 2 -path '*.wants/*' -name "$unit" -type l -delete
        if exists "$UNITDIR/$unit"; then
            rm -f "$UNITDIR/$unit"
            say "removed $UNITDIR/$unit"
        fi
        if [ -d "$UNITDIR/$unit.d" ]; then
            say "kept $UNITDIR/$unit.d: drop-ins written here"
        fi
    done
    if systemd_running; then
        systemctl daemon-reload || die "systemctl daemon-reload failed"
        systemctl reset-failed "${UNITS[@]}" 2>/dev/null || true
    fi
}

remove_program() {
    if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$VENV/bin/postwacht" ]; then
        rm -f "$LINK"
        say "removed $LINK"
    elif exists "$LINK"; then
        say "kept $LINK: it is not a link to $VENV/bin/postwacht"
    fi
    if [ -d "$PREFIX" ]; then
        rm -rf "$VENV" "$PREFIX/units" "$PREFIX/tables-installed"
        if rmdir "$PREFIX" 2>/dev/null; then
            say "removed $PREFIX"
        else
            say "kept $PREFIX: it holds more than make install put there"
        fi
    fi
}

# The tables' paths as Postfix names them: main.cf and master.cf's -o settings, with
# $names expanded (postconf -x prints "type:path, ..." values).
named_by_main_cf() {
    command -v postconf >/dev/null || return 0
    {
        postconf -xh milter_header_checks smtp_header_checks 2>/dev/null || true
        postconf -Px 2>/dev/null | sed -n 's/^[^ ]*\/\(milter\|smtp\)_header_checks = //p' || true
    } | tr ', ' '\n' | sed -e '/^$/d' -e 's/^[a-z]*://'
}

remove_tables() {
    local pair target named
    named=$(named_by_main_cf)
    for pair in "${TABLES[@]}"; do
        target=$POSTFIXDIR/${pair#*:}
        exists "$target" || continue
        if ! grep -qxF "$target" "$PREFIX/tables-installed" 2>/dev/null; then
            say "kept $target: it was there before make install"
        elif grep -qxF "$target" <<<"$named"; then
            say "kept $target: main.cf names it (postconf -h milter_header_checks smtp_header_checks);"
            say "    remove that setting, postfix reload, then make uninstall again"
        elif ! cmp -s "$target" "$SRC/deploy/postfix/${pair%%:*}"; then
            say "kept $target: it differs from deploy/postfix/${pair%%:*} (changed here?)"
        else
            rm -f "$target"
            say "removed $target"
        fi
    done
}

remove_user() {
    local group=no
    if getent group "$SERVICE_USER" >/dev/null; then group=yes; fi
    if getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER" || die "could not remove the user $SERVICE_USER (a process of it still running?)"
        say "removed user $SERVICE_USER"
    fi
    # userdel removes the user's own group too, unless another user has it
    if getent group "$SERVICE_USER" >/dev/null; then
        groupdel "$SERVICE_USER" || die "could not remove the group $SERVICE_USER"
    fi
    if [ "$group" = yes ]; then say "removed group $SERVICE_USER"; fi
}

# What in Postfix's configuration still sends mail to the filter or asks its tables.
still_attached() {
    command -v postconf >/dev/null || return 0
    {
        postconf -xn smtpd_milters non_smtpd_milters transport_maps smtp_tls_policy_maps \
            2>/dev/null || true
        postconf -Px 2>/dev/null | grep -E '/(non_)?smtpd_milters = ' || true
    } | grep -E '127\.0\.0\.1:889[45]|postwacht' || true
}

refuse_while_attached() {
    local left
    left=$(still_attached)
    [ -n "$left" ] || return 0
    say "Postfix still sends mail to the filter: without it, that mail would wait (tempfail)."
    say "Remove these settings (postconf -X NAME, or -o lines in master.cf), postfix reload,"
    say "then make uninstall again (or make uninstall FORCE=yes to go on all the same):"
    say "$left"
    [ "${FORCE:-}" = yes ] || die "uninstall refused: Postfix is still attached"
}

report_uninstall() {
    local kept=no
    if exists "$SYSCONFDIR"; then say "kept $SYSCONFDIR: the policy"; kept=yes; fi
    if exists "$STATEDIR"; then say "kept $STATEDIR: the records"; kept=yes; fi
    if [ "$kept" = yes ]; then
        say "    remove them yourself once nobody needs them; a later make install gives"
        say "    their files to its new $SERVICE_USER user"
    fi
    local left
    left=$(still_attached)
    if [ -n "$left" ]; then
        say "WARNING: Postfix still names Postwacht, so mail waits (tempfail) until you remove"
        say "these settings and postfix reload:"
        say "$left"
    fi
}

do_uninstall() {
    require_root
    refuse_while_attached
    remove_units
    remove_tables
    remove_program
    remove_user
    report_uninstall
}

[ $# -ge 1 ] || usage
shift
parse_options "$@"
case $ACTION in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) usage ;;
esac
