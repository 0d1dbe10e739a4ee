#!/usr/bin/env bash
# Builds the operator's OCI image without Docker and without pulling from any container
# registry (docs/image.md):
#   1. a Debian rootfs with python3, from Debian's packages (mmdebstrap);
#   2. the project and its dependencies, from PyPI, installed into /opt/modelrollout/lib
#      and byte-compiled by the image's own python3 (a read-only root needs no .pyc writes);
#   3. a non-root user (10001, the chart's runAsUser) and the `modelrollout` command on PATH;
#   4. assembled by umoci into an OCI image layout, archived as an OCI archive.
# The result is cached under $MODELROLLOUT_CACHE/image/<hash of the sources>/; a second run
# with the same sources prints the cached archive. Usage:
#   operator/image/build.sh            # prints the archive's path on its last line
#   operator/image/build.sh --force    # rebuild even when cached
# Needs root (mmdebstrap's root mode, chroot); installs mmdebstrap and umoci with apt-get
# when missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../../e2e/versions.sh
source "$REPO/e2e/versions.sh"
PY="${PY:-$REPO/.venv/bin/python}"
SUITE="${IMAGE_SUITE:-bookworm}"   # Debian 12: python3 3.11, the version the project is tested on
USER_ID=10001                      # charts/modelrollout/values.yaml: runAsUser
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }

VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$REPO/charts/modelrollout/Chart.yaml")"
REPOSITORY="$(sed -n 's/^  repository: *//p' "$REPO/charts/modelrollout/values.yaml" | head -1)"
[[ -n "$VERSION" && -n "$REPOSITORY" ]] || die "cannot read appVersion (Chart.yaml) or image.repository (values.yaml)"
REFERENCE="$REPOSITORY:$VERSION"

# The cache key: every file that ends up in the image, and this script.
KEY="$(cd "$REPO" && find operator pyproject.toml README.md charts/modelrollout/Chart.yaml -type f \
        -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum \
        | cat - <(echo "$SUITE") | sha256sum | cut -c1-16)"
OUT="$MODELROLLOUT_CACHE/image/$KEY"
ARCHIVE="$OUT/modelrollout-$VERSION.oci.tar"
if [[ $FORCE -eq 0 && -f "$OUT/.complete" ]]; then
    log "cached: $REFERENCE ($(cat "$OUT/size.txt"))"
    echo "$ARCHIVE"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "building the image needs root (mmdebstrap's root mode and chroot); run as root"
[[ -x "$PY" ]] || die "$PY missing: run 'make install' first"
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v umoci >/dev/null || missing+=(umoci)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "${missing[*]} missing and apt-get unavailable: install them from Debian's packages"
    log "installing ${missing[*]} from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
        || die "apt-get install ${missing[*]} failed: Debian's package archive looks unreachable (see above)"
fi

mkdir -p "$MODELROLLOUT_CACHE/image"
TMP="$(mktemp -d "$MODELROLLOUT_CACHE/image/build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
ROOTFS="$TMP/rootfs"
started=$SECONDS

log "1/4 Debian $SUITE rootfs with python3 (mmdebstrap, from Debian's packages)"
mmdebstrap --variant=minbase --include=python3,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    "$SUITE" "$ROOTFS" >&2 || die "mmdebstrap failed (above): Debian's package archive unreachable, or no root mode here"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/*

log "2/4 modelrollout and its dependencies (pip, from PyPI) into /opt/modelrollout/lib"
LIB="$ROOTFS/opt/modelrollout/lib"
"$PY" -m pip install --quiet --disable-pip-version-check --no-compile --target "$LIB" "$REPO" >&2 \
    || die "pip install failed (above): PyPI unreachable?"
# Console scripts written by the host's pip point at the host's interpreter; tests and
# headers are never imported at run time.
rm -rf "$LIB/bin"
find "$LIB" -depth -type d \( -name tests -o -name testing -o -name __pycache__ \) -path '*/scipy/*' -exec rm -rf {} + 2>/dev/null || true
find "$LIB" -depth -type d -name tests -path '*/numpy/*' -exec rm -rf {} + 2>/dev/null || true
find "$LIB" -name '*.h' -path '*/include/*' -delete
# The image's python3 finds the library through a .pth file, so any command (the chart's
# `modelrollout run …`, `python3 -m modelrollout`) sees it without PYTHONPATH.
pth_dir="$(chroot "$ROOTFS" python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))' 2>/dev/null \
           || echo /usr/lib/python3/dist-packages)"
[[ "$pth_dir" == /usr/local/* ]] && pth_dir=/usr/lib/python3/dist-packages
mkdir -p "$ROOTFS$pth_dir"
echo /opt/modelrollout/lib > "$ROOTFS$pth_dir/modelrollout.pth"
chroot "$ROOTFS" python3 -c 'import modelrollout.cli, kopf, scipy.stats, numpy' \
    || die "the image's python3 cannot import the operator (above)"
chroot "$ROOTFS" python3 -m compileall -q -j 2 /opt/modelrollout/lib >/dev/null \
    || die "byte-compiling /opt/modelrollout/lib failed"

log "3/4 user $USER_ID and the modelrollout command"
grep -q "^modelrollout:" "$ROOTFS/etc/group" || echo "modelrollout:x:$USER_ID:" >> "$ROOTFS/etc/group"
grep -q "^modelrollout:" "$ROOTFS/etc/passwd" \
    || echo "modelrollout:x:$USER_ID:$USER_ID:modelrollout operator:/nonexistent:/usr/sbin/nologin" >> "$ROOTFS/etc/passwd"
cat > "$ROOTFS/usr/local/bin/modelrollout" <<'PYEOF'
#!/usr/bin/python3
import sys

from modelrollout.cli import main

sys.exit(main())
PYEOF
cat > "$ROOTFS/usr/local/bin/kubectl-modelrollout" <<'PYEOF'
#!/usr/bin/python3
import sys

from modelrollout.plugin import main

sys.exit(main())
PYEOF
chmod 0755 "$ROOTFS/usr/local/bin/modelrollout" "$ROOTFS/usr/local/bin/kubectl-modelrollout"
chroot --userspec=$USER_ID:$USER_ID "$ROOTFS" modelrollout --help >/dev/null \
    || die "'modelrollout --help' fails in the image as user $USER_ID"

log "4/4 OCI image $REFERENCE (umoci)"
LAYOUT="$TMP/oci"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$VERSION"
umoci unpack --image "$LAYOUT:$VERSION" "$TMP/bundle" >&2
rm -rf "$TMP/bundle/rootfs"
mv "$ROOTFS" "$TMP/bundle/rootfs"
umoci repack --image "$LAYOUT:$VERSION" "$TMP/bundle" >&2
umoci config --image "$LAYOUT:$VERSION" \
    --author "modelrollout" --os linux --architecture amd64 \
    --config.user "$USER_ID:$USER_ID" --config.workingdir /tmp \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
    --config.entrypoint modelrollout --config.cmd run --config.cmd --help \
    --config.exposedports 8080/tcp --config.exposedports 8081/tcp \
    --config.label "org.opencontainers.image.title=modelrollout" \
    --config.label "org.opencontainers.image.version=$VERSION" \
    --manifest.annotation "org.opencontainers.image.ref.name=$REFERENCE" >&2
umoci gc --layout "$LAYOUT"
unpacked_mib=$(( $(du -sb "$TMP/bundle/rootfs" | cut -f1) / 1048576 ))

STAGE="$TMP/out"
mkdir -p "$STAGE"
tar -C "$LAYOUT" -cf "$STAGE/modelrollout-$VERSION.oci.tar" .
archive_mib=$(( $(stat -c %s "$STAGE/modelrollout-$VERSION.oci.tar") / 1048576 ))
echo "$archive_mib MiB archive (gzip layer), $unpacked_mib MiB unpacked, built in $((SECONDS - started)) s" > "$STAGE/size.txt"
echo "$REFERENCE" > "$STAGE/reference.txt"
touch "$STAGE/.complete"
rm -rf "$OUT"
mv "$STAGE" "$OUT"
log "done: $REFERENCE: $(cat "$OUT/size.txt")"
log "load it: skopeo copy oci-archive:$ARCHIVE docker://<registry>/modelrollout:$VERSION"
echo "$ARCHIVE"
